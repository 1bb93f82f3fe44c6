/**
 * image-meta: for every uploaded image (`*.jpg`, `*.jpeg`, `*.png`, `*.webp`, `*.tif`, `*.tiff`) sets
 * `latitude`, `longitude` (decimal degrees, signed by N/S/E/W; absent without GPS), `taken_at`
 * (ISO-8601 from DateTimeOriginal), `camera` ("Make Model"), `width`, `height` (as displayed: EXIF
 * orientation applied) and `thumbnail` (a JPEG of at most 100×100 px, aspect kept, orientation applied,
 * as a bytes attribute) — in ONE `setAttrs`, so they commit together or not at all.
 *
 * sharp opens the body by path (`record.path()`: objects as files, no copy of the body through the
 * handler). A body that is not a decodable image fails its record as non-retryable: it goes to the
 * dead-letter stream with sharp's reason, and nothing is set on it.
 */
import sharp, { type Metadata } from 'sharp';
import { Limits } from '../../bindings/values.ts';
import { defineFunction, NonRetryableError, type EventRecord, type HandlerContext } from '../types.ts';
import { parseExif } from './extract.ts';

/** Keys image-meta handles (case-insensitive). */
export const IMAGE_KEY = /\.(jpe?g|png|webp|tiff?)$/i;

/** Longest side of the thumbnail, in px. */
export const THUMB_PX = 100;

/** JPEG qualities tried in turn until the thumbnail fits one attribute. */
const QUALITIES = [80, 60, 40] as const;

/**
 * Images described at once per batch. sharp works on libuv's pool (4 threads by default), so twice that
 * keeps the pool busy while the last images of a batch finish (with 4, the batch's tail left lanes
 * idle until the next batch started).
 */
export const PARALLEL = 8;

/** The attributes of one image. */
export interface ImageAttrs {
  [name: string]: string | number | Uint8Array;
  width: number;
  height: number;
  thumbnail: Uint8Array;
}

/** A body sharp cannot read as an image: retrying cannot help. */
export class NotAnImageError extends NonRetryableError {
  constructor(key: string, cause: unknown) {
    super(`'${key}' is not a readable image: ${(cause as Error)?.message?.split('\n')[0] ?? String(cause)}`, { cause });
    this.name = 'NonRetryableError';
  }
}

/** Describes the image in the file at `path` (pixels and EXIF); throws NotAnImageError for non-images. */
export async function describeImage(key: string, path: string): Promise<{ attrs: ImageAttrs; exifError?: string }> {
  let meta: Metadata;
  let thumb: Buffer | undefined;
  try {
    const img = sharp(path, { failOn: 'error' });
    meta = await img.metadata();
    for (const quality of QUALITIES) {
      thumb = await img
        .clone()
        .autoOrient()
        .resize(THUMB_PX, THUMB_PX, { fit: 'inside', withoutEnlargement: true })
        .jpeg({ quality, mozjpeg: true })
        .toBuffer();
      if (thumb.byteLength <= Limits.maxAttrValueBytes) break;
    }
  } catch (e) {
    throw new NotAnImageError(key, e);
  }
  if (thumb === undefined || thumb.byteLength > Limits.maxAttrValueBytes)
    throw new NonRetryableError(`'${key}': the ${THUMB_PX}px thumbnail is ${thumb?.byteLength} bytes even at JPEG quality ${QUALITIES.at(-1)}; an attribute holds at most ${Limits.maxAttrValueBytes}`);
  const { fields, error } = parseExif(meta.exif);
  // A Uint8Array, not the Buffer: attribute values are plain bytes on every backend.
  const attrs: ImageAttrs = { ...fields, width: meta.autoOrient.width, height: meta.autoOrient.height, thumbnail: new Uint8Array(thumb.buffer, thumb.byteOffset, thumb.byteLength) };
  return error === undefined ? { attrs } : { attrs, exifError: error };
}

async function handler(records: EventRecord[], ctx: HandlerContext): Promise<void> {
  const todo = records.filter((r) => r.type === 'put' && IMAGE_KEY.test(r.key));
  let described = 0;
  let withGps = 0;
  let failed = 0;
  let next = 0;
  const work = async (): Promise<void> => {
    while (next < todo.length) {
      const r = todo[next++] as EventRecord;
      let path: string;
      try {
        path = await r.path();
      } catch (e) {
        // The object is gone (a later delete describes that) or unreachable (retry this record alone).
        if ((e as { code?: unknown }).code !== 'SLUICE_NOT_FOUND') r.fail(e instanceof Error ? e : String(e));
        continue;
      }
      try {
        const { attrs, exifError } = await describeImage(r.key, path);
        if (exifError !== undefined) ctx.log.warn({ key: r.key, err: exifError }, 'unreadable EXIF; pixels described without it');
        r.setAttrs(attrs);
        described++;
        if (attrs.latitude !== undefined) withGps++;
      } catch (e) {
        failed++;
        r.fail(e instanceof Error ? e : String(e), { nonRetryable: e instanceof NonRetryableError });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, todo.length) }, work));
  if (described > 0) ctx.count('images', described);
  if (withGps > 0) ctx.count('with_gps', withGps);
  if (failed > 0) ctx.count('failed', failed);
}

export default defineFunction({ handler });
