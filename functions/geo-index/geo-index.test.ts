/**
 * geo-index: the harness shows its declared effect (one KV update per located photo, none without a
 * location), and the chain upload → image-meta → geo-index runs on real workers (handler threads, the
 * committer) on both backends, so a `latitude BETWEEN` query of `photos-by-place` finds the photos.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { loadFunctionSpecFile } from '../../controller/spec/index.ts';
import { Worker } from '../../runtime/worker.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { forEachBackend, tn } from '../../test/conformance/backends.ts';
import { until as untilValue } from '../../test/support/sluice-process.ts';
import { exifOf, picture } from '../image-meta/fixtures/make-fixtures.ts';
import { invokeHandler } from '../testing.ts';
import geoIndex from './index.ts';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });

/** Polls until `pred` holds (or 60 s pass). */
const until = (what: string, pred: () => Promise<boolean>) => untilValue(what, async () => ((await pred()) ? true : undefined), 60_000, 50);

describe('geo-index/harness', () => {
  it('geo-index/harness - declares one photos-by-place update per located photo, through its declared binding', async () => {
    const spec = await loadFunctionSpecFile(here('./function.yaml'));
    const res = await invokeHandler(
      geoIndex,
      [
        { key: 'nyc.jpg', type: 'attrs', attrs: { latitude: 40.7, longitude: -74, taken_at: '2024-05-06T07:08:09+02:00', camera: 'X' } },
        { key: 'no-gps.jpg', type: 'attrs', attrs: { width: 10 } },
      ],
      { bindings: spec.spec.bindings },
    );
    expect(res.error).toBeUndefined();
    const fx = res.byKey('nyc.jpg')?.extra;
    expect(fx).toHaveLength(1);
    expect(fx![0]).toMatchObject({ kind: 'kv', binding: 'places', key: 'nyc.jpg' });
    expect(res.byKey('no-gps.jpg')?.extra).toBeUndefined();
    expect(res.counters).toEqual({ indexed: 1 });
    // Without the spec's binding, the effect is refused at the call (least privilege).
    const denied = await invokeHandler(geoIndex, [{ key: 'nyc.jpg', type: 'attrs', attrs: { latitude: 40.7, longitude: -74 } }]);
    expect(denied.error?.error.code).toBe('SLUICE_ACCESS_DENIED');
  });
});

forEachBackend('geo-index', (ctx) => {
  const t = (what: string) => tn('geo-index', ctx, what);

  it(t('chain: upload → image-meta → geo-index writes photos-by-place once per photo, found by a latitude query'), async () => {
    const bucket = ctx.uid('photos');
    const table = ctx.uid('places');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    await ctx.backend.createTable(table);
    const o = await ctx.backend.objects(bucket);
    const base = { backend: ctx.childSpec(), threads: 1, batch: { maxRecords: 8, maxWait: '20ms' }, timeout: '60s', leaseTtl: '2s' } satisfies Partial<WorkerOptions>;
    const meta = await Worker.start({ ...base, function: ctx.uid('im'), module: here('../image-meta/index.ts'), trigger: { type: 'object', bucket, events: ['put'] } }, { log: quiet });
    const geo = await Worker.start(
      {
        ...base,
        function: ctx.uid('geo'),
        module: here('./index.ts'),
        trigger: { type: 'object', bucket, events: ['attrs'], where: 'attribute_exists(latitude)' },
        bindings: [{ name: 'places', kind: 'kv', resource: table, access: 'read-write' }],
      },
      { log: quiet },
    );
    try {
      const shot = (lat: number, lon: number) => picture(64, 48).jpeg().withExif(exifOf({ make: 'Canon', model: 'EOS', taken: '2024:05:06 07:08:09', lat, lon })).toBuffer();
      await o.put('nyc/liberty.jpg', await shot(40.6892494, -74.0445004));
      await o.put('nyc/park.jpg', await shot(40.7812, -73.9665));
      await o.put('paris/eiffel.jpg', await shot(48.8584, 2.2945));
      await o.put('fx/no-gps.jpeg', await readFile(here('../image-meta/fixtures/nikon-rot180-nogps.jpeg')));
      const kv = await ctx.backend.kv(table);
      await until('three photos indexed', async () => (await kv.getItems({ limit: 100 })).items.length >= 3);
      await until('no-gps photo described', async () => (await o.head('fx/no-gps.jpeg'))?.attrs.thumbnail !== undefined);
      const near = await kv.getItems({ filter: 'latitude BETWEEN 40 AND 41' });
      expect(near.items.map((i) => i.key).sort()).toEqual(['nyc/liberty.jpg', 'nyc/park.jpg']);
      const liberty = near.items.find((i) => i.key === 'nyc/liberty.jpg')!.item;
      expect(Object.keys(liberty).sort()).toEqual(['key', 'latitude', 'longitude', 'taken_at']);
      expect(liberty).toMatchObject({ key: 'nyc/liberty.jpg', taken_at: '2024-05-06T07:08:09' });
      expect(liberty.latitude as number).toBeCloseTo(40.6892494, 5);
      expect((await kv.getItem('fx/no-gps.jpeg'))).toBeUndefined();
    } finally {
      expect(await geo.stop()).toBe(true);
      expect(await meta.stop()).toBe(true);
    }
  });
});
