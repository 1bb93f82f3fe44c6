/**
 * Starts a real S3-protocol server for tests: npm `s3rver` (filesystem-backed) as a child process on a
 * random loopback port with a temporary directory, killed and cleaned on stop. Buckets given to
 * {@link startS3rver} exist at start. A child process, not in-process: its request handling then does
 * not share the test's event loop, and Node 20 needs `--openssl-legacy-provider` for s3rver to page
 * listings past 1,000 keys (it hashes continuation tokens with an algorithm OpenSSL 3 only has in the
 * legacy provider). When it cannot start, it throws: a suite that needs it fails, it never skips.
 *
 * s3rver accepts the fixed credentials S3RVER / S3RVER ({@link S3rverCredentials}): an unknown access
 * key id is refused (InvalidAccessKeyId, 403); it does not verify SigV4 signatures themselves, so a
 * wrong secret key is NOT refused (a limit of s3rver 3.7, not of the client).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchOnFreePort, stopChild } from './child-server.ts';

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

/** Starts s3rver on 127.0.0.1 with `buckets` created (more with any S3 client). */
export async function startS3rver(buckets: string[] = []): Promise<S3rverHandle> {
  const main = fileURLToPath(new URL('./s3rver-main.cjs', import.meta.url));
  const dir = await mkdtemp(join(tmpdir(), 'sluice-s3rver-'));
  try {
    const { port, child } = await launchOnFreePort({
      what: 's3rver',
      attemptMs: 20_000,
      spawn: (p) => spawn(process.execPath, ['--openssl-legacy-provider', main, String(p), dir, ...buckets], { stdio: ['ignore', 'ignore', 'pipe'] }),
    });
    return {
      endpoint: `http://127.0.0.1:${port}`,
      port,
      dir,
      process: child,
      async stop() {
        await stopChild(child);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}
