/**
 * Starts a real nats-server with JetStream for tests: random free port, temporary store directory,
 * killed and cleaned on stop. When the binary is missing or the server does not come up, it throws:
 * a suite that needs NATS fails, it never skips (CI installs nats-server in .ci/run).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface NatsServerHandle {
  /** `nats://127.0.0.1:<port>` */
  url: string;
  port: number;
  storeDir: string;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s) and removes its store. */
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

/** Starts nats-server -js on loopback. `extraArgs` are passed through. */
export async function startNatsServer(extraArgs: string[] = []): Promise<NatsServerHandle> {
  const bin = process.env.NATS_SERVER_BIN ?? 'nats-server';
  const storeDir = await mkdtemp(join(tmpdir(), 'sluice-nats-'));
  let lastErr = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = spawn(bin, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir, ...extraArgs], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let exited = false;
    let spawnError: Error | undefined;
    child.on('error', (e) => {
      spawnError = e;
      exited = true;
    });
    child.on('exit', () => (exited = true));
    child.stderr?.on('data', (d: Buffer) => (lastErr = (lastErr + d.toString()).slice(-2000)));
    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline) {
      if (await canConnect(port)) {
        const handle: NatsServerHandle = {
          url: `nats://127.0.0.1:${port}`,
          port,
          storeDir,
          process: child,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) {
              const done = new Promise<void>((r) => child.once('exit', () => r()));
              child.kill('SIGTERM');
              const t = setTimeout(() => child.kill('SIGKILL'), 3000);
              await done;
              clearTimeout(t);
            }
            await rm(storeDir, { recursive: true, force: true });
          },
        };
        return handle;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    if (spawnError) throw new Error(`cannot start ${bin}: ${spawnError.message} (install it: apt-get install -y nats-server)`, { cause: spawnError });
    child.kill('SIGKILL');
  }
  await rm(storeDir, { recursive: true, force: true });
  throw new Error(`nats-server did not come up on loopback after 5 attempts: ${lastErr}`);
}
