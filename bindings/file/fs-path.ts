/**
 * Path rules and symlink-safe path resolution for {@link FsFile}, and the one mapping of native
 * filesystem errors to sluice codes.
 *
 * The invariant this file guards (DESIGN: "nothing escapes the root"): a path given to the binding
 * never reaches a file outside the root directory. Two layers enforce it:
 *
 * 1. {@link parsePath} rejects, without touching the disk, every spelling that could leave the root
 *    or name a file ambiguously: absolute paths, '..' and '.' segments (never normalised away),
 *    backslashes, NUL bytes, lone surrogates, empty segments, over-long segments and paths.
 * 2. {@link PathResolver.resolve} walks the path one component at a time with `lstat`, starting from
 *    the real root, so that every intermediate directory is a real path. When it meets a symlink it
 *    resolves it with `realpath` and refuses (SLUICE_PATH_INVALID) when the target lies outside the
 *    root or does not resolve at all (a dangling link might point outside and be created through).
 *
 * What remains is the time between resolving and using a path; callers narrow it by opening the
 * final component with O_NOFOLLOW and calling {@link PathResolver.recheck} on the parent afterwards.
 */
import type { Stats } from 'node:fs';
import { lstat, mkdir, realpath } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { BindingError, SluiceError } from '../errors.ts';
import { utf8Length } from '../values.ts';

/** Longest path accepted, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest path segment accepted, in UTF-8 bytes (Linux NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const WINDOWS_DRIVE = /^[A-Za-z]:[\\/]/;

/** A path that passed {@link parsePath}. */
export interface ParsedPath {
  /** Canonical relative path: segments joined by '/', '' for the root. */
  rel: string;
  /** Its segments; empty for the root. */
  segments: readonly string[];
}

/** A path quoted for an error message: JSON-escaped (NUL and control characters visible), cut at 120 chars. */
export function showPath(path: string): string {
  return JSON.stringify(path.length > 120 ? `${path.slice(0, 120)}…` : path);
}

function invalid(path: string, why: string): BindingError {
  return new BindingError('SLUICE_PATH_INVALID', `invalid path ${showPath(path)}: ${why}`);
}

/**
 * Checks a path against the rules of the file binding and splits it. '' and '.' (and './') name the
 * root; one trailing '/' is allowed and dropped. Throws SLUICE_PATH_INVALID naming the path and the
 * rule it breaks, SLUICE_INVALID_ARGUMENT when it is not a string.
 */
export function parsePath(path: unknown): ParsedPath {
  if (typeof path !== 'string') throw new BindingError('SLUICE_INVALID_ARGUMENT', `path must be a string, got ${typeof path}`);
  if (utf8Length(path) > MAX_PATH_BYTES) throw invalid(path, `longer than ${MAX_PATH_BYTES} UTF-8 bytes`);
  if (path.includes('\0')) throw invalid(path, 'contains a NUL byte');
  if (path.startsWith('/')) throw invalid(path, 'is absolute; paths are relative to the root');
  if (WINDOWS_DRIVE.test(path) || path.startsWith('\\\\')) throw invalid(path, 'is an absolute Windows path; paths are relative to the root');
  if (path.includes('\\')) throw invalid(path, "contains a backslash; the separator is '/'");
  if (LONE_SURROGATE.test(path)) throw invalid(path, 'contains a lone surrogate (not valid UTF-8)');
  const p = path.endsWith('/') ? path.slice(0, -1) : path;
  if (p === '' || p === '.') return { rel: '', segments: [] };
  const segments = p.split('/');
  for (const s of segments) {
    if (s === '') throw invalid(path, 'has an empty segment');
    if (s === '..') throw invalid(path, "has a '..' segment");
    if (s === '.') throw invalid(path, "has a '.' segment");
    if (utf8Length(s) > MAX_SEGMENT_BYTES) throw invalid(path, `has a segment longer than ${MAX_SEGMENT_BYTES} UTF-8 bytes`);
  }
  return { rel: p, segments };
}

