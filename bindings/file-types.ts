/**
 * The File binding's contract (re-exported by types.ts; a file of its own for types.ts's size).
 */
/** File metadata. */
export interface FileStat {
  /** Path relative to the binding root, '/'-separated, without a leading '/'. */
  path: string;
  type: 'file' | 'directory';
  size: number;
  mtime: Date;
}

/** A directory entry. */
export interface DirEntry {
  name: string;
  type: 'file' | 'directory';
}

/** An open file handle; `close` releases it (also on `await using`). */
export interface FileHandle {
  readonly path: string;
  /** Reads up to `length` bytes at `position`; returns fewer at the end of the file. */
  read(position: number, length: number): Promise<Uint8Array>;
  /** Writes bytes at `position`; returns bytes written. */
  write(position: number, data: Uint8Array | string): Promise<number>;
  stat(): Promise<FileStat>;
  close(): Promise<void>;
}

/** Options of {@link FileBinding.open}. */
export interface OpenOptions {
  /** 'r' read; 'r+' read/write existing; 'w' create/truncate; 'a' append; 'wx' create exclusively. @default 'r' */
  mode?: 'r' | 'r+' | 'w' | 'a' | 'wx';
}

/**
 * Files under one root directory. Paths are relative, '/'-separated; nothing reaches outside the root:
 * '..' segments, absolute paths, NUL bytes and symlinks leading out are refused with SLUICE_PATH_INVALID.
 */
export interface FileBinding {
  readonly root: string;
  open(path: string, options?: OpenOptions): Promise<FileHandle>;
  /** Whole-file read. */
  readFile(path: string): Promise<Uint8Array>;
  /** Whole-file write, atomic (write to a temporary file, then rename). Creates parent directories. */
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  stat(path: string): Promise<FileStat | undefined>;
  /** Entries of a directory, sorted by name. */
  readdir(path: string): Promise<DirEntry[]>;
  mkdir(path: string, options?: { recursive?: boolean }): Promise<void>;
  /** Atomic rename within the root; replaces an existing file at `to`. */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file, or a directory (with `recursive` when not empty); false when absent. */
  remove(path: string, options?: { recursive?: boolean }): Promise<boolean>;
}
