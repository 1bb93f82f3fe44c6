/**
 * The NATS backend bounds what it buffers while the server is unreachable: past `maxBufferedWrites`
 * writes fail at once with SLUICE_BACKEND_UNAVAILABLE (nats.js would buffer them without limit); the
 * admitted ones complete or fail with their own code — none vanishes; after the server is back, writes
 * work again on the same backend. Also: a comma-separated server list is used whole.
 */
import { expect, it } from 'vitest';
import { BindingError } from '../../bindings/errors.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { startNatsServer } from '../support/nats-server.ts';

it('nats/gate - writes past maxBufferedWrites while disconnected are SLUICE_BACKEND_UNAVAILABLE at once; the rest settle with a code; writes work after the restart', async () => {
  const server = await startNatsServer();
  const backend = await NatsBackend.open({ servers: server.url, maxBufferedWrites: 5 });
  try {
    await backend.createTable('gate');
    const kv = await backend.kv('gate');
    await kv.putItem('before', { a: 1 });
    await server.signal('SIGKILL');
    await new Promise((r) => setTimeout(r, 1000)); // the client sees the socket close
    const started = Date.now();
    const settled = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => kv.putItem(`during-${i}`, { i })));
    const refusedFast = settled.filter((s) => s.status === 'rejected' && (s.reason as BindingError).code === 'SLUICE_BACKEND_UNAVAILABLE');
    const other = settled.filter((s) => !(s.status === 'rejected' && (s.reason as BindingError).code === 'SLUICE_BACKEND_UNAVAILABLE'));
    expect(refusedFast.length).toBe(15);
    // The 5 admitted writes waited for the server and failed with a code of their own (or landed).
    for (const s of other) if (s.status === 'rejected') expect(s.reason).toBeInstanceOf(BindingError);
    expect((refusedFast[0] as PromiseRejectedResult).reason.message).toMatch(/NATS has been unreachable for \d+ ms and 5 writes .* already wait for it; refused, retry later/);
    process.stdout.write(`nats/gate: 20 writes during the outage settled in ${Date.now() - started} ms: ${refusedFast.length} refused at once, ${other.length} admitted (${other.map((s) => (s.status === 'fulfilled' ? 'ok' : (s.reason as BindingError).code)).join(', ')})\n`);
    await server.restart();
    const end = Date.now() + 30_000;
    for (;;) {
      try {
        await kv.putItem('after', { ok: true });
        break;
      } catch (e) {
        if (Date.now() > end) throw e;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    expect((await kv.getItem('after'))?.item).toEqual({ ok: true });
    expect((await kv.getItem('before'))?.item).toEqual({ a: 1 });
  } finally {
    await backend.close();
    await server.stop();
  }
}, 120_000);

it('nats/servers - a comma-separated list is used whole: the backend connects when the first URLs are dead', async () => {
  const server = await startNatsServer();
  try {
    // Two closed loopback ports first, the live server last, then a dead one again: any one live URL must do.
    const b = await NatsBackend.open({ servers: `nats://127.0.0.1:1, ${server.url} ,nats://127.0.0.1:2` });
    await b.createTable('multi');
    await b.close();
    // And the old failure mode: only the last URL (dead) used.
    const c = await NatsBackend.open({ servers: `${server.url},nats://127.0.0.1:2` });
    await c.close();
  } finally {
    await server.stop();
  }
}, 60_000);

