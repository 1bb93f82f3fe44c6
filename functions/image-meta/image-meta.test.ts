/**
 * image-meta through the public harness (functions/testing.ts): images the test generates with sharp
 * (EXIF, GPS and orientation written by sharp itself), the committed fixtures, and bodies that are not
 * images. Thumbnails are checked by their pixels, so a missing orientation step fails the test.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { Limits } from '../../bindings/values.ts';
import { applyEffects, invokeHandler, type SyntheticRecord } from '../testing.ts';
import { cameraOf, gpsOf, takenAt } from './extract.ts';
import { exifOf, FIXTURES, picture, render } from './fixtures/make-fixtures.ts';
import fn from './index.ts';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

async function run(records: SyntheticRecord[]) {
  const r = await invokeHandler(fn, records, { timeoutMs: 60_000 });
  expect(r.error).toBeUndefined();
  return r;
}

/** The colour name of a thumbnail pixel at (fx, fy), fractions of its width and height. */
async function colourAt(jpeg: Uint8Array, fx: number, fy: number): Promise<'red' | 'blue' | 'green' | 'other'> {
  const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  const x = Math.min(info.width - 1, Math.floor(fx * info.width));
  const y = Math.min(info.height - 1, Math.floor(fy * info.height));
  const i = (y * info.width + x) * info.channels;
  const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
  if (r > 150 && g < 90 && b < 90) return 'red';
  if (b > 150 && r < 90 && g < 90) return 'blue';
  if (g > 130 && r < 90 && b < 90) return 'green';
  return 'other';
}

