/**
 * bindings/nats/nats-headers.ts: NatsHeaders behaves as nats.js's MsgHdrsImpl — the same lookups of
 * the same decoded bytes, the same wire bytes and errors for the same writes (property-tested) — and
 * headersOf reads the headers of messages a real nats-server delivered, status replies included.
 */
import { MsgHdrsImpl, Match, headers as natsHeaders, type Msg, type MsgHdrs } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headersOf, NatsHeaders, readsRawHeaders } from '../../bindings/nats/nats-headers.ts';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.ts';

const TE = new TextEncoder();
const MATCHES = [Match.Exact, Match.CanonicalMIME, Match.IgnoreCase] as const;

/** Every lookup of `probe` keys under every match mode, as one comparable object. */
function lookups(h: MsgHdrs, probe: string[]): unknown {
  const out: Record<string, unknown> = { code: h.code, description: h.description, status: h.status, hasError: h.hasError, keys: h.keys(), entries: [...h].map(([k, v]) => [k, [...v]]) };
  for (const k of probe)
    for (const m of MATCHES) {
      let v: unknown;
      try {
        v = [h.get(k, m), h.last(k, m), h.has(k, m), h.values(k, m)];
      } catch (err) {
        v = `throws ${(err as Error).name}`;
      }
      out[`${k}/${m}`] = v;
    }
  return out;
}

describe('NatsHeaders.decode', () => {
  const blocks = [
    'NATS/1.0\r\nNats-Stream: KV_b\r\nNats-Subject: $KV.b.k\r\nNats-Sequence: 42\r\nNats-Time-Stamp: 2026-12-03T10:00:00.123456789Z\r\n\r\n',
    'NATS/1.0 404 Message Not Found\r\n\r\n',
    'NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\nNats-Pending-Bytes: 120\r\n\r\n',
    'NATS/1.0 100 Idle Heartbeat\r\n\r\n',
    'NATS/1.0  503  \r\n\r\n',
    'NATS/1.0 abc\r\n\r\n',
    'NATS/1.0\r\nA: 1\r\nA: 2\r\na: 3\r\nB:   spaced value  \r\nC: has: colons: inside\r\nD:\r\n\r\n',
    'NATS/1.0\r\nSluice-Change: {"t":"put","k":"dé/ü €"}\r\nno-colon-line\r\n\r\n',
    'NATS/1.0\r\nX-Only: 1',
  ];
  it.each(blocks.map((b) => [JSON.stringify(b).slice(0, 50), b]))('%s decodes as nats.js decodes it', (_, block) => {
    const bytes = TE.encode(block);
    const probe = ['Nats-Sequence', 'nats-sequence', 'NATS-SEQUENCE', 'A', 'a', 'B', 'C', 'D', 'Sluice-Change', 'missing', 'X-Only', 'Nats-Pending-Messages'];
    expect(lookups(NatsHeaders.decode(bytes), probe)).toEqual(lookups(MsgHdrsImpl.decode(bytes), probe));
  });
});

