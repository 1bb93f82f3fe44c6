/**
 * Starts a real nats-server with JetStream for tests: random free port, temporary store directory,
 * killed and cleaned on stop. When the binary is missing or the server does not come up, it throws:
 * a suite that needs NATS fails, it never skips (CI installs nats-server in .ci/run).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canConnect, exitOf, freePort, launchOnFreePort, stopChild } from './child-server.ts';

export interface NatsServerHandle {
  /** `nats://127.0.0.1:<port>` */
  url: string;
  port: number;
  storeDir: string;
  process: ChildProcess;
  /** Sends `signal` (SIGKILL, SIGSTOP, SIGCONT…); resolves once a killing signal has taken effect. */
  signal(signal: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and store directory (after a kill). */
  restart(): Promise<void>;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s) and removes its store. */
  stop(): Promise<void>;
}

/** Starts nats-server -js on loopback. `extraArgs` are passed through. */
export async function startNatsServer(extraArgs: string[] = []): Promise<NatsServerHandle> {
  const bin = process.env.NATS_SERVER_BIN ?? 'nats-server';
  const storeDir = await mkdtemp(join(tmpdir(), 'sluice-nats-'));
  const args = (port: number) => ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir, ...extraArgs];
  let launched: Awaited<ReturnType<typeof launchOnFreePort>>;
  try {
    launched = await launchOnFreePort({
      what: 'nats-server',
      spawn: (port) => spawn(bin, args(port), { stdio: ['ignore', 'ignore', 'pipe'] }),
      spawnError: (e) => new Error(`cannot start ${bin}: ${e.message} (install it: apt-get install -y nats-server)`, { cause: e }),
    });
  } catch (e) {
    await rm(storeDir, { recursive: true, force: true });
    throw e;
  }
  const { port, child } = launched;
  let lastErr = launched.stderr();
  const handle: NatsServerHandle = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    process: child,
    async signal(sig) {
      handle.process.kill(sig);
      if (sig === 'SIGKILL' || sig === 'SIGTERM') await exitOf(handle.process);
    },
    async restart() {
      const c = handle.process;
      if (c.exitCode === null && c.signalCode === null) throw new Error('nats-server is still running');
      const next = spawn(bin, args(port), { stdio: ['ignore', 'ignore', 'pipe'] });
      next.stderr?.on('data', (d: Buffer) => (lastErr = (lastErr + d.toString()).slice(-2000)));
      handle.process = next;
      const end = Date.now() + 15_000;
      while (!(await canConnect(port))) {
        if (next.exitCode !== null || Date.now() > end) throw new Error(`nats-server did not come back on ${port}: ${lastErr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop() {
      await stopChild(handle.process);
      await rm(storeDir, { recursive: true, force: true });
    },
  };
  return handle;
}

/** One node of a {@link NatsClusterHandle}. */
export interface NatsNode {
  name: string;
  url: string;
  port: number;
  clusterPort: number;
  storeDir: string;
  process: ChildProcess | undefined;
}

/** A JetStream cluster on loopback: each node its own store directory, routes on loopback ports. */
export interface NatsClusterHandle {
  nodes: NatsNode[];
  /** Every client URL, comma-separated (what `--data` / `spec.backend.url` take). */
  urls: string;
  /** Sends `signal` to node `i` (SIGKILL, SIGSTOP, SIGCONT…); resolves once a killing signal has taken effect. */
  signal(i: number, signal: NodeJS.Signals): Promise<void>;
  /** Starts node `i` again on the same ports and store directory (after a kill). */
  restart(i: number): Promise<void>;
  /** Stops every node and removes the store directories. */
  stop(): Promise<void>;
}

function spawnNode(bin: string, n: NatsNode, all: NatsNode[], clusterName: string): ChildProcess {
  const routes = all.filter((o) => o !== n).map((o) => `nats://127.0.0.1:${o.clusterPort}`).join(',');
  return spawn(
    bin,
    ['-js', '-a', '127.0.0.1', '-p', String(n.port), '-sd', n.storeDir, '-n', n.name, '--cluster_name', clusterName, '--cluster', `nats://127.0.0.1:${n.clusterPort}`, '--routes', routes],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
}

async function waitPort(port: number, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before listening on ${port}`);
    if (await canConnect(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not listen on ${port} within 15 s`);
}

/**
 * Starts an `n`-node JetStream cluster (nats-server 2.9+) on loopback. Resolves when every node
 * accepts clients; the JetStream meta leader may still be in election — callers that create streams
 * retry or wait (see `waitJetStream` in the tests).
 */
export async function startNatsCluster(n = 3): Promise<NatsClusterHandle> {
  const bin = process.env.NATS_SERVER_BIN ?? 'nats-server';
  const clusterName = `sluice-${Math.random().toString(36).slice(2, 8)}`;
  const nodes: NatsNode[] = [];
  for (let i = 0; i < n; i++) {
    nodes.push({ name: `${clusterName}-n${i}`, url: '', port: await freePort(), clusterPort: await freePort(), storeDir: await mkdtemp(join(tmpdir(), `sluice-natsc${i}-`)), process: undefined });
  }
  for (const node of nodes) node.url = `nats://127.0.0.1:${node.port}`;
  const start = async (node: NatsNode) => {
    const child = spawnNode(bin, node, nodes, clusterName);
    let spawnError: Error | undefined;
    child.on('error', (e) => (spawnError = e));
    node.process = child;
    await new Promise((r) => setImmediate(r));
    if (spawnError) throw new Error(`cannot start ${bin}: ${spawnError.message} (install it: apt-get install -y nats-server)`, { cause: spawnError });
    await waitPort(node.port, child, node.name);
  };
  try {
    await Promise.all(nodes.map(start));
  } catch (e) {
    for (const node of nodes) node.process?.kill('SIGKILL');
    await Promise.all(nodes.map((node) => rm(node.storeDir, { recursive: true, force: true })));
    throw e;
  }
  return {
    nodes,
    urls: nodes.map((x) => x.url).join(','),
    async signal(i, sig) {
      const c = nodes[i]?.process;
      if (!c) throw new Error(`no node ${i}`);
      c.kill(sig);
      if (sig === 'SIGKILL' || sig === 'SIGTERM') await exitOf(c);
    },
    async restart(i) {
      const node = nodes[i];
      if (!node) throw new Error(`no node ${i}`);
      if (node.process && node.process.exitCode === null && node.process.signalCode === null) throw new Error(`node ${i} is still running`);
      await start(node);
    },
    async stop() {
      await Promise.all(
        nodes.map(async (node) => {
          if (node.process) await stopChild(node.process);
          await rm(node.storeDir, { recursive: true, force: true });
        }),
      );
    },
  };
}
