/**
 * Fault test (b) of issue 10: a 3-node JetStream cluster on loopback (nats-server, each node its own
 * store directory, routes on loopback ports); the backend creates every stream R3 by itself (the
 * server is clustered); two worker processes get the whole comma-separated server list (the client
 * picks a node at random, so they usually sit on different nodes); one node is SIGKILLed in the middle
 * of the uploads and restarted later on its store directory.
 *
 * Checked: uploads either succeed or fail with a sluice code and are retried (never silently lost),
 * every acknowledged upload is handled exactly once (n = 1), the counters are exact, and the longest
 * pause between two acknowledged uploads stays under a bound (leader election + reconnect).
 * 1,500 uploads, to keep CI time bounded (the runs used 5,000).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { expect, it } from 'vitest';
import { BindingError } from '../../bindings/errors.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { ObjectBinding } from '../../bindings/types.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { loadFunctionSpec } from '../../controller/spec/index.ts';
import { openStateTable, readCounters } from '../../runtime/index.ts';
import { startNatsCluster } from '../support/nats-server.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const N = Number(process.env.SLUICE_CLUSTER_OBJECTS ?? 1500);

async function until(what: string, pred: () => Promise<boolean> | boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Opens the backend once the cluster has a JetStream meta leader (creating the meta bucket needs one). */
async function openWhenReady(urls: string): Promise<NatsBackend> {
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      return await NatsBackend.open({ servers: urls });
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Puts `key` create-only until it is acknowledged; a retry of a put that had landed reads as CONDITION_FAILED. */
async function putUntilAcked(o: ObjectBinding, key: string, codes: Map<string, number>, deadline: number): Promise<void> {
  for (;;) {
    try {
      await o.put(key, `body of ${key}`, { ifNoneMatch: '*' });
      return;
    } catch (e) {
      if (!(e instanceof BindingError)) throw new Error(`put ${key} failed without a sluice code: ${String(e)}`, { cause: e });
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
      if (e.code === 'SLUICE_CONDITION_FAILED') return; // an earlier attempt landed
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

it(`nats cluster - 3 nodes, R3 by default, a node SIGKILLed mid-run and restarted: ${N} uploads handled exactly once, counters exact`, async () => {
  const cluster = await startNatsCluster(3);
  const work = mkdtempSync(join(tmpdir(), 'sluice-cluster-'));
  let backend: NatsBackend | undefined;
  const driver = new LocalDriver({ runDir: join(work, 'run'), restartDelayMs: 200 });
  try {
    backend = await openWhenReady(cluster.urls);
    expect(backend.replicas).toBe(3);
    const fn = 'clustered';
    const shards = 4;
    await backend.createBucket('cl', { shards });
    const spec = loadFunctionSpec(`apiVersion: sluice.dev/v1
kind: Function
metadata: {name: ${fn}}
spec:
  handler: ${JSON.stringify(fixture)}
  backend: {kind: nats, url: ${JSON.stringify(cluster.urls)}}
  triggers: [{object: {bucket: cl}}]
  batch: {maxRecords: 50, maxWait: 5ms}
  retries: {maxAttempts: 1000, initialBackoff: 100ms, maxBackoff: 2s}
  concurrency: {threads: 0}
  scaling: {minReplicas: 2, maxReplicas: 2}
`);
    await driver.apply(spec, work);
    await driver.scale(fn, 2);
    await until('two workers ready', async () => (await driver.status(fn))?.ready === 2, 90_000);

    // Every stream sluice created is R3. The node to kill: the leader of the bucket's stream (the worst case).
    let victim = 0;
    const nc = await connect({ servers: cluster.nodes[1]!.url });
    try {
      const jsm = await jetstreamManager(nc);
      const replicas: string[] = [];
      for await (const si of jsm.streams.list()) {
        replicas.push(`${si.config.name}:R${si.config.num_replicas}`);
        if (si.config.name.startsWith('KV_') && si.config.name.endsWith('cl')) victim = Math.max(0, cluster.nodes.findIndex((n) => n.name === si.cluster?.leader));
      }
      expect(replicas.length).toBeGreaterThan(2);
      expect(replicas.filter((r) => !r.endsWith(':R3'))).toEqual([]);
      process.stdout.write(`nats cluster: streams ${replicas.join(' ')}; killing node ${victim} (leader of the bucket's stream)\n`);
    } finally {
      await nc.close();
    }

    const o = await backend.objects('cl');
    const codes = new Map<string, number>();
    const acked: string[] = [];
    let lastAck = Date.now();
    let maxPauseMs = 0;
    let killedAt = 0;
    let restartedAt = 0;
    const deadline = Date.now() + 180_000;
    for (let i = 0; i < N; i += 10) {
      if (i === Math.floor(N / 3 / 10) * 10) {
        await cluster.signal(victim, 'SIGKILL');
        killedAt = Date.now();
      }
      if (killedAt && !restartedAt && Date.now() - killedAt > 5000) {
        await cluster.restart(victim);
        restartedAt = Date.now();
      }
      const keys = Array.from({ length: Math.min(10, N - i) }, (_, j) => `c-${i + j}`);
      await Promise.all(keys.map((k) => putUntilAcked(o, k, codes, deadline)));
      acked.push(...keys);
      const now = Date.now();
      maxPauseMs = Math.max(maxPauseMs, now - lastAck);
      lastAck = now;
    }
    if (!restartedAt) {
      await until('5 s after the kill', () => Date.now() - killedAt > 5000, 10_000);
      await cluster.restart(victim);
      restartedAt = Date.now();
    }
    process.stdout.write(`nats cluster: ${acked.length} acknowledged; longest pause between acknowledged uploads ${maxPauseMs} ms; codes seen while a node was down: ${JSON.stringify(Object.fromEntries(codes))}\n`);

    const bad: string[] = [];
    const unapplied = async () => {
      bad.length = 0;
      for (const k of acked) {
        const n = (await o.getAttrs(k)).attrs.n;
        if (n !== 1) bad.push(`${k}: n=${String(n)}`);
        if (bad.length > 10 || (n !== undefined && n !== 1)) break;
      }
      return bad;
    };
    await until('every acknowledged upload handled', async () => (await unapplied()).length === 0, 120_000).catch(() => undefined);
    expect(bad).toEqual([]);
    expect((await driver.status(fn))?.ready).toBe(2);
    const state = await openStateTable(backend);
    expect((await readCounters(state, fn, shards)).seen).toBe(acked.length);
    // Bound: a JetStream leader election takes a few seconds; the client's reconnect 2 s more.
    expect(maxPauseMs).toBeLessThan(20_000);
  } finally {
    await driver.close();
    await backend?.close();
    await cluster.stop();
    rmSync(work, { recursive: true, force: true });
  }
}, 300_000);
