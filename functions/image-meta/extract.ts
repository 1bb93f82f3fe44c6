/**
 * From EXIF (as `exif-reader` parses it) to image-meta's attributes. Pure functions: no I/O, no sharp,
 * so each rule is tested alone.
 */
import exifReader from 'exif-reader';

/** The EXIF fields image-meta reads (a subset of exif-reader's result). */
export interface ExifFields {
  latitude?: number;
  longitude?: number;
  taken_at?: string;
  camera?: string;
}

type Exif = ReturnType<typeof exifReader>;

/**
 * Parses an EXIF block (sharp's `metadata().exif`, which starts with `Exif\0\0`). A block that does
 * not parse yields no fields rather than failing the image: the pixels are still good.
 */
export function parseExif(block: Buffer | undefined): { fields: ExifFields; error?: string } {
  if (block === undefined || block.byteLength === 0) return { fields: {} };
  let exif: Exif;
  try {
    exif = exifReader(block);
  } catch (e) {
    return { fields: {}, error: (e as Error).message };
  }
  return { fields: fieldsOf(exif) };
}

/** The attributes the parsed EXIF supports; absent fields stay absent. */
export function fieldsOf(exif: Exif): ExifFields {
  const out: ExifFields = {};
  const gps = gpsOf(exif.GPSInfo as Record<string, unknown> | undefined);
  if (gps !== undefined) {
    out.latitude = gps.latitude;
    out.longitude = gps.longitude;
  }
  const taken = takenAt(exif.Photo?.DateTimeOriginal as unknown, exif.Photo?.OffsetTimeOriginal as unknown);
  if (taken !== undefined) out.taken_at = taken;
  const camera = cameraOf(exif.Image?.Make as unknown, exif.Image?.Model as unknown);
  if (camera !== undefined) out.camera = camera;
  return out;
}

/**
 * Decimal degrees from EXIF's degrees/minutes/seconds rationals, negative for S and W. Absent when a
 * coordinate or its reference is missing, the receiver marked the fix void (GPSStatus 'V'), or the
 * value is out of range — a wrong location is worse than none.
 */
export function gpsOf(g: Record<string, unknown> | undefined): { latitude: number; longitude: number } | undefined {
  if (g === undefined) return undefined;
  if (clean(g.GPSStatus) === 'V') return undefined;
  const lat = degrees(g.GPSLatitude, clean(g.GPSLatitudeRef), 'N', 'S', 90);
  const lon = degrees(g.GPSLongitude, clean(g.GPSLongitudeRef), 'E', 'W', 180);
  return lat === undefined || lon === undefined ? undefined : { latitude: lat, longitude: lon };
}

function degrees(dms: unknown, ref: string | undefined, pos: string, neg: string, max: number): number | undefined {
  const parts = typeof dms === 'number' ? [dms] : Array.isArray(dms) ? dms : undefined;
  if (parts === undefined || parts.length === 0 || parts.length > 3 || !parts.every((p) => typeof p === 'number' && Number.isFinite(p) && p >= 0)) return undefined;
  const r = ref?.toUpperCase();
  if (r !== pos && r !== neg) return undefined;
  const [d = 0, m = 0, s = 0] = parts as number[];
  // 60 exactly is a rounding artefact some writers produce; more is not a position.
  if (m > 60 || s > 60) return undefined;
  const v = d + m / 60 + s / 3600;
  if (v > max) return undefined;
  // 7 decimals is ~1 cm: more is noise from the rationals, not precision.
  const rounded = Math.round(v * 1e7) / 1e7;
  return r === neg ? -rounded : rounded;
}

/**
 * ISO-8601 local time from DateTimeOriginal (`2024-05-06T07:08:09`), with the offset when the camera
 * wrote OffsetTimeOriginal (`2024-05-06T07:08:09+02:00`). EXIF times carry no zone of their own, so
 * without the offset the string has none either (rather than a guessed 'Z'). exif-reader hands the
 * time over as a Date read as UTC, so its UTC fields are the camera's wall clock.
 */
export function takenAt(t: unknown, offset: unknown): string | undefined {
  let wall: string | undefined;
  if (t instanceof Date && !Number.isNaN(t.getTime())) wall = t.toISOString().slice(0, 19);
  else if (typeof t === 'string') {
    const m = /^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})/.exec(t.trim());
    if (m) wall = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}`;
  }
  // '0000:00:00 00:00:00' is how cameras without a set clock say "unknown" (exif-reader turns it into
  // 1899-11-30; a clock reset to the epoch shows as 1970-01-01T00:00:00).
  if (wall === undefined || wall.startsWith('0000') || wall.startsWith('1899') || wall.startsWith('1970-01-01T00:00:00')) return undefined;
  const off = clean(offset);
  return off !== undefined && /^[+-]\d{2}:\d{2}$/.test(off) ? `${wall}${off}` : wall;
}

/** "Make Model", trimmed; the make once when the model already starts with it ("Canon Canon EOS R5"). */
export function cameraOf(make: unknown, model: unknown): string | undefined {
  const ma = clean(make);
  const mo = clean(model);
  if (ma === undefined) return mo;
  if (mo === undefined) return ma;
  return mo.toLowerCase().startsWith(ma.toLowerCase()) ? mo : `${ma} ${mo}`;
}

/** A trimmed string without NUL padding (EXIF ASCII fields often have it), or undefined when empty. */
function clean(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  // eslint-disable-next-line no-control-regex
  const s = v.replace(/\u0000+/g, '').trim();
  return s === '' ? undefined : s;
}
