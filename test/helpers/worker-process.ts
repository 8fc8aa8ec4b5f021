/**
 * The real worker (`node --import tsx workers/worker.ts`) as a separate OS
 * process, so a test can SIGKILL it mid-activity the way a crashed host would
 * lose it. Output is kept in memory (and drained, so the worker never blocks
 * on a full pipe); `waitFor` watches it for a line. Every process started here
 * is killed by `stopAllWorkerProcesses` (call it in afterAll) and, as a last
 * resort, when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Keep at most this much of a worker's output (the tail). */
const MAX_OUTPUT = 1024 * 1024;

export interface WorkerProcessOptions {
  taskQueue: string;
  databaseUrl: string;
  temporalAddress: string;
  namespace?: string;
  /** "<activity>:<ms>" (workers/fault-injection.ts); omitted: no fault. */
  faultPause?: string;
  /** Give up waiting for "[worker] polling" after this long (bundling workflows takes a few seconds). */
  readyTimeoutMs?: number;
  /** A label for messages ("crash-worker issueOverlayKey"). */
  name?: string;
}

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WorkerProcess {
  readonly pid: number;
  readonly name: string;
  readonly taskQueue: string;
  /** Milliseconds from spawn to "[worker] polling" (bundling the workflows dominates). */
  readyMs: number;
  /** Everything it wrote on stdout and stderr so far (the tail, interleaved). */
  output(): string;
  /** Resolves when a line matching `re` has been written (including lines written before the call). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  readonly exited: Promise<WorkerExit>;
  alive(): boolean;
  /** SIGKILL: no shutdown, no goodbye to the server. Resolves once the process is gone. */
  kill(): Promise<WorkerExit>;
  /** SIGTERM (graceful shutdown), then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<WorkerExit>;
}

const started = new Set<WorkerProcess>();
let exitHookInstalled = false;

export async function startWorkerProcess(opts: WorkerProcessOptions): Promise<WorkerProcess> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const w of started) if (w.alive()) safeKill(w.pid, 'SIGKILL');
    });
  }
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODEBOOT_FAULT_PAUSE;
  Object.assign(env, {
    TEMPORAL_ADDRESS: opts.temporalAddress,
    TEMPORAL_NAMESPACE: opts.namespace ?? 'default',
    TEMPORAL_TASK_QUEUE: opts.taskQueue,
    DATABASE_URL: opts.databaseUrl,
    ...(opts.faultPause ? { NODEBOOT_FAULT_PAUSE: opts.faultPause } : {}),
  });
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', 'workers/worker.ts'], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const name = opts.name ?? `worker ${opts.taskQueue}`;
  const w = wrap(child, name, opts.taskQueue);
  started.add(w);
  try {
    await w.waitFor(/^\[worker\] polling /m, opts.readyTimeoutMs ?? 90_000);
    w.readyMs = Date.now() - t0;
  } catch (err) {
    await w.kill();
    throw err;
  }
  return w;
}

/** Kill (SIGKILL) every worker process this test process started and still runs. */
export async function stopAllWorkerProcesses(): Promise<void> {
  await Promise.all([...started].filter((w) => w.alive()).map((w) => w.kill()));
  started.clear();
}

function safeKill(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

function wrap(child: ChildProcess, name: string, taskQueue: string): WorkerProcess {
  if (child.pid === undefined) throw new Error(`${name}: could not spawn node`);
  const pid = child.pid;
  let out = '';
  let exit: WorkerExit | undefined;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const f of waiters) f();
  };
  const append = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT);
    wake();
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<WorkerExit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
      wake();
    });
  });

  const w: WorkerProcess = {
    pid,
    name,
    taskQueue,
    readyMs: 0,
    output: () => out,
    exited,
    alive: () => exit === undefined,
    waitFor(re, timeoutMs = 60_000) {
      return new Promise<string>((resolve, reject) => {
        const check = () => {
          const m = out.split('\n').find((l) => re.test(l));
          if (m !== undefined) return done(() => resolve(m));
          if (exit)
            return done(() =>
              reject(new Error(`${name} exited (${exit!.signal ?? exit!.code}) before writing ${re}:\n${tail(out)}`)),
            );
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms:\n${tail(out)}`))),
          timeoutMs,
        );
        const done = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    async kill() {
      if (exit) return exit;
      safeKill(pid, 'SIGKILL');
      return exited;
    },
    async stop(graceMs = 15_000) {
      if (exit) return exit;
      safeKill(pid, 'SIGTERM');
      const timer = setTimeout(() => safeKill(pid, 'SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  return w;
}

function tail(s: string, lines = 40): string {
  return s.split('\n').slice(-lines).join('\n');
}
