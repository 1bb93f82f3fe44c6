/**
 * A writer process for the index crash test: forever, 16 in flight, on 150 keys of a bucket with
 * indexes — put (new indexed attributes), updateAttrs of indexed attributes, delete. Prints `ready`, then
 * `ok <op> <key>` after each ack. argv: <spec-json> <bucket> <seed>
 */
import { openChildBackend, type ChildSpec } from '../support/child-backend.ts';

const [specJson, bucket, seedArg] = process.argv.slice(2);
let seed = Number(seedArg ?? 1) >>> 0;
const rnd = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32;
};
const backend = await openChildBackend(JSON.parse(specJson!) as ChildSpec);
const o = await backend.objects(bucket!);
const out = (s: string) => process.stdout.write(`${s}\n`);
const levels = ['low', 'mid', 'high', 'top'];

out('ready');
const lane = async () => {
  for (;;) {
    const key = `obj-${Math.floor(rnd() * 150)}`;
    const r = rnd();
    try {
      if (r < 0.45) {
        await o.put(key, Buffer.alloc(Math.floor(rnd() * 512), 1), { attrs: { gen: Math.floor(rnd() * 1e6), flag: rnd() < 0.3, lvl: levels[Math.floor(rnd() * 4)]! } });
      } else if (r < 0.6) {
        await o.delete(key);
      } else if (r < 0.8) {
        await o.updateAttrs(key, { expr: 'SET flag = :f, lvl = :l', values: { f: rnd() < 0.5, l: levels[Math.floor(rnd() * 4)]! } });
      } else {
        await o.updateAttrs(key, rnd() < 0.5 ? 'REMOVE flag' : 'SET gen = if_not_exists(gen, 0) + 1');
      }
      out(`ok ${key}`);
    } catch (e) {
      if ((e as { code?: string }).code !== 'SLUICE_NOT_FOUND') {
        out(`err ${(e as Error).message}`);
        throw e;
      }
    }
  }
};
await Promise.all(Array.from({ length: 16 }, lane));
