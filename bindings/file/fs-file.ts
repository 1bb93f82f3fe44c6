/**
 * The file binding on the local filesystem: files under one root directory. Used by the local backend
 * and by the NATS backend (in a cluster the root is a mounted volume shared by the workers).
 *
 * Path rules and symlink handling live in `fs-path.ts`; this file holds the operations.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import {
  open as fsOpen,
  lstat,
  mkdir,
  readdir,
  realpath,
  rename,
  rmdir,
  unlink,
  type FileHandle as NodeFileHandle,
} from 'node:fs/promises';
import { join, resolve as resolveHostPath } from 'node:path';
import { BindingError } from '../errors.ts';
import type { DirEntry, FileBinding, FileHandle, FileStat, OpenOptions } from '../types.ts';
import { compareKeys } from '../values.ts';
import { fileStat, FsFileHandle, toBytes } from './fs-handle.ts';
import { parsePath, PathResolver, showPath, toFileError, type Resolved } from './fs-path.ts';

type OpenMode = NonNullable<OpenOptions['mode']>;

// O_NOFOLLOW does not exist on Windows; there the final-component check of the resolver is all we have.
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const { O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_APPEND } = constants;

/** open(2) flags per mode. 'w' truncates only after the parent was re-checked, so it has no O_TRUNC here. */
const MODE_FLAGS: Readonly<Record<OpenMode, number>> = {
  r: O_RDONLY,
  'r+': O_RDWR,
  w: O_WRONLY | O_CREAT,
  a: O_WRONLY | O_CREAT | O_APPEND,
  wx: O_WRONLY | O_CREAT | O_EXCL,
};

/** Temp file name beside `name`: `.<name>.<random>.tmp`, with `name` cut so the whole stays under 255 bytes. */
function tempName(name: string): string {
  let base = name;
  while (Buffer.byteLength(base) > 200) base = Array.from(base).slice(0, -1).join('');
  return `.${base}.${randomBytes(6).toString('hex')}.tmp`;
}

/**
 * Files under one root directory on the local filesystem.
 *
 * Paths follow the rules of `fs-path.ts` (relative, '/'-separated, no '..' or '.', no backslash or NUL;
 * '' and '.' name the root, accepted by `stat` and `readdir` only). Symlinks:
 * - a symlink whose real path leaves the root, or that does not resolve, is refused with
 *   SLUICE_PATH_INVALID by every operation, wherever it sits on the path;
 * - a symlink that stays inside the root is followed (open, readFile, writeFile, stat, readdir, mkdir,
 *   and both sides of rename, which moves or replaces the entry the link resolves to), except by `remove`,
 *   which removes the link itself, never its target.
 *
 * `readdir` reports regular files and directories; a symlink is reported as the type of its target when
 * that target is a file or directory inside the root, and left out otherwise (escaping or dangling links);
 * sockets, FIFOs and devices are left out. `stat` returns undefined for such entries too.
 *
 * Known limit: Node has no `openat`, so a directory swapped for a symlink between the check and the use
 * of a path is caught by re-checking afterwards (the open file is closed and the call refused) rather
 * than made impossible.
 */
export class FsFile implements FileBinding {
  /** Real absolute path of the root directory. */
  readonly root: string;
  readonly #paths: PathResolver;

  private constructor(root: string) {
    this.root = root;
    this.#paths = new PathResolver(root);
  }

  /** Opens (creating when missing) the directory `root` and resolves it to its real path. */
  static async open(root: string): Promise<FsFile> {
    if (typeof root !== 'string' || root === '') throw new BindingError('SLUICE_INVALID_ARGUMENT', 'file root must be a non-empty string');
    try {
      const abs = resolveHostPath(root);
      await mkdir(abs, { recursive: true });
      const real = await realpath(abs);
      if (!(await lstat(real)).isDirectory()) throw new BindingError('SLUICE_NOT_A_DIRECTORY', `file root ${showPath(root)} is not a directory`);
      return new FsFile(real);
    } catch (err) {
      // The caller gave this path, so naming it does not reveal anything.
      throw toFileError(err, 'open root', root);
    }
  }

  async open(path: string, options: OpenOptions = {}): Promise<FileHandle> {
    const mode = options.mode ?? 'r';
    if (!Object.hasOwn(MODE_FLAGS, mode)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `open ${showPath(String(path))}: unknown mode ${JSON.stringify(mode)}`);
    const p = parsePath(path);
    const r = await this.#paths.resolve(p, 'open');
    if (r.stats === undefined && (mode === 'r' || mode === 'r+' || !r.parentExists)) {
      throw new BindingError('SLUICE_FILE_NOT_FOUND', `open ${showPath(p.rel)}: no such file${r.parentExists ? '' : ' (parent directory missing)'}`);
    }
    if (r.stats !== undefined && mode === 'wx') throw new BindingError('SLUICE_FILE_EXISTS', `open ${showPath(p.rel)}: already exists`);
    const fh = await this.#openChecked(r, MODE_FLAGS[mode], 'open');
    if (mode === 'w') {
      try {
        await fh.truncate(0);
      } catch (err) {
        await fh.close().catch(() => undefined);
        throw toFileError(err, 'open', p.rel);
      }
    }
    return new FsFileHandle(fh, p.rel);
  }

