/**
 * What the console reads from the backend directly: buckets and objects (the object browser), dead
 * letters and their redrive, and the query box. Values leave as JSON a page can show: bytes become
 * `{$bytes: size, $image?: mime}` (the page fetches an image's bytes from the attribute endpoint),
 * timestamps `{$time: iso}`.
 */
import { selectRows } from '../../bindings/query/sql.ts';
import { BindingError } from '../../bindings/errors.ts';
import type { Backend, KvBinding, Value } from '../../bindings/types.ts';
import { FUNCTIONS_TABLE } from '../controller.ts';
import { loadFunctionSpec } from '../spec/index.ts';

/** JSON form of a stored value for the page. */
export function toJsonValue(v: Value): unknown {
  if (v instanceof Uint8Array) return { $bytes: v.byteLength, ...(imageType(v) ? { $image: imageType(v) } : {}) };
  if (v instanceof Date) return { $time: v.toISOString() };
  if (Array.isArray(v)) return v.map(toJsonValue);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJsonValue(x)]));
  return v;
}

/** The image type of bytes by their magic number (JPEG, PNG, GIF, WebP), or undefined. */
export function imageType(b: Uint8Array): string | undefined {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
  if (b.length >= 6 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return 'image/gif';
  if (b.length >= 12 && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) return 'image/webp';
  return undefined;
}

/** Every `bucket: <name>` value anywhere in a parsed spec (triggers, bindings): schema-agnostic on purpose. */
function bucketsIn(v: unknown, out: Set<string>): void {
  if (Array.isArray(v)) for (const x of v) bucketsIn(x, out);
  else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      if (k === 'bucket' && typeof x === 'string') out.add(x);
      else bucketsIn(x, out);
    }
}

/**
 * Bucket names for the browser: the backend's own listing when it has one (`listBuckets()`, feature-
 * detected: the Backend contract has none today), else the buckets the deployed specs name, plus
 * `extra`. Only buckets that exist are returned.
 */
export async function listBuckets(backend: Backend, extra: readonly string[]): Promise<string[]> {
  const b = backend as Backend & { listBuckets?: () => Promise<(string | { name: string })[]> };
  const names = new Set<string>(extra);
  if (typeof b.listBuckets === 'function') for (const x of await b.listBuckets()) names.add(typeof x === 'string' ? x : x.name);
  else {
    let table: KvBinding | undefined;
    try {
      table = await backend.kv(FUNCTIONS_TABLE);
    } catch {
      table = undefined;
    }
    let marker: string | undefined;
    if (table)
      do {
        const page = await table.getItems(marker ? { marker } : {});
        for (const e of page.items) {
          try {
            bucketsIn(loadFunctionSpec(String(e.item.yaml)), names);
          } catch {
            // A stored spec this version cannot read names no bucket we can show.
          }
        }
        marker = page.nextMarker;
      } while (marker);
  }
  const out: string[] = [];
  for (const n of [...names].sort()) {
    try {
      await backend.objects(n);
      out.push(n);
    } catch {
      // Named by a spec but not created (yet).
    }
  }
  return out;
}

// Dead letters and their redrive live with the CLI's `sluice dlq` in controller/redrive.ts (one copy).
export { readDeadLetters, redrive, type DeadLetterView } from '../redrive.ts';

/**
 * Runs the query box's `SELECT … FROM <bucket> …` (the one SQL path, `selectRows`, as `sluice query`),
 * at most `limit` rows, values made JSON-safe. Malformed SQL is SLUICE_EXPRESSION_SYNTAX with a position.
 */
export async function runQuery(backend: Backend, sql: string, limit: number): Promise<{ rows: unknown[]; truncated: boolean; plan: string }> {
  if (typeof sql !== 'string' || !/^\s*select\b/i.test(sql)) throw new BindingError('SLUICE_INVALID_ARGUMENT', "query must be a 'SELECT … FROM <bucket> …' statement");
  const r = await selectRows(backend, sql, { maxRows: limit, where: 'console query' });
  return { rows: r.rows.map((row) => toJsonValue(row as unknown as Value)), truncated: r.truncated, plan: r.plan.detail };
}
