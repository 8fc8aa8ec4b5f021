/**
 * What the worker trusts for the Bowtie driver, and the one HTTPS client the
 * driver uses (controller API and package downloads).
 *
 * The input names a controller; the worker's config decides whether it talks
 * to it (NODEBOOT_BOWTIE_CONTROLLERS, an allow-list of https origins). A
 * controller off that list gets no request and no credential: anyone who can
 * start a workflow could otherwise point the worker's credentials at a server
 * of their own.
 *
 * TLS is always verified: against the system roots plus, when the worker is
 * given one, an extra CA (NODEBOOT_CA_FILE) passed explicitly to each request.
 * Redirects are never followed (one could carry the Authorization header to
 * another origin).
 */
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { ToolError } from '../../host/exec.js';

export interface BowtieTrust {
  /** The controller origins ("https://host[:port]") this worker talks to. Empty: none. */
  controllers: readonly string[];
  /** An extra CA (PEM) trusted for controller and package fetches, beside the system roots. */
  ca?: string;
}

/** The origin of an https URL, or null when it is not one (origin is lower-case host, default port dropped). */
export function httpsOrigin(url: string): string | null {
  try {
    const u = new URL(url);
    return u.protocol === 'https:' && !u.username && !u.password ? u.origin : null;
  } catch {
    return null;
  }
}

/**
 * Refuse (InvalidInput, non-retryable) a URL that is not https or whose origin
 * is not on the worker's allow-list. `field` is the input field it came from.
 */
export function assertAllowedController(trust: BowtieTrust | undefined, url: string, field: string): void {
  const origin = httpsOrigin(url);
  if (!origin)
    throw new ToolError(
      'InvalidInput',
      `${field}: must be an https:// URL (the worker sends its controller credentials there)`,
      'bowtie',
    );
  if (!(trust?.controllers ?? []).includes(origin)) {
    throw new ToolError(
      'InvalidInput',
      `${field}: ${origin} is not a controller this worker talks to (NODEBOOT_BOWTIE_CONTROLLERS)`,
      'bowtie',
    );
  }
}

/** Node's codes for a certificate that does not verify (wrong CA, wrong name, expired). */
const TLS_TRUST_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** The certificate did not verify: not an outage, a server the worker does not trust. */
export const tlsTrustError = (err: unknown): boolean =>
  TLS_TRUST_ERRORS.has((err as { code?: string } | null)?.code ?? '');

export interface HttpsResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpsRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** The extra CA (PEM), trusted beside the system roots. */
  ca?: string;
  signal?: AbortSignal;
  /** A larger answer fails the request (default 16 MiB). */
  maxBytes?: number;
}

/** An answer larger than maxBytes. */
export class ResponseTooLarge extends Error {}

/**
 * One request, verified TLS, no redirect followed. Plain http is accepted only
 * when `allowPlain` is set (the credential-less health check; see controller.ts).
 */
export function httpsRequest(url: string, o: HttpsRequest & { allowPlain?: boolean } = {}): Promise<HttpsResponse> {
  const u = new URL(url);
  if (u.protocol !== 'https:' && !(o.allowPlain && u.protocol === 'http:')) {
    return Promise.reject(new ToolError('InvalidInput', `${u.protocol}// is not https: refused`, 'https'));
  }
  const maxBytes = o.maxBytes ?? 16 << 20;
  return new Promise((resolve, reject) => {
    const opts: https.RequestOptions = { method: o.method ?? 'GET', headers: o.headers, signal: o.signal };
    // `ca` replaces the default roots in Node: add the extra CA to them, never instead of verification.
    if (o.ca) opts.ca = [...tls.rootCertificates, o.ca];
    const req = (u.protocol === 'https:' ? https : http).request(u, opts, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          req.destroy(new ResponseTooLarge(`answer larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}