describe('NatsHeaders writes', () => {
  const key = fc.oneof(fc.constantFrom('Nats-Msg-Id', 'nats-msg-id', 'Sluice-Key', 'sluice-key', 'X', 'x', 'content-TYPE', 'a-b-c'), fc.string({ minLength: 1, maxLength: 6 }));
  const value = fc.oneof(fc.constantFrom('1', ' padded ', '', '{"a":"é"}', 'a\r\nb', 'x\ny'), fc.string({ maxLength: 8 }));
  const op = fc.record({ kind: fc.constantFrom('set', 'append', 'delete'), key, value, match: fc.constantFrom(...MATCHES) });

  it('gives the same headers, wire bytes and errors as MsgHdrsImpl for any sequence of writes', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
        const ours = new NatsHeaders();
        const theirs = natsHeaders();
        for (const o of ops) {
          const run = (h: MsgHdrs): string => {
            try {
              if (o.kind === 'set') h.set(o.key, o.value, o.match);
              else if (o.kind === 'append') h.append(o.key, o.value, o.match);
              else h.delete(o.key, o.match);
              return 'ok';
            } catch (err) {
              return `${(err as Error).name}: ${(err as Error).message}`;
            }
          };
          expect(run(ours)).toBe(run(theirs));
        }
        const probe = [...new Set(ops.map((o) => o.key))];
        expect(lookups(ours, probe)).toEqual(lookups(theirs, probe));
        expect(ours.toString()).toBe(theirs.toString());
        expect(ours.encode()).toEqual((theirs as MsgHdrsImpl).encode());
        // What it writes, it reads back.
        const bytes = ours.encode();
        if (bytes.length > 0) expect(lookups(NatsHeaders.decode(bytes), probe)).toEqual(lookups(MsgHdrsImpl.decode(bytes), probe));
      }),
      { numRuns: 500 },
    );
  });

  it('a status header block encodes its status line', () => {
    const h = new NatsHeaders(503, 'No Responders');
    expect(h.toString()).toBe(new MsgHdrsImpl(503, 'No Responders').toString());
    expect(h.hasError).toBe(true);
    expect(new NatsHeaders().toString()).toBe('');
  });
});

describe('headersOf on messages from a real nats-server', () => {
  let server: NatsServerHandle;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('reads what nats.js would, from the raw block, for headers, none, and JetStream status replies', async () => {
    const nc = await connect({ servers: server.url });
    try {
      const got: Msg[] = [];
      const sub = nc.subscribe('hdr.>', { callback: (_e, m) => void got.push(m) });
      const h = new NatsHeaders();
      h.set('Sluice-Key', encodeURIComponent('ü/ key'));
      h.append('Multi', 'one');
      h.append('Multi', 'two');
      h.set('Sluice-Change', JSON.stringify({ t: 'put', k: 'dé € 𝄞' }));
      nc.publish('hdr.a', TE.encode('body'), { headers: h });
      nc.publish('hdr.b', TE.encode('no headers'));
      await nc.flush();
      sub.unsubscribe();
      expect(got).toHaveLength(2);
      const [a, b] = got as [Msg, Msg];
      expect(readsRawHeaders(a)).toBe(true);
      const probe = ['Sluice-Key', 'Multi', 'Sluice-Change', 'multi'];
      expect(lookups(headersOf(a) as MsgHdrs, probe)).toEqual(lookups(a.headers as MsgHdrs, probe));
      expect(headersOf(a)?.get('Sluice-Change')).toBe(JSON.stringify({ t: 'put', k: 'dé € 𝄞' }));
      expect(new TextDecoder().decode(a.data)).toBe('body');
      expect(headersOf(b)).toBeUndefined();

      // A direct get of a stream without the subject answers with a status-only reply.
      const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(nc);
      await jsm.streams.add({ name: 'HDR', subjects: ['hs.>'], allow_direct: true });
      const missing = await nc.request('$JS.API.DIRECT.GET.HDR.hs.none', new Uint8Array(0), { timeout: 5000 });
      expect(headersOf(missing)?.code).toBe(404);
      expect(lookups(headersOf(missing) as MsgHdrs, [])).toEqual(lookups(missing.headers as MsgHdrs, []));
      await (await import('@nats-io/jetstream')).jetstream(nc).publish('hs.one', TE.encode('v'));
      const found = await nc.request('$JS.API.DIRECT.GET.HDR.hs.one', new Uint8Array(0), { timeout: 5000 });
      const fp = ['Nats-Stream', 'Nats-Subject', 'Nats-Sequence', 'Nats-Time-Stamp'];
      expect(lookups(headersOf(found) as MsgHdrs, fp)).toEqual(lookups(found.headers as MsgHdrs, fp));
      expect(headersOf(found)?.get('Nats-Sequence')).toBe('1');
    } finally {
      await nc.close();
    }
  });
});