/** Where a path resolved to. */
export interface Resolved {
  /** Canonical relative path as the caller spelled it (symlinks not substituted). */
  rel: string;
  /** Real absolute path of the target, or where it would be created. */
  abs: string;
  /** Real absolute path of the directory holding `abs`. */
  parent: string;
  /** Last component of `abs`. */
  name: string;
  /** `lstat` of `abs` when it exists; a symlink only when `followFinal` was false. */
  stats: Stats | undefined;
  /** False when a directory above the target is missing (then `stats` is undefined too). */
  parentExists: boolean;
}

/** Options of {@link PathResolver.resolve}. */
export interface ResolveOptions {
  /** Accept a path that names (or resolves to) the root itself. @default false */
  allowRoot?: boolean;
  /** Create missing parent directories, one at a time, each checked like an existing one. @default false */
  createParents?: boolean;
  /**
   * Follow a symlink in the final component (when it stays inside the root). When false the link
   * itself is returned, after the same containment check. @default true
   */
  followFinal?: boolean;
}

function errnoOf(err: unknown): string | undefined {
  const c: unknown = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** Resolves relative paths under one real root directory; see the file header for the rules. */
export class PathResolver {
  /** Real absolute path of the root (no symlinks). */
  readonly root: string;
  readonly #prefix: string;

  constructor(realRoot: string) {
    this.root = realRoot;
    this.#prefix = realRoot.endsWith(sep) ? realRoot : realRoot + sep;
  }

  /** True when the absolute real path `p` is the root or lies under it. */
  inside(p: string): boolean {
    return p === this.root || p.startsWith(this.#prefix);
  }

  /**
   * Walks `p` from the root, component by component, and returns where it leads. Refuses
   * (SLUICE_PATH_INVALID) a symlink that leaves the root or does not resolve, and a path naming the
   * root unless `allowRoot`; SLUICE_NOT_A_DIRECTORY when a middle component is a file.
   */
  async resolve(p: ParsedPath, op: string, options: ResolveOptions = {}): Promise<Resolved> {
    const { allowRoot = false, createParents = false, followFinal = true } = options;
    if (p.segments.length === 0) {
      if (!allowRoot) throw new BindingError('SLUICE_PATH_INVALID', `${op} ${showPath(p.rel)}: the path names the root, which ${op} does not accept`);
      const stats = await lstat(this.root).catch((err: unknown) => { throw toFileError(err, op, p.rel); });
      return { rel: p.rel, abs: this.root, parent: this.root, name: '', stats, parentExists: true };
    }
    let cur = this.root;
    let stats: Stats | undefined;
    const n = p.segments.length;
    for (let i = 0; i < n; i++) {
      const seg = p.segments[i] as string;
      const last = i === n - 1;
      const prefix = p.segments.slice(0, i + 1).join('/');
      const next = join(cur, seg);
      let st: Stats;
      try {
        st = await lstat(next);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw toFileError(err, op, p.rel);
        if (last) return { rel: p.rel, abs: next, parent: cur, name: seg, stats: undefined, parentExists: true };
        if (!createParents) {
          // Nothing below a missing directory exists, so no symlink can be met: the lexical path is exact.
          const abs = join(next, ...p.segments.slice(i + 1));
          return { rel: p.rel, abs, parent: dirname(abs), name: basename(abs), stats: undefined, parentExists: false };
        }
        // Create one level at a time (never `recursive`) so a symlink planted meanwhile is seen, not followed:
        // mkdir does not follow a final symlink, and the retry of this iteration lstat's what is there now.
        await mkdir(next).catch((e: unknown) => { if (errnoOf(e) !== 'EEXIST') throw toFileError(e, op, p.rel); });
        i--;
        continue;
      }
      if (st.isSymbolicLink()) {
        const target = await this.#follow(next, p.rel, prefix, op);
        if (last && !followFinal) {
          stats = st;
          cur = next;
          break;
        }
        st = await lstat(target).catch((err: unknown) => { throw toFileError(err, op, p.rel); });
        cur = target;
      } else {
        cur = next;
      }
      if (!last && !st.isDirectory()) throw new BindingError('SLUICE_NOT_A_DIRECTORY', `${op} ${showPath(p.rel)}: ${showPath(prefix)} is not a directory`);
      stats = st;
    }
    if (cur === this.root && !allowRoot) throw new BindingError('SLUICE_PATH_INVALID', `${op} ${showPath(p.rel)}: the path resolves to the root, which ${op} does not accept`);
    return { rel: p.rel, abs: cur, parent: dirname(cur), name: basename(cur), stats, parentExists: true };
  }

  /** Real path of the symlink at `abs`, refused unless it resolves to something inside the root. */
  async #follow(abs: string, rel: string, prefix: string, op: string): Promise<string> {
    let real: string;
    try {
      real = await realpath(abs);
    } catch (err) {
      const why = errnoOf(err) === 'ELOOP' ? 'is a symlink loop' : 'is a symlink that does not resolve';
      throw new BindingError('SLUICE_PATH_INVALID', `${op} ${showPath(rel)}: ${showPath(prefix)} ${why}`, { cause: scrub(err) });
    }
    if (!this.inside(real)) throw new BindingError('SLUICE_PATH_INVALID', `${op} ${showPath(rel)}: ${showPath(prefix)} is a symlink leading outside the root`);
    return real;
  }

  /**
   * Checks, after a file was opened or just before a path is used, that the directory `dir` found by
   * {@link resolve} is still that real directory (no component swapped for a symlink since).
   */
  async recheck(dir: string, op: string, rel: string): Promise<void> {
    let real: string;
    try {
      real = await realpath(dir);
    } catch (err) {
      throw toFileError(err, op, rel);
    }
    if (real !== dir || !this.inside(real)) {
      throw new BindingError('SLUICE_PATH_INVALID', `${op} ${showPath(rel)}: a directory on the path was replaced (by a symlink?) while in use`);
    }
  }
}

/** A native error stripped of its message (which names absolute host paths), keeping code and syscall. */
function scrub(err: unknown): Error {
  const code = errnoOf(err) ?? 'UNKNOWN';
  const syscall: unknown = (err as { syscall?: unknown } | null)?.syscall;
  const e = new Error(typeof syscall === 'string' ? `${code} (${syscall})` : code);
  return Object.assign(e, { code });
}

/**
 * The one mapping of native filesystem errors to sluice codes. `op` is the operation ('readFile', …) and
 * `path` the caller's relative path; the message names both and never an absolute host path (the native
 * error travels as `cause`, reduced to its errno code and syscall). SluiceErrors pass through unchanged.
 */
export function toFileError(err: unknown, op: string, path: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const where = `${op} ${showPath(path)}`;
  const cause = scrub(err);
  const make = (code: ConstructorParameters<typeof BindingError>[0], why: string): BindingError => new BindingError(code, `${where}: ${why}`, { cause });
  switch (errnoOf(err)) {
    case 'ENOENT':
      return make('SLUICE_FILE_NOT_FOUND', 'no such file or directory');
    case 'EEXIST':
      return make('SLUICE_FILE_EXISTS', 'already exists');
    case 'ENOTDIR':
      return make('SLUICE_NOT_A_DIRECTORY', 'a path component is not a directory');
    case 'EISDIR':
      return make('SLUICE_IS_A_DIRECTORY', 'is a directory');
    case 'ENOTEMPTY':
      return make('SLUICE_DIRECTORY_NOT_EMPTY', 'directory not empty');
    case 'ELOOP':
      // With O_NOFOLLOW, ELOOP means the final component became a symlink after it was checked.
      return make('SLUICE_PATH_INVALID', 'is a symlink (not followed here) or a symlink loop');
    case 'ENAMETOOLONG':
      return make('SLUICE_PATH_INVALID', 'name too long for the filesystem');
    case 'EINVAL':
      return make('SLUICE_INVALID_ARGUMENT', 'invalid argument (e.g. moving a directory into itself)');
    case 'EBADF':
      return make('SLUICE_INVALID_ARGUMENT', 'the handle is closed or not open for this operation');
    case 'ENXIO':
    case 'ENODEV':
      return make('SLUICE_INVALID_ARGUMENT', 'not a regular file or directory');
    case 'EACCES':
    case 'EPERM':
      return make('SLUICE_INTERNAL', 'permission denied');
    case 'ENOSPC':
    case 'EDQUOT':
      return make('SLUICE_STORAGE_FULL', 'no space left on the volume');
    case 'EROFS':
      return make('SLUICE_INTERNAL', 'the volume is read-only');
    default:
      return make('SLUICE_INTERNAL', `unexpected filesystem error ${cause.message}`);
  }
}
