/**
 * `npm start`: a tour of sluice's data bindings on the embedded default backend (./.sluice-data).
 * Uploads sample files, marks them with attribute updates, queries a KV table with a filter and reads
 * the bucket's change stream — every step through the same contracts a handler uses.
 * Options: SLUICE_DATA (data directory, default ./.sluice-data).
 */
import { LocalBackend } from '../bindings/local/index.ts';
import { decodeChange } from '../bindings/shared.ts';

const dir = process.env.SLUICE_DATA ?? './.sluice-data';
const log = (s: string) => process.stdout.write(`${s}\n`);

const backend = await LocalBackend.open({ dir });
const bucket = 'uploads';
await backend.createBucket(bucket, { shards: 4 });
const objects = await backend.objects(bucket);

const samples: Record<string, string> = {
  'inbox/invoice-0042.txt': 'Customer card 4111 1111 1111 1111, exp 12/29',
  'inbox/hr/onboarding.txt': 'Employee SSN: 123-45-6789',
  'inbox/notes.md': '# Meeting notes\nNothing sensitive here.',
};
log(`sluice demo — embedded backend in ${dir}`);
for (const [key, text] of Object.entries(samples)) {
  const r = await objects.put(key, text, { contentType: 'text/plain', attrs: { source: 'demo' } });
  log(`  put ${key} (${text.length} bytes) etag=${r.etag.slice(0, 8)} version=${r.version}`);
}

// What a scanning function would do: mark objects, count findings, exactly once per version.
for (const key of Object.keys(samples)) {
  const body = Buffer.from((await objects.get(key)).body).toString('utf8');
  const hasSsn = /\b\d{3}-\d{2}-\d{4}\b/.test(body);
  const hasCard = /\b(?:\d[ -]?){13,19}\b/.test(body);
  await objects.updateAttrs(key, { expr: 'SET has_ssn = :s, has_ccard = :c, scans = if_not_exists(scans, 0) + 1', values: { ':s': hasSsn, ':c': hasCard } });
}
const listing = await objects.list({ prefix: 'inbox/', delimiter: '/' });
log(`\nlist inbox/ → objects: ${listing.objects.map((o) => o.key).join(', ')}; folders: ${listing.commonPrefixes.join(', ')}`);
for (const key of Object.keys(samples)) {
  const { attrs } = await objects.getAttrs(key);
  log(`  ${key}: has_ssn=${attrs.has_ssn} has_ccard=${attrs.has_ccard} scans=${attrs.scans}`);
}

await backend.createTable('findings');
const kv = await backend.kv('findings');
for (const key of Object.keys(samples)) {
  const { attrs } = await objects.getAttrs(key);
  await kv.updateItem(key, { expr: 'SET ssn = :s, ccard = :c, seen = if_not_exists(seen, 0) + 1', values: { ':s': attrs.has_ssn ?? false, ':c': attrs.has_ccard ?? false } });
}
const flagged = await kv.getItems({ filter: 'ssn = true OR ccard = true' });
log(`\nKV query "ssn = true OR ccard = true" → ${flagged.items.map((e) => e.key).join(', ')}`);

const streams = backend.streams();
const info = await objects.info();
let total = 0;
const byType: Record<string, number> = {};
for (let shard = 0; shard < info.shards; shard++) {
  let cur = await streams.seek(info.changeStream, shard, 'earliest');
  for (;;) {
    const page = await streams.getRecords(cur, { limit: 1000 });
    for (const r of page.records) {
      const c = decodeChange(r.data);
      byType[c.type] = (byType[c.type] ?? 0) + 1;
      total++;
    }
    if (page.records.length === 0) break;
    cur = page.next;
  }
}
log(`\nchange stream ${info.changeStream}: ${total} records ${JSON.stringify(byType)} (every run appends more)`);
await backend.close();
