/**
 * bindings/nats/nats-reader.ts's pulls against a real nats-server, counted on the wire (a subscriber on
 * the pull-request subject): a reader that is caught up and may wait sends ONE waiting pull, which also
 * answers at once with a message that came meanwhile; one that left messages pending takes up to `limit`
 * with a non-waiting pull first; no message is lost or repeated across the switches.
 */
import { expect, it } from 'vitest';
import { startNatsServer } from '../support/nats-server.ts';

it('nats/reader - caught up: one waiting pull per read; behind: a non-waiting batch pull; every message once, in order', async () => {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
  const { createEphemeral } = await import('../../bindings/nats/nats-context.ts');
  const { ShardReader } = await import('../../bindings/nats/nats-reader.ts');
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  const spy = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'RD', subjects: ['rd.>'], allow_direct: true });
    const js = jetstream(nc);
    const ctx = { nc, js, jsm, apiPrefix: '$JS.API', directReads: true } as unknown as Parameters<typeof createEphemeral>[0];
    const consumer = await createEphemeral(ctx, 'RD', { kind: 'read', filter: 'rd.0', start: { seq: 1 } });
    const pulls: { noWait: boolean; batch: number }[] = [];
    spy.subscribe(`$JS.API.CONSUMER.MSG.NEXT.RD.${consumer}`, {
      callback: (_e, m) => {
        const body = m.json<{ batch: number; no_wait?: boolean }>();
        pulls.push({ noWait: body.no_wait === true, batch: body.batch });
      },
    });
    await spy.flush();
    const reader = new ShardReader('RD', 'rd.0', consumer, 1);
    const seen: string[] = [];
    const read = async (limit: number, waitMs: number): Promise<number> => {
      pulls.length = 0;
      const got = await reader.read(ctx, limit, waitMs, undefined);
      seen.push(...got.map((m) => new TextDecoder().decode(m.data)));
      await spy.flush();
      return got.length;
    };

    for (let i = 0; i < 5; i++) await js.publish('rd.0', `m${i}`);
    // Not known to be caught up yet: a non-waiting pull of up to `limit` takes all five.
    expect(await read(10, 500)).toBe(5);
    expect(pulls).toEqual([{ noWait: true, batch: 10 }]);

    // Caught up: one waiting pull; a message published while it waits comes back alone.
    const later = setTimeout(() => void js.publish('rd.0', 'm5'), 100);
    expect(await read(10, 5000)).toBe(1);
    clearTimeout(later);
    expect(pulls).toEqual([{ noWait: false, batch: 1 }]);

    // Still caught up; three messages came since: the waiting pull answers at once with the first and
    // says two are pending, so the next read takes them with a non-waiting pull.
    for (let i = 6; i < 9; i++) await js.publish('rd.0', `m${i}`);
    const t0 = Date.now();
    expect(await read(10, 5000)).toBe(1);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(pulls).toEqual([{ noWait: false, batch: 1 }]);
    expect(await read(10, 5000)).toBe(2);
    expect(pulls).toEqual([{ noWait: true, batch: 10 }]);

    // Caught up and nothing comes: the waiting pull expires empty, and the reader stays caught up.
    expect(await read(10, 200)).toBe(0);
    expect(pulls).toEqual([{ noWait: false, batch: 1 }]);
    // Not allowed to wait: a non-waiting pull whatever the state.
    await js.publish('rd.0', 'm9');
    expect(await read(10, 0)).toBe(1);
    expect(pulls).toEqual([{ noWait: true, batch: 10 }]);

    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    expect(reader.next).toBe(11);
  } finally {
    await spy.close();
    await nc.close();
    await server.stop();
  }
}, 60_000);
