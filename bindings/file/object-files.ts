/**
 * Objects as files: a read-only {@link FileBinding} whose paths are `<bucket>/<key>`, for libraries
 * that only take a filesystem path (`sharp(path)`, ffmpeg, pdf tools) — the seed's `wc.Mount +
 * obj.fullpath`.
 *
 * Why files are materialised, and how:
 * - Bodies live in LMDB (local) or JetStream Object Store (nats), neither of which has a file a path
 *   could name, so a body becomes a file on first use: read once (`get`) and written to a temporary
 *   file renamed into place (a reader never sees half a file). When the caller already has the bytes
 *   (a body prefetched with the batch, in shared memory) they are written directly, with no fetch.
 *   The body thus passes through JS memory once (at most `Limits.maxObjectBytes`, 64 MiB); streaming
 *   `getStream`'s chunks instead measured 1.5-4× slower here.
 * - Files are content-addressed by bucket, key and version (`<root>/<bucket>/<sha256(key)[:24]>-v<n>/<name>`,
 *   `<name>` the key's last segment, made safe, so its extension survives), so retries and later records
 *   of the same version reuse the file, and a new version never overwrites a file a handler still reads.
 * - The cache is bounded by `maxBytes`. A file handed out is kept at least `pinMs` (the handler timeout:
 *   no batch that got the path runs longer), so eviction never pulls a file from under a running handler;
 *   when every file is pinned, the cache grows past `maxBytes` rather than fail the handler.
 * - One cache per handler thread (or inline runner), in its own directory under the OS temp dir; removed
 *   on close, and directories of dead processes are swept when the next cache opens.
 *
 * Measured: see "Cost" in functions/image-meta/README.md.
 *
 * Limits: keys that are not valid paths (empty segments as in `a//b`, `.` or `..` segments, a trailing
 * `/`, segments over 255 bytes) cannot be reached by path — `EventRecord.path()` still materialises them
 * (it names the object by bucket and key, not by path). Read-only: every write is SLUICE_ACCESS_DENIED.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open as fsOpen, readdir as fsReaddir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { BindingError, SluiceError } from '../errors.ts';
import type { DirEntry, FileBinding, FileHandle, FileStat, ObjectBinding, OpenOptions } from '../types.ts';
import { checkName } from '../values.ts';
import { parsePath, showPath } from './fs-path.ts';

/** Options of {@link ObjectFileCache.open}. */
export interface ObjectFileCacheOptions {
  /** Directory the cache's own directory is made in. @default os.tmpdir() */
  dir?: string;
  /** Bytes of materialised bodies kept before unpinned files are evicted (oldest use first). @default 268435456 (256 MiB) */
  maxBytes?: number;
  /** A file handed out is never evicted for this long (ms); set to the handler timeout. @default 30000 */
  pinMs?: number;
}

interface Entry {
  path: string;
  dir: string;
  bytes: number;
  usedMs: number;
}

const PREFIX = 'sluice-objects-';

/** Longest file name written (bytes); the key's last segment is cut to it. */
const MAX_NAME_BYTES = 120;

/** A file name that keeps the key's last segment (and its extension) readable, with nothing unsafe in it. */
function fileNameOf(key: string): string {
  const last = key.slice(key.lastIndexOf('/') + 1);
  let name = last.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  if (name.length > MAX_NAME_BYTES) name = name.slice(name.length - MAX_NAME_BYTES);
  return name === '' ? 'body' : name;
}

/** The materialised files of one thread: a directory of immutable, content-addressed body files. */
export class ObjectFileCache {
  /** Absolute path of the cache directory (the root of every {@link ObjectFiles} view over it). */
  readonly root: string;
  readonly #maxBytes: number;
  readonly #pinMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<Entry>>();
  #bytes = 0;
  #closed = false;

  private constructor(root: string, maxBytes: number, pinMs: number) {
    this.root = root;
    this.#maxBytes = maxBytes;
    this.#pinMs = pinMs;
  }

