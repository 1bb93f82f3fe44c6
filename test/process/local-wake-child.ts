/** Appends one record per line read on stdin to stream argv[3] of the local store in argv[2]; prints `ok <seq>`. */
import { createInterface } from 'node:readline';
import { LocalBackend } from '../../bindings/local/index.ts';

const [dir, stream] = process.argv.slice(2);
const b = await LocalBackend.open({ dir: dir! });
const s = b.streams();
process.stdout.write('ready\n');
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'quit') break;
  const [r] = await s.putRecords(stream!, [{ data: line, partitionKey: 'p' }]);
  process.stdout.write(`ok ${r && r.ok ? r.seq : -1}\n`);
}
await b.close();
