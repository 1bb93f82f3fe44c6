/**
 * The open-file handle of {@link FsFile}, and the small helpers both share.
 */
import type { FileHandle as NodeFileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { BindingError } from '../errors.ts';
import type { FileHandle, FileStat } from '../types.ts';
import { showPath, toFileError } from './fs-path.ts';

/** Reads asking for more than this check the file size first, so a huge `length` does not allocate. */
const READ_CLAMP_BYTES = 1 << 20;

/** A FileStat from native stats. */
export function fileStat(rel: string, st: Stats): FileStat {
  const dir = st.isDirectory();
  // Directory sizes are filesystem-specific (4096 on ext4); report 0 so every backend agrees.
  return { path: rel, type: dir ? 'directory' : 'file', size: dir ? 0 : st.size, mtime: st.mtime };
}

/** Asserts `n` is a non-negative safe integer (a position or length); SLUICE_INVALID_ARGUMENT otherwise. */
export function checkOffset(n: unknown, what: string, op: string, rel: string): asserts n is number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${op} ${showPath(rel)}: ${what} must be a non-negative integer, got ${String(n)}`);
  }
}

/** The bytes of `data` (UTF-8 for strings); SLUICE_INVALID_ARGUMENT for anything else. */
export function toBytes(data: unknown, op: string, rel: string): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  throw new BindingError('SLUICE_INVALID_ARGUMENT', `${op} ${showPath(rel)}: data must be a string or a Uint8Array`);
}

/**
 * An open file. `read`/`write` take absolute positions; in mode 'a' the kernel appends every write at
 * the end whatever the position. Implements `Symbol.asyncDispose`, so `await using h = await f.open(p)`
 * closes it.
 */
export class FsFileHandle implements FileHandle, AsyncDisposable {
  readonly path: string;
  #fh: NodeFileHandle | undefined;

  constructor(fh: NodeFileHandle, path: string) {
    this.#fh = fh;
    this.path = path;
  }

  #handle(op: string): NodeFileHandle {
    if (this.#fh === undefined) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${op} ${showPath(this.path)}: the handle is closed`);
    return this.#fh;
  }

  async read(position: number, length: number): Promise<Uint8Array> {
    checkOffset(position, 'position', 'read', this.path);
    checkOffset(length, 'length', 'read', this.path);
    const fh = this.#handle('read');
    try {
      if (length > READ_CLAMP_BYTES) length = Math.max(0, Math.min(length, (await fh.stat()).size - position));
      if (length === 0) return new Uint8Array(0);
      // A fresh Uint8Array, not a pooled Buffer: the caller must not see other data through `.buffer`.
      const buf = new Uint8Array(length);
      let n = 0;
      // read(2) may return short counts before the end of the file; loop until full or EOF.
      while (n < length) {
        const { bytesRead } = await fh.read(buf, n, length - n, position + n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      return n === length ? buf : buf.slice(0, n);
    } catch (err) {
      throw toFileError(err, 'read', this.path);
    }
  }

  async write(position: number, data: Uint8Array | string): Promise<number> {
    checkOffset(position, 'position', 'write', this.path);
    const bytes = toBytes(data, 'write', this.path);
    const fh = this.#handle('write');
    try {
      let n = 0;
      // write(2) may be partial (full disk, signals); keep going until everything is written.
      while (n < bytes.byteLength) {
        const { bytesWritten } = await fh.write(bytes, n, bytes.byteLength - n, position + n);
        n += bytesWritten;
      }
      return n;
    } catch (err) {
      throw toFileError(err, 'write', this.path);
    }
  }

  async stat(): Promise<FileStat> {
    const fh = this.#handle('stat');
    try {
      return fileStat(this.path, await fh.stat());
    } catch (err) {
      throw toFileError(err, 'stat', this.path);
    }
  }

  /** Closes the handle; closing twice is a no-op. */
  async close(): Promise<void> {
    const fh = this.#fh;
    if (fh === undefined) return;
    this.#fh = undefined;
    try {
      await fh.close();
    } catch (err) {
      throw toFileError(err, 'close', this.path);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

