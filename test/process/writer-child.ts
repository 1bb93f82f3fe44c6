/**
 * A writer process for the crash and concurrency tests.
 * argv: <spec-json> <bucket> <mode> <seed>
 *   mode 'churn': forever, 16 in flight: put (1 in 10 bodies 100 KiB, past NATS's inline limit),
 *                 delete, updateAttrs on 200 keys; prints `ok <op> <key> <version|rev>` after each ack.
 *   mode 'count': 200 updateAttrs increments of attribute c on key 'ctr', 8 in flight; prints `done`.
 */
import { openChildBackend, type ChildSpec } from '../support/child-backend.ts';

const [specJson, bucket, mode, seedArg] = process.argv.slice(2);
const spec = JSON.parse(specJson!) as ChildSpec;
let seed = Number(seedArg ?? 1) >>> 0;
const rnd = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32;
};

const backend = await openChildBackend(spec);
const o = await backend.objects(bucket!);
const out = (s: string) => process.stdout.write(`${s}\n`);

if (mode === 'count') {
  let next = 0;
  const lane = async () => {
    while (next < 200) {
      next++;
      await o.updateAttrs('ctr', 'SET c = if_not_exists(c, 0) + 1');
    }
  };
  await Promise.all(Array.from({ length: 8 }, lane));
  out('done');
  await backend.close();
  process.exit(0);
}

out('ready');
const lane = async () => {
  for (;;) {
    const key = `obj-${Math.floor(rnd() * 200)}`;
    const r = rnd();
    try {
      if (r < 0.6) {
        const size = rnd() < 0.1 ? 100 * 1024 : Math.floor(rnd() * 2048);
        const res = await o.put(key, Buffer.alloc(size, Math.floor(rnd() * 255)), { attrs: { gen: Math.floor(rnd() * 1e9) } });
        out(`ok put ${key} ${res.version}`);
      } else if (r < 0.8) {
        const existed = await o.delete(key);
        out(`ok delete ${key} ${existed}`);
      } else {
        const res = await o.updateAttrs(key, 'SET n = if_not_exists(n, 0) + 1');
        out(`ok attrs ${key} ${res.attrsRevision}`);
      }
    } catch (e) {
      if ((e as { code?: string }).code !== 'SLUICE_NOT_FOUND') {
        out(`err ${(e as Error).message}`);
        throw e;
      }
    }
  }
};
await Promise.all(Array.from({ length: 16 }, lane));
