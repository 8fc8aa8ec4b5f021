/**
 * Strict schemas for every name that can reach a command line.
 *
 * Commands are always run with argument arrays, never shell strings, so these
 * schemas are the second wall: a name that passes them cannot be mistaken for
 * an option, a path traversal or a second command by any tool we call.
 * Imported by workflows: no Node built-ins here.
 */
import { z } from 'zod';
import { shared } from './schema-cache.js';

const DNS_LABELISH = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/** A node id: lowercase DNS-label style, 1-40 chars. Used in workflow ids, SPIFFE paths, file names. */
export const NodeId = shared('names:NodeId', () =>
  z
    .string()
    .min(1, 'must not be empty')
    .max(40, 'must be at most 40 characters')
    .regex(DNS_LABELISH, 'must be lowercase letters, digits and inner hyphens only (e.g. "edge-01")'),
);
export type NodeId = z.infer<typeof NodeId>;

/**
 * A short name: a segment, a hub, a workload (lowercase DNS-label style, 1-40 chars).
 * The input and the ledger check it with this one schema, so nothing the ledger
 * accepts is a name the input would refuse.
 */
export const Label = shared('names:Label', () =>
  z.string().min(1).max(40).regex(DNS_LABELISH, 'must be lowercase letters, digits and inner hyphens only'),
);

/** A network namespace name (what `ip netns exec` gets). */
export const NetnsName = shared('names:NetnsName', () =>
  z.string().min(1).max(64).regex(DNS_LABELISH, 'must be lowercase letters, digits and inner hyphens only'),
);

/** A Linux interface name: at most 15 bytes (IFNAMSIZ - 1), no slash or space. */
export const IfName = shared('names:IfName', () =>
  z
    .string()
    .min(1)
    .max(15, 'must be at most 15 characters (Linux IFNAMSIZ)')
    .regex(/^[a-z][a-z0-9_-]*$/, 'must start with a letter and hold only a-z, 0-9, "_" or "-"'),
);

/** A SPIFFE trust domain name (lowercase, no scheme, no path). */
export const TrustDomain = shared('names:TrustDomain', () =>
  z
    .string()
    .min(1)
    .max(255)
    .regex(/^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$/, 'must be a bare lowercase trust domain such as "example.org"'),
);

/** The path part of a SPIFFE ID: "/seg/seg", no "..", no empty segments, no query. */
export const SpiffePath = shared('names:SpiffePath', () =>
  z
    .string()
    .min(2)
    .max(255)
    .regex(/^(\/[A-Za-z0-9._-]+)+$/, 'must look like "/ns/prod/sa/api" (letters, digits, ".", "_", "-")')
    .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not contain "." or ".." segments'),
);

/** A full SPIFFE ID. */
export const SpiffeId = shared('names:SpiffeId', () =>
  z
    .string()
    .max(2048)
    .regex(
      /^spiffe:\/\/[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?(\/[A-Za-z0-9._-]+)*$/,
      'must be a SPIFFE ID such as "spiffe://example.org/ns/prod"',
    )
    .refine(
      (id) =>
        !id
          .split('/')
          .slice(3)
          .some((s) => s === '.' || s === '..'),
      'must not contain "." or ".." segments',
    ),
);

/** An absolute filesystem path with no traversal and no shell-ish characters. */
export const SafePath = shared('names:SafePath', () =>
  z
    .string()
    .min(2)
    .max(1024)
    .regex(/^(\/[A-Za-z0-9._@+-]+)+\/?$/, 'must be an absolute path of letters, digits and "._@+-"')
    .refine((p) => !p.split('/').some((s) => s === '..' || s === '.'), 'must not contain "." or ".." segments'),
);

/** A unix uid usable for a workload (not root). */
export const UnixUid = shared('names:UnixUid', () =>
  z.number().int().min(1, 'must not be root (0)').max(2_147_483_646),
);

/** An IPv4 address in dotted-quad form. */
export const Ipv4 = shared('names:Ipv4', () =>
  z
    .string()
    .regex(/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/, 'must be an IPv4 address'),
);

/** An IPv4 CIDR such as 10.200.0.0/16. */
export const Ipv4Cidr = shared('names:Ipv4Cidr', () =>
  z
    .string()
    .regex(/^(\d{1,3}\.){3}\d{1,3}\/(3[0-2]|[12]?\d)$/, 'must be an IPv4 CIDR such as "10.200.0.0/16"')
    .refine((c) => Ipv4.safeParse(c.split('/')[0]).success, 'must have a valid IPv4 network address'),
);

/** host:port with an IPv4 host. */
export const Ipv4Endpoint = shared('names:Ipv4Endpoint', () =>
  z
    .string()
    .regex(/^(\d{1,3}\.){3}\d{1,3}:\d{1,5}$/, 'must be "ipv4:port"')
    .refine((e) => {
      const [host, port] = e.split(':');
      return Ipv4.safeParse(host).success && Number(port) >= 1 && Number(port) <= 65535;
    }, 'must have a valid IPv4 address and a port 1-65535'),
);

/** A WireGuard public key: 32 bytes, base64. (Public keys only ever cross the wire.) */
export const WgPublicKey = shared('names:WgPublicKey', () =>
  z.string().regex(/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/, 'must be a base64 WireGuard public key'),
);

/**
 * Parse `value` with `schema` or throw an Error whose message names the field.
 * Use at boundaries that are not a whole zod object (single names reaching a tool).
 */
export function parseName<T>(schema: z.ZodType<T>, field: string, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InvalidNameError(field, issue?.message ?? 'is invalid');
  }
  return r.data;
}

export class InvalidNameError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field} ${reason}`);
    this.name = 'InvalidNameError';
  }
}

/** Render zod issues as "field.path: message" lines. */
export function describeZodError(err: z.ZodError): string[] {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(input)'}: ${i.message}`);
}
