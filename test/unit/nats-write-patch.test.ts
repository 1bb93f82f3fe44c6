/**
 * bindings/nats/nats-write-patch.ts against a real nats-server: what a marked connection sends from
 * several callbacks of one event-loop turn leaves in ONE socket write, in order, while an unmarked one
 * writes once per callback as nats.js does; past CORK_MAX_BYTES it writes at once; a frame sent alone
 * still leaves within its turn; a drain right after a publish still delivers it; a connection that
 * reconnected to a restarted server (a new socket) is corked the same way.
 */
import type { Socket } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CORK_MAX_BYTES, corkWrites } from '../../bindings/nats/nats-write-patch.ts';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.ts';

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

/** The socket nats.js writes to now (a reconnect replaces it; undefined while reconnecting). */
function currentSocket(nc: NatsConnection): Socket | undefined {
  return (nc as unknown as { protocol: { transport?: { socket?: Socket } } }).protocol.transport?.socket;
}

function socketOf(nc: NatsConnection): Socket {
  const s = currentSocket(nc);
  expect(s).toBeDefined();
  return s!;
}

/** Counts the write system calls Node makes on `s` (one `_write` or `_writev` each). */
function countWrites(s: Socket): { readonly n: number } {
  const c = { n: 0 };
  const sock = s as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const w = sock._write.bind(s);
  const wv = sock._writev.bind(s);
  sock._write = (...a) => (c.n++, w(...a));
  sock._writev = (...a) => (c.n++, wv(...a));
  return c;
}

/** Subscribes `subject` on a connection of its own; `got` fills with the payloads in arrival order. */
async function receiver(subject: string): Promise<{ nc: NatsConnection; got: string[]; until(n: number, ms?: number): Promise<void> }> {
  const nc = await connect({ servers: server.url });
  const got: string[] = [];
  nc.subscribe(subject, { callback: (_e, m) => void got.push(m.string()) });
  await nc.flush();
  return {
    nc,
    got,
    async until(n, ms = 5000) {
      const end = Date.now() + ms;
      while (got.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    },
  };
}

/** Publishes `rounds` × `each` messages on `nc` in one macrotask, a microtask checkpoint after each round. */
function publishInOneTurn(nc: NatsConnection, subject: string, rounds: number, each: number, payload: (k: number, i: number) => string): Promise<void> {
  return new Promise<void>((done) =>
    setTimeout(async () => {
      for (let k = 0; k < rounds; k++) {
        for (let i = 0; i < each; i++) nc.publish(subject, payload(k, i));
        // nats.js hands its buffer to the transport from a microtask: this lets it run.
        await Promise.resolve();
        await Promise.resolve();
      }
      done();
    }, 0),
  );
}

/** Runs `fn` with a marked connection (its writes counted from now) and a receiver on `subject`; closes both. */
async function withMarked(subject: string, fn: (nc: NatsConnection, rx: Awaited<ReturnType<typeof receiver>>, writes: { readonly n: number }) => Promise<void>): Promise<void> {
  const rx = await receiver(subject);
  const nc = await connect({ servers: server.url });
  try {
    expect(corkWrites(nc)).toBe(true);
    await nc.flush();
    await fn(nc, rx, countWrites(socketOf(nc)));
  } finally {
    await nc.close();
    await rx.nc.close();
  }
}

describe('nats write patch', () => {
  it('a marked connection sends what several callbacks of one turn queue in one write, in order; an unmarked one writes per callback', async () => {
    const rx = await receiver('w.one');
    const marked = await connect({ servers: server.url });
    const plain = await connect({ servers: server.url });
    try {
      expect(corkWrites(marked)).toBe(true);
      await marked.flush();
      await plain.flush();
      const expected = Array.from({ length: 50 }, (_, j) => `${Math.floor(j / 10)}.${j % 10}`);
      const plainWrites = countWrites(socketOf(plain));
      await publishInOneTurn(plain, 'w.one', 5, 10, (k, i) => `${k}.${i}`);
      await rx.until(50);
      expect(rx.got).toEqual(expected);
      expect(plainWrites.n).toBe(5);

      rx.got.length = 0;
      const writes = countWrites(socketOf(marked));
      await publishInOneTurn(marked, 'w.one', 5, 10, (k, i) => `${k}.${i}`);
      await rx.until(50);
      expect(rx.got).toEqual(expected);
      expect(writes.n).toBe(1);
    } finally {
      await marked.close();
      await plain.close();
      await rx.nc.close();
    }
  });

  it('past CORK_MAX_BYTES waiting, the socket is written at once', async () => {
    await withMarked('w.big', async (nc, rx, writes) => {
      // Six rounds of a quarter of the limit each: written after the 4th round (limit reached) and at
      // the turn's end (rounds 5 and 6).
      const body = 'x'.repeat(CORK_MAX_BYTES / 4);
      await publishInOneTurn(nc, 'w.big', 6, 1, (k) => `${k}${body}`);
      await rx.until(6);
      expect(rx.got.map((m) => m[0])).toEqual(['0', '1', '2', '3', '4', '5']);
      expect(writes.n).toBe(2);
    });
  });

  it('a frame sent alone leaves within its turn; frames of separate turns are separate writes', async () => {
    await withMarked('w.alone', async (nc, rx, writes) => {
      const took: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        const before = rx.got.length;
        nc.publish('w.alone', `m${i}`);
        await rx.until(before + 1, 2000);
        expect(rx.got.length).toBe(before + 1);
        took.push(performance.now() - t0);
      }
      // A loopback round trip (well under a millisecond here); a frame held past its turn (a timer, the
      // next send) would show in the median.
      took.sort((a, b) => a - b);
      expect(took[5]!).toBeLessThan(25);
      expect(rx.got).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
      expect(writes.n).toBe(10);
    });
  });

  it('a drain in the same turn as a publish still delivers it', async () => {
    const rx = await receiver('w.close');
    const nc = await connect({ servers: server.url });
    corkWrites(nc);
    await nc.flush();
    nc.publish('w.close', 'last');
    await nc.drain();
    await rx.until(1);
    expect(rx.got).toEqual(['last']);
    await rx.nc.close();
  });

  it('after a reconnect (new socket) frames are corked and delivered the same way', async () => {
    const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
    corkWrites(nc);
    const before = socketOf(nc);
    try {
      await server.signal('SIGKILL');
      await server.restart();
      const end = Date.now() + 15_000;
      while ((currentSocket(nc) === undefined || currentSocket(nc) === before) && !nc.isClosed() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(currentSocket(nc)).toBeDefined();
      expect(currentSocket(nc)).not.toBe(before);
      await nc.flush();
      const rx = await receiver('w.again');
      const writes = countWrites(socketOf(nc));
      await new Promise<void>((done) =>
        setTimeout(async () => {
          nc.publish('w.again', 'a');
          await Promise.resolve();
          nc.publish('w.again', 'b');
          done();
        }, 0),
      );
      await rx.until(2);
      expect(rx.got).toEqual(['a', 'b']);
      expect(writes.n).toBe(1);
      await rx.nc.close();
    } finally {
      await nc.close();
    }
  });
});
