/**
 * The "open doors" of issue 10 that are about files and logs, each checked against a real run:
 * - the local data directory is 0700 and the store's files 0600 (the store was world-readable);
 * - a NATS token from a spec secret reaches the worker (it connects to a server that requires it) but
 *   is in no run file, in no log line of the run (a failing record and a dead letter included), and the
 *   run files are 0600 in a 0700 directory and gone after `remove`.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { loadFunctionSpec } from '../../controller/spec/index.ts';
import { openStateTable, readCounters } from '../../runtime/index.ts';
import { startNatsServer } from '../support/nats-server.ts';
import { until } from '../support/poll.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'sluice-doors-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;

it('doors/local - the data directory is 0700 and the store files 0600, also when the directory existed with 0755', async () => {
  const dir = join(work, 'data');
  mkdirSync(dir, { mode: 0o755 });
  const b = await LocalBackend.open({ dir });
  await b.createBucket('x');
  // The write-lock holder records (locks/<pid>.<thread>) while the store is open.
  const records = readdirSync(join(dir, 'locks'));
  expect(records.length).toBeGreaterThan(0);
  for (const f of records) expect(`locks/${f}: ${mode(join(dir, 'locks', f)).toString(8)}`).toBe(`locks/${f}: 600`);
  await b.close();
  expect(mode(dir).toString(8)).toBe('700');
  for (const f of readdirSync(dir)) {
    const want = statSync(join(dir, f)).isDirectory() ? '700' : '600';
    expect(`${f}: ${mode(join(dir, f)).toString(8)}`).toBe(`${f}: ${want}`);
  }
});

it('doors/secrets - a NATS token from a spec secret is in no run file and no log line; run files are 0600 and removed with the function', async () => {
  const token = `tok-${Math.random().toString(36).slice(2)}-SECRET`;
  const nats = await startNatsServer(['--auth', token]);
  const runDir = join(work, 'run');
  const driver = new LocalDriver({ runDir, restartDelayMs: 100, env: { ...process.env, DOORS_NATS_TOKEN: token } });
  const backend = await NatsBackend.open({ servers: nats.url, token });
  try {
    const fn = 'doors';
    await backend.createBucket('doors', { shards: 2 });
    const spec = loadFunctionSpec(`apiVersion: sluice.dev/v1
kind: Function
metadata: {name: ${fn}}
spec:
  handler: ${JSON.stringify(fixture)}
  backend: {kind: nats, url: ${JSON.stringify(nats.url)}, tokenSecret: nats}
  secrets: [{name: nats, fromEnv: DOORS_NATS_TOKEN}]
  triggers: [{object: {bucket: doors}}]
  batch: {maxWait: 5ms}
  retries: {maxAttempts: 2, initialBackoff: 10ms}
  concurrency: {threads: 1}
`);
    await driver.apply(spec, work);
    await driver.scale(fn, 1);
    const o = await backend.objects('doors');
    await Promise.all(Array.from({ length: 20 }, (_, i) => o.put(`k-${i}`, 'x')));
    await o.put('poison-1', 'x'); // fails, is retried, then dead-lettered: error log lines
    const state = await openStateTable(backend);
    await until('the worker handled the uploads', async () => (await readCounters(state, fn, 2)).seen === 20, 60_000);
    await until('the poisoned record was dead-lettered', async () => (await backend.streams().info(`dlq-${fn}`)).shards >= 1 && driver.logs(fn).some((l) => /dead|poison/i.test(JSON.stringify(l))), 60_000);
    // The token works (the worker reached the server) and appears nowhere on disk or in the logs.
    const files = readdirSync(runDir).filter((f) => f.startsWith(`${fn}-`));
    expect(files.sort()).toEqual([`${fn}-0.json`, `${fn}-0.pid`, `${fn}-0.rescale.json`]);
    expect(mode(runDir).toString(8)).toBe('700');
    for (const f of files) {
      expect(`${f}: ${mode(join(runDir, f)).toString(8)}`).toBe(`${f}: 600`);
      expect(readFileSync(join(runDir, f), 'utf8')).not.toContain(token);
    }
    const logs = JSON.stringify(driver.logs(fn));
    expect(logs.length).toBeGreaterThan(100);
    expect(logs).not.toContain(token);
    expect(await driver.remove(fn)).toBe(true);
    expect(readdirSync(runDir).filter((f) => f.startsWith(`${fn}-`))).toEqual([]);
    expect(JSON.stringify(driver.logs(fn))).not.toContain(token);
  } finally {
    await driver.close();
    await backend.close();
    await nats.stop();
  }
}, 180_000);
