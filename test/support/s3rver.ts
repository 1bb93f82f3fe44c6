/**
 * Starts a real S3-protocol server (npm `s3rver`, filesystem-backed) for tests: a child process on
 * 127.0.0.1 with a random port (`--port 0`, the port read back from its "listening" line) and a temp
 * directory, killed and cleaned on stop. When it does not come up it throws — a test that needs it
 * fails, it never skips. Buckets given to {@link startS3rver} exist at start (`--configure-bucket`).
 *
 * s3rver accepts the fixed credentials S3RVER / S3RVER ({@link S3rverCredentials}): an unknown access
 * key id is refused (InvalidAccessKeyId, 403); it does not verify SigV4 signatures themselves, so a
 * wrong secret key is NOT refused (a limit of s3rver 3.7, not of the client).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** The access key id and secret s3rver accepts. */
export const S3rverCredentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface S3rverHandle {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  port: number;
  dir: string;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s) and removes its directory. */
  stop(): Promise<void>;
}

function s3rverBin(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
}

/** Starts s3rver on loopback with `buckets` created. Rejects (never skips) when it does not come up in 20 s. */
export async function startS3rver(buckets: string[] = []): Promise<S3rverHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-s3rver-'));
  const args = [s3rverBin(), '--directory', dir, '--address', '127.0.0.1', '--port', '0', '--silent', '--no-vhost-buckets'];
  for (const b of buckets) args.push('--configure-bucket', b);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 20 s: ${out.slice(-500)}`)), 20_000);
    const onData = (d: Buffer) => {
      out += d.toString('utf8');
      const m = /listening on [\d.]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited (${code ?? sig}) before listening: ${out.slice(-500)}`));
    });
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  }).catch(async (e: unknown) => {
    proc.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw e;
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    dir,
    process: proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<void>((r) => proc.once('exit', () => r()));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
