/**
 * geo-index: indexes located photos by place. Triggered by image-meta's attribute changes on bucket
 * `photos` (`where attribute_exists(latitude)`), it writes one item per photo — key = the photo's key,
 * `{key, latitude, longitude, taken_at}` — into the KV table behind binding `places`
 * (`photos-by-place`).
 *
 * The write is an effect (`record.effects.kv('places').update(...)`), not a `ctx.data.places` call:
 * the runtime commits it with the record, exactly once per triggering record — a worker crash and the
 * redelivery that follows never write it twice (a `SET` would be harmless twice, but the same holds
 * for `ADD`s, and the write stays tied to the record's success: a failed record writes nothing).
 */
import type { Value } from '../../bindings/types.ts';
import { defineFunction, type EventRecord } from '../types.ts';

/** The index entry of a photo, or undefined when it has no usable location. */
export function placeOf(r: Pick<EventRecord, 'key' | 'attrs'>): Record<string, Value> | undefined {
  const { latitude, longitude, taken_at } = r.attrs;
  if (typeof latitude !== 'number' || typeof longitude !== 'number') return undefined;
  const out: Record<string, Value> = { key: r.key, latitude, longitude };
  if (typeof taken_at === 'string') out.taken_at = taken_at;
  return out;
}

export default defineFunction({
  handler(records, ctx) {
    for (const r of records) {
      const place = placeOf(r);
      if (place === undefined) continue;
      // One SET per field, placeholders for names and values: keys and attribute values are data.
      const names: Record<string, string> = {};
      const values: Record<string, Value> = {};
      const sets = Object.entries(place).map(([k, v], i) => {
        names[`#f${i}`] = k;
        values[`:v${i}`] = v;
        return `#f${i} = :v${i}`;
      });
      r.effects.kv('places').update(r.key, { expr: `SET ${sets.join(', ')}`, names, values });
      ctx.count('indexed');
    }
  },
});
