/**
 * Waiting in tests: poll for a condition instead of sleeping a fixed time (a loaded 2-core machine
 * makes every fixed sleep too short some day), and read a stream shard to its end.
 */
import type { Cursor, StreamBinding, StreamRecord } from '../../bindings/types.ts';

/**
 * Polls `probe` every `everyMs` until it returns a value other than `undefined` and `false`, and
 * returns that value; past `timeoutMs` it throws naming `what`. A probe that throws fails the wait
 * (wrap it in `.catch(() => undefined)` when a failure only means "not yet").
 */
export async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Every record of a stream shard from `from` (a cursor, or a stream name: its shard `shard` from the
 * earliest record) to its current end, `limit` records a page (bounded: 10,000 pages).
 */
export async function readShard(s: StreamBinding, from: Cursor | string, shard = 0, limit = 1000): Promise<StreamRecord[]> {
  const out: StreamRecord[] = [];
  let cur = typeof from === 'string' ? await s.seek(from, shard, 'earliest') : from;
  for (let i = 0; i < 10_000; i++) {
    const p = await s.getRecords(cur, { limit });
    out.push(...p.records);
    if (p.records.length === 0) return out;
    cur = p.next;
  }
  return out;
}
