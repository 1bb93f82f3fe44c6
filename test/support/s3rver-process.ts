/**
 * Starts a real S3-protocol server for tests: npm `s3rver` as a child process on a random loopback
 * port with a temporary directory, killed and cleaned on stop. A child process, not in-process: its
 * request handling then does not share the test's event loop, and Node 20 needs
 * `--openssl-legacy-provider` for s3rver to page listings past 1,000 keys (it hashes continuation
 * tokens with an algorithm OpenSSL 3 only has in the legacy provider).
 *
 * When it cannot start, it throws: a suite that needs it fails, it never skips.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** s3rver's fixed credentials (it accepts only this key pair). */
export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';

export interface S3rverHandle {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  port: number;
  dir: string;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s) and removes its directory. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
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

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = tcpConnect({ port, host: '127.0.0.1' });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Starts s3rver on 127.0.0.1 (no buckets; create them with any S3 client). */
export async function startS3rver(): Promise<S3rverHandle> {
  const main = fileURLToPath(new URL('./s3rver-main.cjs', import.meta.url));
  const dir = await mkdtemp(join(tmpdir(), 'sluice-s3rver-'));
  let lastErr = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const args = ['--openssl-legacy-provider', main, String(port), dir];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let exited = false;
    child.on('error', (e) => {
      lastErr = e.message;
      exited = true;
    });
    child.on('exit', () => (exited = true));
    child.stderr?.on('data', (d: Buffer) => (lastErr = (lastErr + d.toString()).slice(-2000)));
    const deadline = Date.now() + 20_000;
    while (!exited && Date.now() < deadline) {
      if (await canConnect(port)) {
        return {
          endpoint: `http://127.0.0.1:${port}`,
          port,
          dir,
          process: child,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) {
              const done = new Promise<void>((r) => child.once('exit', () => r()));
              child.kill('SIGTERM');
              const t = setTimeout(() => child.kill('SIGKILL'), 3000);
              await done;
              clearTimeout(t);
            }
            await rm(dir, { recursive: true, force: true });
          },
        };
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    child.kill('SIGKILL');
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`s3rver did not come up on loopback after 5 attempts: ${lastErr}`);
}