  async readFile(path: string): Promise<Uint8Array> {
    const p = parsePath(path);
    const r = await this.#paths.resolve(p, 'readFile');
    if (r.stats === undefined) throw new BindingError('SLUICE_FILE_NOT_FOUND', `readFile ${showPath(p.rel)}: no such file`);
    const fh = await this.#openChecked(r, O_RDONLY, 'readFile');
    try {
      const buf = await fh.readFile();
      // Hand out a plain Uint8Array that owns its memory (a Buffer may sit in a shared pool).
      return buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength ? new Uint8Array(buf.buffer, 0, buf.byteLength) : new Uint8Array(buf);
    } catch (err) {
      throw toFileError(err, 'readFile', p.rel);
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  async writeFile(path: string, data: Uint8Array | string): Promise<void> {
    const p = parsePath(path);
    const bytes = toBytes(data, 'writeFile', p.rel);
    const r = await this.#paths.resolve(p, 'writeFile', { createParents: true });
    if (r.stats?.isDirectory()) throw new BindingError('SLUICE_IS_A_DIRECTORY', `writeFile ${showPath(p.rel)}: is a directory`);
    const tmp = join(r.parent, tempName(r.name));
    let fh: NodeFileHandle | undefined;
    let renamed = false;
    try {
      fh = await fsOpen(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o666);
      await this.#paths.recheck(r.parent, 'writeFile', p.rel);
      await fh.writeFile(bytes);
      // Data reaches the disk before the rename publishes it: after a crash the target holds the old
      // content or the new, never a torn file.
      await fh.sync();
      await fh.close();
      fh = undefined;
      await this.#paths.recheck(r.parent, 'writeFile', p.rel);
      await rename(tmp, r.abs);
      renamed = true;
    } catch (err) {
      throw toFileError(err, 'writeFile', p.rel);
    } finally {
      if (fh !== undefined) await fh.close().catch(() => undefined);
      if (!renamed) await unlink(tmp).catch(() => undefined);
    }
    await syncDir(r.parent);
  }

  async stat(path: string): Promise<FileStat | undefined> {
    const p = parsePath(path);
    const r = await this.#paths.resolve(p, 'stat', { allowRoot: true });
    if (r.stats === undefined || !(r.stats.isFile() || r.stats.isDirectory())) return undefined;
    return fileStat(p.rel, r.stats);
  }

  async readdir(path: string): Promise<DirEntry[]> {
    const p = parsePath(path);
    const r = await this.#paths.resolve(p, 'readdir', { allowRoot: true });
    if (r.stats === undefined) throw new BindingError('SLUICE_FILE_NOT_FOUND', `readdir ${showPath(p.rel)}: no such directory`);
    if (!r.stats.isDirectory()) throw new BindingError('SLUICE_NOT_A_DIRECTORY', `readdir ${showPath(p.rel)}: not a directory`);
    let dirents;
    try {
      dirents = await readdir(r.abs, { withFileTypes: true });
    } catch (err) {
      throw toFileError(err, 'readdir', p.rel);
    }
    // The listing was read by path: make sure that path was still the directory we resolved.
    await this.#paths.recheck(r.abs, 'readdir', p.rel);
    const out: DirEntry[] = [];
    for (const d of dirents) {
      if (d.isFile()) out.push({ name: d.name, type: 'file' });
      else if (d.isDirectory()) out.push({ name: d.name, type: 'directory' });
      else if (d.isSymbolicLink()) {
        const type = await this.#linkType(join(r.abs, d.name));
        if (type !== undefined) out.push({ name: d.name, type });
      }
    }
    return out.sort((a, b) => compareKeys(a.name, b.name));
  }

  async mkdir(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    const recursive = options.recursive === true;
    const p = parsePath(path);
    const r = await this.#paths.resolve(p, 'mkdir', { createParents: recursive });
    if (r.stats !== undefined) {
      if (recursive && r.stats.isDirectory()) return;
      throw new BindingError('SLUICE_FILE_EXISTS', `mkdir ${showPath(p.rel)}: already exists`);
    }
    if (!r.parentExists) throw new BindingError('SLUICE_FILE_NOT_FOUND', `mkdir ${showPath(p.rel)}: parent directory missing (use recursive)`);
    try {
      await this.#paths.recheck(r.parent, 'mkdir', p.rel);
      await mkdir(r.abs);
    } catch (err) {
      // A concurrent mkdir -p of the same directory is not a failure.
      if (recursive && (err as { code?: unknown }).code === 'EEXIST' && (await lstat(r.abs).catch(() => undefined))?.isDirectory()) return;
      throw toFileError(err, 'mkdir', p.rel);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    const pf = parsePath(from);
    const pt = parsePath(to);
    const op = `rename ${showPath(pf.rel)} to`;
    const rf = await this.#paths.resolve(pf, 'rename');
    if (rf.stats === undefined) throw new BindingError('SLUICE_FILE_NOT_FOUND', `rename ${showPath(pf.rel)}: no such file or directory`);
    const rt = await this.#paths.resolve(pt, op);
    if (!rt.parentExists) throw new BindingError('SLUICE_FILE_NOT_FOUND', `${op} ${showPath(pt.rel)}: parent directory missing`);
    try {
      await this.#paths.recheck(rf.parent, 'rename', pf.rel);
      await this.#paths.recheck(rt.parent, op, pt.rel);
      // rename(2) is atomic within one filesystem and replaces `to`; it never follows a symlink at either end.
      await rename(rf.abs, rt.abs);
    } catch (err) {
      throw toFileError(err, op, pt.rel);
    }
  }

  async remove(path: string, options: { recursive?: boolean } = {}): Promise<boolean> {
    const p = parsePath(path);
    const r = await this.#paths.resolve(p, 'remove', { followFinal: false });
    if (r.stats === undefined) return false;
    try {
      await this.#paths.recheck(r.parent, 'remove', p.rel);
      if (!r.stats.isDirectory()) await unlink(r.abs);
      else if (options.recursive === true) await this.#removeTree(r.abs, p.rel);
      else await rmdir(r.abs);
      return true;
    } catch (err) {
      // Removed by someone else between the check and now: absent, as far as the caller can tell.
      if ((err as { code?: unknown }).code === 'ENOENT') return false;
      if ((err as { code?: unknown }).code === 'EEXIST') throw new BindingError('SLUICE_DIRECTORY_NOT_EMPTY', `remove ${showPath(p.rel)}: directory not empty`);
      throw toFileError(err, 'remove', p.rel);
    }
  }

  /**
   * Deletes a directory tree without following symlinks (links are unlinked, never descended into).
   * Hand-written rather than `fs.rm({ recursive })` so every directory is re-checked to be itself
   * (not swapped for a symlink) before it is listed.
   */
  async #removeTree(dir: string, rel: string): Promise<void> {
    await this.#paths.recheck(dir, 'remove', rel);
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const child = join(dir, d.name);
      if (d.isDirectory()) await this.#removeTree(child, rel);
      else await unlink(child);
    }
    await rmdir(dir);
  }

  /** Opens the resolved file with O_NOFOLLOW, then re-checks its parent; refuses anything but a regular file. */
  async #openChecked(r: Resolved, flags: number, op: string): Promise<NodeFileHandle> {
    if (r.stats?.isDirectory()) throw new BindingError('SLUICE_IS_A_DIRECTORY', `${op} ${showPath(r.rel)}: is a directory`);
    // Opening a FIFO for reading would block; refuse special files before touching them.
    if (r.stats !== undefined && !r.stats.isFile()) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${op} ${showPath(r.rel)}: not a regular file`);
    let fh: NodeFileHandle;
    try {
      fh = await fsOpen(r.abs, flags | O_NOFOLLOW, 0o666);
    } catch (err) {
      throw toFileError(err, op, r.rel);
    }
    try {
      await this.#paths.recheck(r.parent, op, r.rel);
      const st = await fh.stat();
      if (st.isDirectory()) throw new BindingError('SLUICE_IS_A_DIRECTORY', `${op} ${showPath(r.rel)}: is a directory`);
      if (!st.isFile()) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${op} ${showPath(r.rel)}: not a regular file`);
      return fh;
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw toFileError(err, op, r.rel);
    }
  }

  /** The type a symlink in a listing is reported as: its target's, when inside the root; else undefined. */
  async #linkType(abs: string): Promise<DirEntry['type'] | undefined> {
    try {
      const real = await realpath(abs);
      if (!this.#paths.inside(real)) return undefined;
      const st = await lstat(real);
      return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : undefined;
    } catch {
      return undefined; // dangling or looping: left out
    }
  }
}

/** Makes a rename durable by syncing its directory; best effort (some filesystems refuse directory fsync). */
async function syncDir(dir: string): Promise<void> {
  const fh = await fsOpen(dir, O_RDONLY).catch(() => undefined);
  if (fh === undefined) return;
  await fh.sync().catch(() => undefined);
  await fh.close().catch(() => undefined);
}
