/**
 * The launch loop every test server shares (nats-server, s3rver): pick a free loopback port, spawn the
 * child on it, poll until it accepts TCP connections, and try another port when the child dies first
 * (another process took the port between the pick and the listen). A child that cannot be spawned at
 * all (binary missing) fails at once; one that never listens fails after every attempt — a test that
 * needs the server fails, it never skips.
 */
import type { ChildProcess } from 'node:child_process';
import { connect as tcpConnect, createServer } from 'node:net';

/** A port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** True when something accepts a TCP connection on 127.0.0.1:`port`. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = tcpConnect({ port, host: '127.0.0.1' });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Resolves once `c` has exited (at once when it has already). */
export function exitOf(c: ChildProcess): Promise<void> {
  return new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));
}

/** Stops a child: SIGCONT (a SIGSTOPped one must see the SIGTERM), SIGTERM, SIGKILL after 3 s. */
export async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const done = exitOf(c);
  c.kill('SIGCONT');
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 3000);
  await done;
  clearTimeout(t);
}

/** Options of {@link launchOnFreePort}. */
export interface LaunchOptions {
  /** Spawns the server on `port` (its stderr piped: kept for the error message). */
  spawn(port: number): ChildProcess;
  /** What the server is, in error messages. */
  what: string;
  /** How long one attempt waits for the port. @default 10000 */
  attemptMs?: number;
  /** @default 5 */
  attempts?: number;
  /** The error of a child that could not be spawned at all (ENOENT: say how to install it). @default the spawn error */
  spawnError?: (e: Error) => Error;
}

/** Starts a server on a free loopback port; resolves with the port and the child listening on it. */
export async function launchOnFreePort(o: LaunchOptions): Promise<{ port: number; child: ChildProcess; stderr: () => string }> {
  let lastErr = '';
  for (let attempt = 0; attempt < (o.attempts ?? 5); attempt++) {
    const port = await freePort();
    const child = o.spawn(port);
    let exited = false;
    let spawnError: Error | undefined;
    child.on('error', (e) => {
      spawnError = e;
      lastErr = e.message;
      exited = true;
    });
    child.on('exit', () => (exited = true));
    child.stderr?.on('data', (d: Buffer) => (lastErr = (lastErr + d.toString()).slice(-2000)));
    const deadline = Date.now() + (o.attemptMs ?? 10_000);
    while (!exited && Date.now() < deadline) {
      if (await canConnect(port)) return { port, child, stderr: () => lastErr };
      await new Promise((r) => setTimeout(r, 25));
    }
    if (spawnError) throw o.spawnError ? o.spawnError(spawnError) : spawnError;
    child.kill('SIGKILL');
  }
  throw new Error(`${o.what} did not come up on loopback after ${o.attempts ?? 5} attempts: ${lastErr}`);
}
