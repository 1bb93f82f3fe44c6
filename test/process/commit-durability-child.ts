/**
 * Child of commit-durability.test.ts: on the local store in argv[2], 10 ordinary attribute writes, then 10
 * repairable commitBatch calls, each phase between two marker stats (`/sluice-mark-<phase>-begin|end`)
 * that the test finds in the strace output. Each write is awaited alone, so each is its own commit.
 */
import { statSync } from 'node:fs';
import { LocalBackend } from '../../bindings/local/index.ts';

const mark = (what: string) => {
  try {
    statSync(`/sluice-mark-${what}`);
  } catch {
    // the path does not exist: only the system call matters
  }
};
const b = await LocalBackend.open({ dir: process.argv[2]! });
await b.createBucket('d', { shards: 1 });
const o = await b.objects('d');
await o.put('k', 'v');
mark('synced-begin');
for (let i = 0; i < 10; i++) await o.updateAttrs('k', { expr: 'SET n = :n', values: { ':n': i } });
mark('synced-end');
mark('repairable-begin');
for (let i = 0; i < 10; i++) {
  const [r] = await b.commitBatch([{ type: 'attrs', bucket: 'd', key: 'k', set: { m: i } }], { durability: 'repairable' });
  if (r?.status !== 'ok') throw new Error(`commitBatch ${i}: ${JSON.stringify(r)}`);
}
mark('repairable-end');
await b.close();