it('nats/cas - a CAS write repeated with its message id after it landed is answered as a duplicate with the first sequence, not as a conflict', async () => {
  // What KvStore.put's retry after a timeout or a 503 relies on: the server checks the message id
  // before Nats-Expected-Last-Subject-Sequence. Checked on the real server, on a sluice table's stream.
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
  const server = await startNatsServer();
  const backend = await NatsBackend.open({ servers: server.url });
  const nc = await connect({ servers: server.url });
  try {
    await backend.createTable('cas');
    const kv = await backend.kv('cas');
    const first = await kv.putItem('k', { v: 1 });
    const jsm = await jetstreamManager(nc);
    const names: string[] = [];
    for await (const si of jsm.streams.list()) names.push(si.config.name);
    const stream = names.find((n) => n.startsWith('KV_') && n.endsWith('_cas'))!;
    const si = await jsm.streams.info(stream);
    expect(si.config.duplicate_window).toBe(30_000_000_000);
    const subject = (await jsm.streams.getMessage(stream, { seq: first.revision }))!.subject;
    const js = jetstream(nc);
    const opts = { msgID: 'retry-me', expect: { streamName: stream, lastSubjectSequence: first.revision } };
    const a = await js.publish(subject, new TextEncoder().encode('{"v":2}'), opts);
    const b = await js.publish(subject, new TextEncoder().encode('{"v":2}'), opts);
    expect(a.duplicate).toBe(false);
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
    // A different write with the stale expectation is still refused: the condition keeps its meaning.
    await expect(js.publish(subject, new TextEncoder().encode('{"v":3}'), { msgID: 'other', expect: { streamName: stream, lastSubjectSequence: first.revision } })).rejects.toThrow();
  } finally {
    await nc.close();
    await backend.close();
    await server.stop();
  }
}, 60_000);

it('nats/errors - nobody answering (no stream leader: an election) is SLUICE_BACKEND_UNAVAILABLE and retryable, never "bucket not found"; a write to a deleted stream keeps its not-found code', async () => {
  // The stuck-shard defect of issue 10: on a cluster, writes during a leader election get "no
  // responders"; mapped to SLUICE_BUCKET_NOT_FOUND (non-retryable) they dead-lettered a whole batch.
  const { NoRespondersError } = await import('@nats-io/nats-core');
  const { toBindingError } = await import('../../bindings/nats/nats-errors.ts');
  const { isRetryableCommitError } = await import('../../runtime/retry-policy.ts');
  const mapped = toBindingError(new NoRespondersError('$KV.sluice_obj_b.x'), "updateAttrs 'x' in bucket 'b'", { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
  expect(mapped.code).toBe('SLUICE_BACKEND_UNAVAILABLE');
  expect(isRetryableCommitError(mapped.code)).toBe(true);
  const server = await startNatsServer();
  const backend = await NatsBackend.open({ servers: server.url });
  try {
    await backend.createTable('gone');
    const kv = await backend.kv('gone');
    await kv.putItem('a', { a: 1 });
    const { connect } = await import('@nats-io/transport-node');
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const nc = await connect({ servers: server.url });
    await (await jetstreamManager(nc)).streams.delete('KV_sluice_kv_gone');
    await nc.close();
    const err = await kv.putItem('b', { b: 1 }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(BindingError);
    expect((err as BindingError).code).toBe('SLUICE_TABLE_NOT_FOUND');
  } finally {
    await backend.close();
    await server.stop();
  }
}, 60_000);

it('nats/reader - a consumer that keeps answering "no messages" while the stream has records past it is replaced (a replica that is behind)', async () => {
  // On a cluster an R1 consumer may sit on a replica that is behind and answer 404 "no messages" with
  // no error. Simulated here on one server: a consumer positioned past the reader's `next`.
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
  const { createEphemeral, PullStatusError } = await import('../../bindings/nats/nats-context.ts');
  const { ShardReader, STALE_CHECK_MS } = await import('../../bindings/nats/nats-reader.ts');
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'ST', subjects: ['st.>'], allow_direct: true });
    const js = jetstream(nc);
    for (let i = 0; i < 5; i++) await js.publish('st.0', `r${i}`);
    const ctx = { nc, js, jsm, apiPrefix: '$JS.API', directReads: true } as unknown as Parameters<typeof createEphemeral>[0];
    const consumer = await createEphemeral(ctx, 'ST', { kind: 'read', filter: 'st.0', start: { seq: 100 } });
    const reader = new ShardReader('ST', 'st.0', consumer, 1);
    const started = Date.now();
    let err: unknown;
    while (Date.now() - started < STALE_CHECK_MS + 5000) {
      try {
        expect(await reader.read(ctx, 10, 200, undefined)).toEqual([]);
      } catch (e) {
        err = e;
        break;
      }
    }
    expect(err).toBeInstanceOf(PullStatusError);
    expect(String((err as Error).message)).toMatch(/replica that is behind/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(STALE_CHECK_MS);
  } finally {
    await nc.close();
    await server.stop();
  }
}, 60_000);
