/**
 * The function of test/bench/handoff.ts (a): reads key, size, mtime and 5 attributes of every record,
 * declares nothing. Kept identical in work to the baseline's (handoff-baseline-worker.mjs).
 */
import { defineFunction } from '../../functions/types.ts';

export let sink = 0;

export default defineFunction({
  handler(records) {
    let acc = 0;
    for (const r of records) {
      const a = r.attrs;
      acc += r.key.length + r.size + r.mtime.getTime() + (a.width as number) + (a.height as number) + (a.camera as string).length + (a.flagged ? 1 : 0) + (a.label as string).length;
    }
    sink = acc;
  },
});