describe('image-meta', () => {
  it('image-meta - a generated JPEG with GPS, time and camera gets every attribute in one setAttrs', async () => {
    const body = await picture(400, 200)
      .jpeg()
      .withExif(exifOf({ make: 'Canon', model: 'EOS 5D Mark IV', taken: '2024:05:06 07:08:09', offset: '+02:00', lat: -33.8567844, lon: 151.2152967 }))
      .toBuffer();
    const r = await run([{ key: 'trip/opera.jpg', body, contentType: 'image/jpeg' }]);
    const set = r.byKey('trip/opera.jpg')!.set;
    expect(Object.keys(set).sort()).toEqual(['camera', 'height', 'latitude', 'longitude', 'taken_at', 'thumbnail', 'width']);
    expect(set.latitude).toBeCloseTo(-33.8567844, 4);
    expect(set.longitude).toBeCloseTo(151.2152967, 4);
    expect(set.taken_at).toBe('2024-05-06T07:08:09+02:00');
    expect(set.camera).toBe('Canon EOS 5D Mark IV');
    expect([set.width, set.height]).toEqual([400, 200]);
    const thumb = set.thumbnail as Uint8Array;
    expect(thumb).toBeInstanceOf(Uint8Array);
    expect(thumb.byteLength).toBeLessThanOrEqual(Limits.maxAttrValueBytes);
    const m = await sharp(thumb).metadata();
    expect([m.format, m.width, m.height]).toEqual(['jpeg', 100, 50]);
    expect(r.counters).toEqual({ images: 1, with_gps: 1 });
    // The effects apply as the committer applies them (bytes stay bytes).
    expect(applyEffects({}, r.records[0]!).thumbnail).toBeInstanceOf(Uint8Array);
  });

  it('image-meta - an image without GPS has no latitude or longitude', async () => {
    const body = await picture(120, 90).jpeg().withExif(exifOf({ make: 'NIKON CORPORATION', model: 'NIKON Z 6', taken: '2019:07:14 12:00:01' })).toBuffer();
    const set = (await run([{ key: 'a.jpeg', body }])).byKey('a.jpeg')!.set;
    expect(set.latitude).toBeUndefined();
    expect(set.longitude).toBeUndefined();
    expect(set.taken_at).toBe('2019-07-14T12:00:01');
    expect(set.camera).toBe('NIKON CORPORATION NIKON Z 6');
  });

  it('image-meta - EXIF orientation is applied to width, height and the thumbnail', async () => {
    // Stored 240×120 (red left, blue right, green top stripe); orientation 6 shows it turned 90° clockwise.
    const body = await picture(240, 120).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const set = (await run([{ key: 'turned.jpg', body }])).byKey('turned.jpg')!.set;
    expect([set.width, set.height]).toEqual([120, 240]);
    const thumb = set.thumbnail as Uint8Array;
    const m = await sharp(thumb).metadata();
    expect([m.width, m.height]).toEqual([50, 100]);
    // Turned clockwise: the left (red) half is on top, the right (blue) half below, the green stripe on the right.
    expect(await colourAt(thumb, 0.3, 0.2)).toBe('red');
    expect(await colourAt(thumb, 0.3, 0.8)).toBe('blue');
    expect(await colourAt(thumb, 0.97, 0.5)).toBe('green');
    // The thumbnail is upright: it carries no orientation a viewer would apply a second time.
    expect(m.orientation ?? 1).toBe(1);
  });

  it('image-meta - a small image is not enlarged', async () => {
    const body = await picture(40, 20).png().toBuffer();
    const set = (await run([{ key: 'tiny.png', body }])).byKey('tiny.png')!.set;
    const m = await sharp(set.thumbnail as Uint8Array).metadata();
    expect([m.width, m.height]).toEqual([40, 20]);
  });

  it('image-meta - the committed fixtures: every format, orientation and camera', async () => {
    const expected: Record<string, object> = {
      'canon-gps-ne.jpg': { latitude: 48.8583701, longitude: 2.2944813, taken_at: '2024-05-06T07:08:09+02:00', camera: 'Canon EOS R5', width: 240, height: 160 },
      'iphone-rot90-gps-sw.jpg': { latitude: -22.951916, longitude: -43.2104872, taken_at: '2023-12-24T18:30:00-03:00', camera: 'Apple iPhone 13', width: 120, height: 240 },
      'nikon-rot180-nogps.jpeg': { taken_at: '2019-07-14T12:00:01', camera: 'NIKON CORPORATION NIKON D750', width: 200, height: 100 },
      'pixel-rot270-gps.JPG': { latitude: 40.6892494, longitude: -74.0445004, taken_at: '2022-01-02T03:04:05', camera: 'Google Pixel 7', width: 120, height: 160 },
      'sony-gps.png': { latitude: 35.6585805, longitude: 139.7454329, taken_at: '2021-03-04T05:06:07', camera: 'SONY ILCE-7M3', width: 180, height: 120 },
      'fuji-gps.webp': { latitude: -33.8567844, longitude: 151.2152967, taken_at: '2020-10-11T12:13:14', camera: 'FUJIFILM X-T4', width: 160, height: 160 },
      'scan-rot90.tiff': { width: 80, height: 120 },
      'plain.png': { width: 300, height: 60 },
    };
    expect(Object.keys(expected).sort()).toEqual(FIXTURES.map((f) => f.file).sort());
    const records = await Promise.all(FIXTURES.map(async (f) => ({ key: `fx/${f.file}`, body: await readFile(join(fixtures, f.file)), inline: false })));
    const r = await run(records);
    for (const f of FIXTURES) {
      const { thumbnail, latitude, longitude, ...rest } = r.byKey(`fx/${f.file}`)!.set as Record<string, unknown>;
      const { latitude: elat, longitude: elon, ...want } = expected[f.file] as Record<string, unknown>;
      expect(rest, f.file).toEqual(want);
      if (elat === undefined) expect(latitude, f.file).toBeUndefined();
      else {
        // Seconds are written as hundredths: about 30 cm.
        expect(latitude as number, f.file).toBeCloseTo(elat as number, 5);
        expect(longitude as number, f.file).toBeCloseTo(elon as number, 5);
      }
      const m = await sharp(thumbnail as Uint8Array).metadata();
      expect(m.format, f.file).toBe('jpeg');
      expect(Math.max(m.width, m.height), f.file).toBe(100);
      // Upright whatever the stored orientation: the green stripe is along the displayed top only for
      // orientation 1; for the turned fixtures the red/blue halves are where the display puts them.
      const o = f.orientation ?? 1;
      const thumb = thumbnail as Uint8Array;
      if (o === 1) expect([await colourAt(thumb, 0.25, 0.6), await colourAt(thumb, 0.75, 0.6)], f.file).toEqual(['red', 'blue']);
      if (o === 3) expect([await colourAt(thumb, 0.25, 0.4), await colourAt(thumb, 0.75, 0.4), await colourAt(thumb, 0.5, 0.97)], f.file).toEqual(['blue', 'red', 'green']);
      if (o === 6) expect([await colourAt(thumb, 0.4, 0.25), await colourAt(thumb, 0.4, 0.75), await colourAt(thumb, 0.97, 0.5)], f.file).toEqual(['red', 'blue', 'green']);
      if (o === 8) expect([await colourAt(thumb, 0.6, 0.25), await colourAt(thumb, 0.6, 0.75), await colourAt(thumb, 0.03, 0.5)], f.file).toEqual(['blue', 'red', 'green']);
    }
    expect(r.counters).toEqual({ images: 8, with_gps: 5 });
  });

  it('image-meta - corrupt and non-image bodies fail their record as non-retryable, with nothing set', async () => {
    const good = await render(FIXTURES[0]!);
    const r = await invokeHandler(fn, [
      { key: 'text.jpg', body: 'this is not an image' },
      { key: 'truncated.jpg', body: good.subarray(0, 300) },
      { key: 'empty.png', body: '' },
      { key: 'good.jpg', body: good },
    ]);
    expect(r.error).toBeUndefined();
    for (const key of ['text.jpg', 'truncated.jpg', 'empty.png']) {
      const fx = r.byKey(key)!;
      expect(fx.set, key).toEqual({});
      expect(fx.failure, key).toMatchObject({ nonRetryable: true, error: { name: 'NonRetryableError' } });
      expect(fx.failure!.error.message, key).toContain(`'${key}' is not a readable image`);
    }
    expect(r.byKey('good.jpg')!.set.camera).toBe('Canon EOS R5');
    expect(r.counters).toEqual({ images: 1, with_gps: 1, failed: 3 });
  });

  it('image-meta - other keys, deletes and attribute changes are skipped without effects', async () => {
    const body = await render(FIXTURES[0]!);
    const r = await run([
      { key: 'notes.txt', body: 'hello' },
      { key: 'photo.jpg.bak', body },
      { key: 'gone.jpg', type: 'delete' },
      { key: 'photo.jpg', type: 'attrs', body },
    ]);
    for (const x of r.records) expect(x).toEqual({ set: {}, remove: [], updates: [] });
    expect(r.counters).toEqual({});
  });

  it('image-meta - GPS rules: sign by reference, void fixes and out-of-range values are absent', () => {
    expect(gpsOf({ GPSLatitudeRef: 'S', GPSLatitude: [33, 52, 30.84], GPSLongitudeRef: 'W', GPSLongitude: [151, 12, 30] })).toEqual({ latitude: -33.8752333, longitude: -151.2083333 });
    expect(gpsOf({ GPSLatitudeRef: 'N', GPSLatitude: [10, 30, 0], GPSLongitudeRef: 'E', GPSLongitude: [20, 15, 0] })).toEqual({ latitude: 10.5, longitude: 20.25 });
    expect(gpsOf({ GPSLatitude: [10, 0, 0], GPSLongitudeRef: 'E', GPSLongitude: [20, 0, 0] })).toBeUndefined();
    expect(gpsOf({ GPSStatus: 'V', GPSLatitudeRef: 'N', GPSLatitude: [10, 0, 0], GPSLongitudeRef: 'E', GPSLongitude: [20, 0, 0] })).toBeUndefined();
    expect(gpsOf({ GPSLatitudeRef: 'N', GPSLatitude: [91, 0, 0], GPSLongitudeRef: 'E', GPSLongitude: [20, 0, 0] })).toBeUndefined();
    expect(gpsOf({ GPSLatitudeRef: 'N', GPSLatitude: [10, 61, 0], GPSLongitudeRef: 'E', GPSLongitude: [20, 0, 0] })).toBeUndefined();
    expect(gpsOf({ GPSLatitudeRef: 'N', GPSLatitude: [10, 2, 60], GPSLongitudeRef: 'E', GPSLongitude: [20, 0, 0] })).toEqual({ latitude: 10.05, longitude: 20 });
    expect(gpsOf(undefined)).toBeUndefined();
  });

  it('image-meta - time and camera rules', () => {
    expect(takenAt(new Date(Date.UTC(2024, 4, 6, 7, 8, 9)), '+02:00')).toBe('2024-05-06T07:08:09+02:00');
    expect(takenAt(new Date(Date.UTC(2024, 4, 6, 7, 8, 9)), 'garbage')).toBe('2024-05-06T07:08:09');
    expect(takenAt('2024:05:06 07:08:09', undefined)).toBe('2024-05-06T07:08:09');
    expect(takenAt('0000:00:00 00:00:00', undefined)).toBeUndefined();
    expect(takenAt(new Date(Date.UTC(1899, 10, 30)), undefined)).toBeUndefined();
    expect(cameraOf('Canon', 'Canon EOS R5')).toBe('Canon EOS R5');
    expect(cameraOf('SONY\u0000\u0000', ' ILCE-7M3 ')).toBe('SONY ILCE-7M3');
    expect(cameraOf(undefined, 'X100V')).toBe('X100V');
    expect(cameraOf('', '')).toBeUndefined();
  });

  it('image-meta - the thumbnail fits one attribute even for a noisy 4000×3000 image', async () => {
    const noise = Buffer.alloc(4000 * 3000 * 3);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
    const body = await sharp(noise, { raw: { width: 4000, height: 3000, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    const set = (await run([{ key: 'noise.jpg', body, inline: false }])).byKey('noise.jpg')!.set;
    expect((set.thumbnail as Uint8Array).byteLength).toBeLessThanOrEqual(Limits.maxAttrValueBytes);
    expect([set.width, set.height]).toEqual([4000, 3000]);
  });
});
