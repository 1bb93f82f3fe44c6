/**
 * image-meta end to end on both backends: a real worker (handler threads over shared memory, the
 * committer, the dead-letter stream) handles uploaded images; every attribute lands on the object in
 * one commit, a corrupt image is dead-lettered with nothing set, and bodies reach sharp by path
 * whether they were prefetched with the batch or not.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import sharp from 'sharp';
import { expect, it } from 'vitest';
import type { ObjectBinding } from '../../bindings/types.ts';
import { Worker } from '../../runtime/worker.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { forEachBackend, tn, type BackendContext } from '../../test/conformance/backends.ts';
import { exifOf, picture } from './fixtures/make-fixtures.ts';

const module = fileURLToPath(new URL('./index.ts', import.meta.url));
const fixture = (f: string) => fileURLToPath(new URL(`./fixtures/${f}`, import.meta.url));
const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });

async function until(what: string, pred: () => Promise<boolean>, ms = 45_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function options(ctx: BackendContext, fn: string, bucket: string, extra: Partial<WorkerOptions> = {}): WorkerOptions {
  return {
    function: fn,
    module,
    trigger: { type: 'object', bucket, events: ['put'], inlineBodyMaxBytes: 4096 },
    backend: ctx.childSpec(),
    threads: 1,
    batch: { maxRecords: 8, maxWait: '20ms' },
    retries: { maxAttempts: 3, initialBackoff: '20ms', maxBackoff: '100ms' },
    timeout: '60s',
    leaseTtl: '2s',
    ...extra,
  };
}

async function deadLetters(ctx: BackendContext, fn: string): Promise<{ key: string; error: { message: string } }[]> {
  const s = ctx.backend.streams();
  const page = await s.getRecords(await s.seek(`dlq-${fn}`, 0, 'earliest'), { limit: 100 });
  return page.records.map((r) => JSON.parse(Buffer.from(r.data).toString()));
}

forEachBackend('image-meta', (ctx) => {
  const t = (what: string) => tn('image-meta', ctx, what);

  it(t('a worker sets every attribute of uploaded images, by path, and dead-letters a corrupt one'), async () => {
    const bucket = ctx.uid('photos');
    const fn = ctx.uid('im');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    const o: ObjectBinding = await ctx.backend.objects(bucket);
    // One image too big to come with the batch (read by path from the bucket), small ones inline.
    const big = await picture(1600, 1200)
      .jpeg({ quality: 95 })
      .withExif(exifOf({ make: 'Canon', model: 'Canon EOS R5', taken: '2024:05:06 07:08:09', offset: '+02:00', lat: 40.6892494, lon: -74.0445004 }))
      .toBuffer();
    expect(big.byteLength).toBeGreaterThan(4096);
    await o.put('trip/liberty.jpg', big, { contentType: 'image/jpeg' });
    await o.put('fx/iphone.jpg', await readFile(fixture('iphone-rot90-gps-sw.jpg')));
    await o.put('fx/sony.png', await readFile(fixture('sony-gps.png')));
    await o.put('broken.jpg', 'not a jpeg at all');
    await o.put('notes.txt', 'not an image key');
    const w = await Worker.start(options(ctx, fn, bucket), { log: quiet });
    try {
      await until('images described', async () => {
        const heads = await Promise.all(['trip/liberty.jpg', 'fx/iphone.jpg', 'fx/sony.png'].map((k) => o.head(k)));
        return heads.every((h) => h?.attrs.thumbnail !== undefined);
      });
      const a = (await o.getAttrs('trip/liberty.jpg')).attrs;
      expect(Object.keys(a).sort()).toEqual(['camera', 'height', 'latitude', 'longitude', 'taken_at', 'thumbnail', 'width']);
      expect(a).toMatchObject({ camera: 'Canon EOS R5', taken_at: '2024-05-06T07:08:09+02:00', width: 1600, height: 1200 });
      expect(a.latitude as number).toBeCloseTo(40.6892494, 5);
      expect(a.longitude as number).toBeCloseTo(-74.0445004, 5);
      const thumb = a.thumbnail as Uint8Array;
      expect(thumb).toBeInstanceOf(Uint8Array);
      const m = await sharp(thumb).metadata();
      expect([m.format, m.width, m.height]).toEqual(['jpeg', 100, 75]);
      expect((await o.getAttrs('fx/iphone.jpg')).attrs).toMatchObject({ camera: 'Apple iPhone 13', width: 120, height: 240 });
      expect((await o.getAttrs('fx/sony.png')).attrs).toMatchObject({ camera: 'SONY ILCE-7M3', width: 180, height: 120 });
      let letters: Awaited<ReturnType<typeof deadLetters>> = [];
      await until('dead letter', async () => (letters = await deadLetters(ctx, fn)).length > 0);
      expect(letters.map((l) => l.key)).toEqual(['broken.jpg']);
      expect(letters[0]!.error.message).toContain("'broken.jpg' is not a readable image");
      expect((await o.getAttrs('broken.jpg')).attrs).toEqual({});
      expect((await o.getAttrs('notes.txt')).attrs).toEqual({});
      // A new version is described again (its own file; the old one is not reused).
      await o.put('fx/sony.png', await readFile(fixture('fuji-gps.webp')));
      await until('new version described', async () => (await o.head('fx/sony.png'))?.attrs.camera === 'FUJIFILM X-T4');
      expect((await o.getAttrs('fx/sony.png')).attrs).toMatchObject({ width: 160, height: 160 });
    } finally {
      expect(await w.stop()).toBe(true);
    }
  });
});
