/** `sluice objects put|get|ls|attrs` (also `sluice put|get|attrs`): objects in a bucket. */
import { createWriteStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { collectsBodies } from '../../../bindings/body-store.ts';
import { isErrorCode, serializeError, SluiceError } from '../../../bindings/errors.ts';
import type { ObjectBinding } from '../../../bindings/types.ts';
import { deleteBucketChecked } from '../../bucket-users.ts';
import { durationMs, durationSchema } from '../../spec/schema.ts';
import { collect, intArg, out, parseValue, withBackend, type GlobalOptions } from '../context.ts';

const TYPES: Record<string, string> = { '.txt': 'text/plain', '.md': 'text/markdown', '.json': 'application/json', '.csv': 'text/csv', '.html': 'text/html', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png', '.pdf': 'application/pdf' };

function contentTypeOf(file: string): string {
  const i = file.lastIndexOf('.');
  return (i >= 0 && TYPES[file.slice(i).toLowerCase()]) || 'application/octet-stream';
}

async function filesUnder(path: string): Promise<string[]> {
  const st = await stat(path);
  if (st.isFile()) return [path];
  const out: string[] = [];
  for (const e of await readdir(path, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
  return out.sort();
}

/** What became of one file of an upload: its object, or the error that refused it. */
export interface PutOutcome {
  key: string;
  file: string;
  size: number;
  etag?: string;
  version?: number;
  error?: { code: string; message: string };
}

/**
 * Uploads files and folders; a folder's files keep their relative paths under the prefix. A file the
 * bucket refuses (too large, a bad key) does not stop the others: every file gets its outcome.
 */
export async function putPaths(o: ObjectBinding, paths: string[], prefix: string, attrs: Record<string, unknown>, progress: boolean): Promise<PutOutcome[]> {
  const jobs: { file: string; key: string }[] = [];
  for (const p of paths) {
    const st = await stat(p);
    for (const f of await filesUnder(p)) jobs.push({ file: f, key: prefix + (st.isFile() ? basename(f) : relative(p, f).split(sep).join('/')) });
  }
  const bar = progress && jobs.length > 1 ? new cliProgress.SingleBar({ format: 'uploading [{bar}] {value}/{total} objects  {bytes} bytes', stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(jobs.length, 0, { bytes: 0 });
  const results: PutOutcome[] = [];
  let bytes = 0;
  let next = 0;
  // Eight uploads in flight: enough to hide latency on NATS, bounded in memory.
  await Promise.all(
    Array.from({ length: Math.min(8, jobs.length) }, async () => {
      while (next < jobs.length) {
        const j = jobs[next++]!;
        const body = await readFile(j.file);
        try {
          const r = await o.put(j.key, body, { contentType: contentTypeOf(j.file), attrs: attrs as Record<string, never> });
          results.push({ key: j.key, file: j.file, etag: r.etag, version: r.version, size: body.byteLength });
          bytes += body.byteLength;
        } catch (e) {
          const err = serializeError(e);
          // Only the bucket's refusals are per file; an unreachable backend stops the upload.
          if (!(e instanceof SluiceError) || err.code === 'SLUICE_BACKEND_UNAVAILABLE' || err.code === 'SLUICE_INTERNAL') throw e;
          results.push({ key: j.key, file: j.file, size: body.byteLength, error: { code: err.code, message: err.message } });
        }
        bar?.increment(1, { bytes });
      }
    }),
  );
  bar?.stop();
  return results.sort((a, b) => (a.key < b.key ? -1 : 1));
}

export function register(program: Command, g: () => GlobalOptions): void {
  const objects = program.command('objects').description('objects in a bucket: put, get, ls, attrs');
  for (const parent of [objects, program]) {
    parent
      .command('put')
      .description('upload files and folders (with a progress bar) to a bucket')
      .argument('<bucket>')
      .argument('<paths...>', 'files or folders')
      .option('--prefix <prefix>', 'key prefix', '')
      .option('--attr <name=value>', 'attribute to set (repeatable)', collect, [])
      .action(async (bucket: string, paths: string[], opts: { prefix: string; attr: string[] }) => {
        const attrs = Object.fromEntries(opts.attr.map((a) => [a.slice(0, a.indexOf('=')), parseValue(a.slice(a.indexOf('=') + 1))]));
        const res = await withBackend(g(), async (b) => putPaths(await b.objects(bucket), paths, opts.prefix, attrs, !g().json && process.stderr.isTTY === true));
        out(g(), res, () => res.map((r) => (r.error ? `failed ${bucket}/${r.key} ${r.size} bytes: ${r.error.message} (${r.error.code})` : `put ${bucket}/${r.key} ${r.size} bytes etag=${r.etag} version=${r.version}`)).join('\n'));
        const failed = res.filter((r) => r.error);
        if (failed.length > 0) {
          const first = failed[0]!.error!;
          throw new SluiceError(isErrorCode(first.code) ? first.code : 'SLUICE_INTERNAL', `${failed.length} of ${res.length} files were not uploaded: ${failed.map((f) => f.key).join(', ')}`);
        }
      });
    parent
      .command('get')
      .description('download an object (to a file, or stdout)')
      .argument('<bucket>')
      .argument('<key>')
      .option('-o, --output <file>', 'write the body to this file')
      .action(async (bucket: string, key: string, opts: { output?: string }) => {
        await withBackend(g(), async (b) => {
          const { head, body } = await (await b.objects(bucket)).getStream(key);
          if (opts.output) {
            await pipeline(Readable.from(body), createWriteStream(opts.output));
            out(g(), { ...head, file: opts.output }, () => `wrote ${head.size} bytes to ${opts.output}`);
          } else if (g().json) {
            const chunks: Uint8Array[] = [];
            for await (const c of body) chunks.push(c);
            out(g(), { ...head, body: Buffer.concat(chunks) }, () => '');
          }
          else for await (const c of body) process.stdout.write(c);
        });
      });
    parent
      .command('attrs')
      .description("show an object's attributes, or update them with --set / --update")
      .argument('<bucket>')
      .argument('<key>')
      .option('--set <name=value>', 'set an attribute (repeatable)', collect, [])
      .option('--update <expr>', "update expression, e.g. 'ADD hits :one' (values via --value)")
      .option('--value <:name=value>', 'placeholder value (repeatable)', collect, [])
      .option('--condition <expr>', 'only if this condition holds')
      .action(async (bucket: string, key: string, opts: { set: string[]; update?: string; value: string[]; condition?: string }) => {
        await withBackend(g(), async (b) => {
          const o = await b.objects(bucket);
          const values = Object.fromEntries(opts.value.map((v) => [v.slice(0, v.indexOf('=')), parseValue(v.slice(v.indexOf('=') + 1))]));
          const exprs: { expr: string; values: Record<string, never>; names: Record<string, string> }[] = [];
          if (opts.set.length > 0) {
            const names: Record<string, string> = {};
            const vals: Record<string, unknown> = {};
            const parts = opts.set.map((s, i) => {
              names[`#a${i}`] = s.slice(0, s.indexOf('='));
              vals[`:a${i}`] = parseValue(s.slice(s.indexOf('=') + 1));
              return `#a${i} = :a${i}`;
            });
            exprs.push({ expr: `SET ${parts.join(', ')}`, names, values: vals as Record<string, never> });
          }
          if (opts.update) exprs.push({ expr: opts.update, names: {}, values: values as Record<string, never> });
          const r = exprs.length > 0 ? await o.updateAttrs(key, exprs, opts.condition ? { condition: { expr: opts.condition, values: values as Record<string, never> } } : {}) : await o.getAttrs(key);
          out(g(), r, () => Object.entries(r.attrs).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join('\n') || '(no attributes)');
        });
      });
  }
  objects
    .command('mb')
    .description('make a bucket (idempotent for the same shard count)')
    .argument('<bucket>')
    .option('--shards <n>', 'shards of its change stream (fixed at creation)', intArg(1), 8)
    .option('--index <field>', 'a field `sluice query` finds without scanning, e.g. mtime or has_ssn (repeatable; fixed at creation)', collect, [])
    .option('--replicas <n>', 'copies kept, 1-5 (NATS: JetStream replicas, fixed at creation; default 3 on a cluster, else 1; local: ignored)', intArg(0))
    .action(async (bucket: string, opts: { shards: number; index: string[]; replicas?: number }) => {
      const shards = opts.shards;
      const info = await withBackend(g(), (b) =>
        b.createBucket(bucket, { shards, ...(opts.index.length > 0 ? { indexes: opts.index } : {}), ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}) }),
      );
      out(g(), info, () => `bucket ${info.name}: ${info.shards} shards, change stream ${info.changeStream}${info.indexes.length > 0 ? `, indexes ${info.indexes.join(', ')}` : ''}`);
    });
  objects
    .command('rb')
    .description('remove an empty bucket and its change stream (refused while it holds objects or a deployed function uses it)')
    .argument('<bucket>')
    .action(async (bucket: string) => {
      await withBackend(g(), (b) => deleteBucketChecked(b, bucket));
      out(g(), { bucket, deleted: true }, () => `removed bucket ${bucket}`);
    });
  objects
    .command('gc')
    .description('remove bodies in the S3 body store ($SLUICE_BODIES) that no object references')
    .option('--grace <duration>', "only bodies older than this, e.g. '30m'", '1h')
    .option('--max <n>', 'most bodies examined in this run', intArg(1), 100_000)
    .action(async (opts: { grace: string; max: number }) => {
      const grace = durationSchema.safeParse(/^\d+$/.test(opts.grace) ? Number(opts.grace) : opts.grace);
      if (!grace.success) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `--grace must be a duration like '30m' or '1h', got '${opts.grace}'`);
      const graceMs = Math.max(1, durationMs(grace.data));
      await withBackend(g(), async (b) => {
        const r = collectsBodies(b) ? await b.collectBodies({ graceMs, maxBodies: opts.max }) : { scanned: 0, deleted: 0, young: 0, more: false };
        out(g(), r, () => `examined ${r.scanned} bodies: removed ${r.deleted} unreferenced, kept ${r.young} unreferenced younger than ${opts.grace}${r.more ? '; more left, run again' : ''}`);
      });
    });
  objects
    .command('rm')
    .description('delete objects (their change records feed the functions as deletes)')
    .argument('<bucket>')
    .argument('<keys...>')
    .action(async (bucket: string, keys: string[]) => {
      const res = await withBackend(g(), async (b) => {
        const o = await b.objects(bucket);
        const r: { key: string; deleted: boolean }[] = [];
        for (const key of keys) r.push({ key, deleted: await o.delete(key) });
        return r;
      });
      out(g(), res, () => res.map((r) => (r.deleted ? `deleted ${bucket}/${r.key}` : `${bucket}/${r.key} did not exist`)).join('\n'));
      const missing = res.filter((r) => !r.deleted).map((r) => r.key);
      if (missing.length > 0) throw new SluiceError('SLUICE_NOT_FOUND', `${missing.length === 1 ? 'object' : 'objects'} ${missing.map((k) => `'${k}'`).join(', ')} did not exist in bucket '${bucket}'`);
    });
  objects
    .command('ls')
    .description('list objects (one page; --all for every page)')
    .argument('<bucket>')
    .option('--prefix <prefix>', 'only keys starting with this', '')
    .option('--delimiter <d>', "roll keys up to this into folders, e.g. '/'")
    .option('--limit <n>', 'page size', intArg(1), 1000)
    .option('--all', 'follow every page')
    .option('--token <token>', 'continue from this next-page token (from a previous --json page)')
    .action(async (bucket: string, opts: { prefix: string; delimiter?: string; limit: number; all?: boolean; token?: string }) => {
      await withBackend(g(), async (b) => {
        const o = await b.objects(bucket);
        const objects: import("../../../bindings/types.ts").ObjectMeta[] = [];
        const prefixes: string[] = [];
        let token: string | undefined = opts.token;
        let nextToken: string | undefined;
        do {
          const page = await o.list({ prefix: opts.prefix, limit: opts.limit, ...(opts.delimiter ? { delimiter: opts.delimiter } : {}), ...(token ? { continuationToken: token } : {}) });
          objects.push(...page.objects);
          prefixes.push(...page.commonPrefixes);
          nextToken = page.nextToken;
          token = opts.all ? nextToken : undefined;
        } while (token);
        // One page: its next-page token is part of the answer (a script continues with --token).
        out(g(), { objects, commonPrefixes: prefixes, ...(nextToken !== undefined ? { nextToken } : {}) }, () =>
          [
            ...prefixes.map((p) => `                          DIR  ${p}`),
            ...objects.map((m) => `${m.mtime.toISOString()} ${String(m.size).padStart(10)}  ${m.key}`),
            ...(nextToken !== undefined ? [`(more: sluice objects ls ${bucket} --token ${nextToken})`] : []),
          ].join('\n'),
        );
      });
    });
}
