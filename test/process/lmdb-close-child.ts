/**
 * Child of lmdb-close.test.ts: on the local store in argv[2], writes object `k` of bucket `d` (made
 * here), prints `wrote`, and closes the store when a line arrives on stdin, printing `closed` after it.
 */
import { createInterface } from 'node:readline';
import { LocalBackend } from '../../bindings/local/index.ts';

const b = await LocalBackend.open({ dir: process.argv[2]! });
await b.createBucket('d', { shards: 1 });
await (await b.objects('d')).put('k', 'v');
process.stdout.write('wrote\n');
const lines = createInterface({ input: process.stdin });
await new Promise<void>((resolve) => lines.once('line', () => resolve()));
lines.close();
await b.close();
process.stdout.write('closed\n');
