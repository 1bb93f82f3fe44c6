/** Reading streams back in tests. */
import type { StreamBinding } from '../../bindings/types.ts';

/** Every record of a stream's shards, as data strings. */
export async function readAll(streams: StreamBinding, name: string): Promise<string[]> {
  const info = await streams.info(name);
  const out: string[] = [];
  for (let shard = 0; shard < info.shards; shard++) {
    let cursor = await streams.seek(name, shard, 'earliest');
    for (;;) {
      const page = await streams.getRecords(cursor, { limit: 1000 });
      for (const r of page.records) out.push(Buffer.from(r.data).toString('utf8'));
      if (page.records.length === 0) break;
      cursor = page.next;
    }
  }
  return out;
}
