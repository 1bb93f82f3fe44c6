// The baseline of test/bench/handoff.ts (b): a piscina worker receiving the batch as plain JS objects
// (structured clone through postMessage) and returning BatchEffects the same way. Same work per record
// as handoff-function.ts. `{ noop: true }` tasks measure piscina's per-task cost alone.
export let sink = 0;

export default function run(task) {
  if (task.noop === true) return 0;
  let acc = 0;
  for (const r of task.records) {
    const a = r.attrs;
    acc += r.key.length + r.size + new Date(r.mtimeMs).getTime() + a.width + a.height + a.camera.length + (a.flagged ? 1 : 0) + a.label.length;
  }
  sink = acc;
  return { records: task.records.map(() => ({ set: {}, remove: [], updates: [] })), counters: {} };
}