  /** Makes the cache directory (and sweeps directories left by processes that are gone). */
  static async open(options: ObjectFileCacheOptions = {}): Promise<ObjectFileCache> {
    const maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
    const pinMs = options.pinMs ?? 30_000;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `object files: maxBytes must be a non-negative integer, got ${maxBytes}`);
    if (!Number.isFinite(pinMs) || pinMs < 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `object files: pinMs must be a non-negative number, got ${pinMs}`);
    const base = options.dir ?? tmpdir();
    await sweep(base);
    const root = await mkdtemp(join(base, `${PREFIX}${process.pid}-${threadId}-`));
    return new ObjectFileCache(root, maxBytes, pinMs);
  }

  /** Bytes of the files currently kept. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The host path of a file holding the body of `bucket`/`key`: written from `from.body` (of version
   * `from.version`) when the caller has the bytes, else streamed from `from.objects` (the current
   * version; `from.version`, when the caller knows it, saves a `head` on a cache hit and on the first
   * read). SLUICE_NOT_FOUND when the object is absent.
   */
  async materialize(bucket: string, key: string, from: { objects: ObjectBinding; version?: number } | { version: number; body: Uint8Array }): Promise<string> {
    if (this.#closed) throw new BindingError('SLUICE_INVALID_ARGUMENT', 'object files: the cache is closed');
    const known = 'body' in from ? from : undefined;
    const objects = 'objects' in from ? from.objects : undefined;
    const hash = createHash('sha256').update(bucket).update('\0').update(key).digest('hex').slice(0, 24);
    let version = from.version;
    // Without the bytes, the version decides which file: one head, then a hit needs nothing more.
    if (version === undefined) {
      const h = await objects!.head(key);
      if (h === undefined) throw new BindingError('SLUICE_NOT_FOUND', `object '${key}' does not exist in bucket '${bucket}'`);
      version = h.version;
    }
    const id = `${bucket}/${hash}-v${version}`;
    const hit = this.#entries.get(id);
    if (hit !== undefined) {
      hit.usedMs = Date.now();
      return hit.path;
    }
    let p = this.#inflight.get(id);
    if (p === undefined) {
      p = (async () => {
        const dir = join(this.root, bucket, `${hash}-v${version}`);
        const path = join(dir, fileNameOf(key));
        await mkdir(dir, { recursive: true });
        const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
        let bytes: number;
        try {
          if (known !== undefined) {
            await writeFile(tmp, known.body);
            bytes = known.body.byteLength;
          } else {
            // One whole read, then one write: measured 1.5-4× faster than streaming the chunks of
            // getStream into the file (8 MiB: 30 vs 130 ms), and a body is at most
            // Limits.maxObjectBytes (64 MiB), so the memory is bounded per materialisation.
            const got = await objects!.get(key);
            // The object changed since the version the file is named by: the caller retries (its record
            // is superseded by a newer one anyway).
            if (got.version !== version) throw new BindingError('SLUICE_CONFLICT', `object '${key}' in bucket '${bucket}' is at version ${got.version}, not ${version}; try again`);
            await writeFile(tmp, got.body);
            bytes = got.body.byteLength;
          }
          await chmod(tmp, 0o444);
          await rename(tmp, path);
        } catch (e) {
          await rm(tmp, { force: true }).catch(() => undefined);
          throw e;
        }
        const entry: Entry = { path, dir, bytes, usedMs: Date.now() };
        this.#entries.set(id, entry);
        this.#bytes += bytes;
        await this.#evict();
        return entry;
      })();
      this.#inflight.set(id, p);
      void p.then(
        () => this.#inflight.delete(id),
        () => this.#inflight.delete(id),
      );
    }
    const e = await p;
    e.usedMs = Date.now();
    return e.path;
  }

  /** Removes unpinned files, least recently used first, until the cache is within its bound. */
  async #evict(): Promise<void> {
    if (this.#bytes <= this.#maxBytes) return;
    const cutoff = Date.now() - this.#pinMs;
    // Map order is insertion order; sorting by use keeps the rule exact when files are reused.
    const victims = [...this.#entries].filter(([, e]) => e.usedMs < cutoff).sort((a, b) => a[1].usedMs - b[1].usedMs);
    for (const [id, e] of victims) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#entries.delete(id);
      this.#bytes -= e.bytes;
      await rm(e.dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Removes every file and the cache directory. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#inflight.values()]);
    this.#entries.clear();
    this.#bytes = 0;
    await rm(this.root, { recursive: true, force: true });
  }
}

/**
 * A directory for the caches of one owner (a handler pool: its threads' caches go inside, and removing
 * it on close removes them all, even those of threads that were terminated). Named so that
 * {@link ObjectFileCache.open} sweeps it once its process is gone.
 */
export async function makeObjectFilesDir(base: string = tmpdir()): Promise<string> {
  await sweep(base);
  return mkdtemp(join(base, `${PREFIX}${process.pid}-pool-`));
}

/** Removes cache directories whose process is gone (a killed worker cannot clean up after itself). */
async function sweep(base: string): Promise<void> {
  let names: string[];
  try {
    names = await fsReaddir(base);
  } catch {
    return;
  }
  await Promise.all(
    names.map(async (n) => {
      if (!n.startsWith(PREFIX)) return;
      const pid = Number(n.slice(PREFIX.length).split('-')[0]);
      if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) return;
      await rm(join(base, n), { recursive: true, force: true }).catch(() => undefined);
    }),
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Where a path of an {@link ObjectFiles} view points. */
type Target = { kind: 'root' } | { kind: 'bucket'; bucket: string } | { kind: 'entry'; bucket: string; key: string };

/**
 * A read-only view of buckets as files, over an {@link ObjectFileCache}. `allowed` is the set of buckets
 * the function declared (least privilege): other buckets are SLUICE_ACCESS_DENIED.
 */
export class ObjectFiles implements FileBinding {
  readonly root: string;
  readonly #cache: ObjectFileCache;
  readonly #allowed: ReadonlySet<string>;
  readonly #objects: (bucket: string) => Promise<ObjectBinding>;
  readonly #name: string;

  /** `name` is how errors call the binding (its `ctx.data` name). */
  constructor(cache: ObjectFileCache, allowed: Iterable<string>, objects: (bucket: string) => Promise<ObjectBinding>, name = 'objects') {
    this.#cache = cache;
    this.root = cache.root;
    this.#allowed = new Set(allowed);
    this.#objects = objects;
    this.#name = name;
  }

  #denied(method: string, why: string): BindingError {
    return new BindingError('SLUICE_ACCESS_DENIED', `binding '${this.#name}' (object files) ${why}: ${method} refused`, { details: { binding: this.#name, method } });
  }

  #target(path: string, op: string): Target {
    const p = parsePath(path);
    const [bucket, ...rest] = p.segments;
    if (bucket === undefined) return { kind: 'root' };
    checkName(bucket, 'bucket');
    if (!this.#allowed.has(bucket)) throw this.#denied(`${op}(${showPath(p.rel)})`, `reaches only bucket${this.#allowed.size === 1 ? '' : 's'} ${[...this.#allowed].map((b) => `'${b}'`).join(', ')}`);
    return rest.length === 0 ? { kind: 'bucket', bucket } : { kind: 'entry', bucket, key: rest.join('/') };
  }

  /**
   * The host filesystem path of the file holding `<bucket>/<key>`'s body, for path-only libraries; valid
   * at least while the handler runs. SLUICE_FILE_NOT_FOUND when there is no such object.
   */
  async localPath(path: string): Promise<string> {
    const t = this.#target(path, 'localPath');
    if (t.kind !== 'entry') throw new BindingError('SLUICE_IS_A_DIRECTORY', `localPath ${showPath(path)}: is a directory`);
    try {
      return await this.#cache.materialize(t.bucket, t.key, { objects: await this.#objects(t.bucket) });
    } catch (e) {
      throw notFoundAsFile(e, 'localPath', path);
    }
  }

  async open(path: string, options: OpenOptions = {}): Promise<FileHandle> {
    const mode = options.mode ?? 'r';
    if (mode !== 'r') throw this.#denied(`open(${showPath(String(path))}, { mode: '${mode}' })`, 'is read-only');
    const host = await this.localPath(path);
    const fh = await fsOpen(host, 'r');
    const rel = parsePath(path).rel;
    let closed = false;
    const live = (op: string): void => {
      if (closed) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${op} ${showPath(rel)}: the handle is closed`);
    };
    const h: FileHandle = {
      path: rel,
      read: async (position, length) => {
        live('read');
        if (!Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(length) || length < 0)
          throw new BindingError('SLUICE_INVALID_ARGUMENT', `read ${showPath(rel)}: position and length must be non-negative integers`);
        const size = (await fh.stat()).size;
        const n = Math.max(0, Math.min(length, size - position));
        const buf = new Uint8Array(n);
        let got = 0;
        while (got < n) {
          const { bytesRead } = await fh.read(buf, got, n - got, position + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return got === n ? buf : buf.slice(0, got);
      },
      write: () => Promise.reject(this.#denied(`write(${showPath(rel)})`, 'is read-only')),
      stat: async () => {
        live('stat');
        const st = await fh.stat();
        return { path: rel, type: 'file', size: st.size, mtime: st.mtime };
      },
      close: async () => {
        if (closed) return;
        closed = true;
        await fh.close();
      },
    };
    return Object.freeze(h);
  }

  async readFile(path: string): Promise<Uint8Array> {
    const t = this.#target(path, 'readFile');
    if (t.kind !== 'entry') throw new BindingError('SLUICE_IS_A_DIRECTORY', `readFile ${showPath(path)}: is a directory`);
    try {
      // A whole read needs no file: the body comes straight from the bucket.
      return (await (await this.#objects(t.bucket)).get(t.key)).body;
    } catch (e) {
      throw notFoundAsFile(e, 'readFile', path);
    }
  }

  async stat(path: string): Promise<FileStat | undefined> {
    const t = this.#target(path, 'stat');
    const now = new Date(0);
    if (t.kind === 'root') return { path: '', type: 'directory', size: 0, mtime: now };
    const rel = parsePath(path).rel;
    const o = await this.#objects(t.bucket);
    if (t.kind === 'bucket') return { path: rel, type: 'directory', size: 0, mtime: now };
    const h = await o.head(t.key);
    if (h !== undefined) return { path: rel, type: 'file', size: h.size, mtime: h.mtime };
    // A key prefix followed by '/' is a directory, as S3 consoles show it.
    const page = await o.list({ prefix: `${t.key}/`, limit: 1 });
    return page.objects.length > 0 || page.commonPrefixes.length > 0 ? { path: rel, type: 'directory', size: 0, mtime: now } : undefined;
  }

  async readdir(path: string): Promise<DirEntry[]> {
    const t = this.#target(path, 'readdir');
    if (t.kind === 'root') return [...this.#allowed].sort().map((name) => ({ name, type: 'directory' as const }));
    const o = await this.#objects(t.bucket);
    const prefix = t.kind === 'bucket' ? '' : `${t.key}/`;
    const out: DirEntry[] = [];
    let token: string | undefined;
    do {
      const page = await o.list({ prefix, delimiter: '/', limit: 1000, ...(token !== undefined ? { continuationToken: token } : {}) });
      for (const m of page.objects) {
        const name = m.key.slice(prefix.length);
        // Keys that are not path names (empty, '.', '..') cannot be reached by path; leave them out.
        if (name !== '' && name !== '.' && name !== '..') out.push({ name, type: 'file' });
      }
      for (const cp of page.commonPrefixes) {
        const name = cp.slice(prefix.length, -1);
        if (name !== '' && name !== '.' && name !== '..') out.push({ name, type: 'directory' });
      }
      token = page.nextToken;
    } while (token !== undefined);
    if (out.length === 0 && t.kind === 'entry' && (await o.head(t.key)) === undefined)
      throw new BindingError('SLUICE_FILE_NOT_FOUND', `readdir ${showPath(path)}: no such directory`);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  writeFile(path: string): Promise<void> {
    return Promise.reject(this.#denied(`writeFile(${showPath(String(path))})`, 'is read-only'));
  }
  mkdir(path: string): Promise<void> {
    return Promise.reject(this.#denied(`mkdir(${showPath(String(path))})`, 'is read-only'));
  }
  rename(from: string, to: string): Promise<void> {
    return Promise.reject(this.#denied(`rename(${showPath(String(from))}, ${showPath(String(to))})`, 'is read-only'));
  }
  remove(path: string): Promise<boolean> {
    return Promise.reject(this.#denied(`remove(${showPath(String(path))})`, 'is read-only'));
  }
}

function notFoundAsFile(e: unknown, op: string, path: string): unknown {
  if (e instanceof SluiceError && e.code === 'SLUICE_NOT_FOUND') return new BindingError('SLUICE_FILE_NOT_FOUND', `${op} ${showPath(path)}: no such object`, { cause: e });
  return e;
}

