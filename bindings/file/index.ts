/** The file binding on the local filesystem (used by the local and the NATS backend). */
export { FsFile } from './fs-file.ts';
export { makeObjectFilesDir, ObjectFileCache, ObjectFiles, type ObjectFileCacheOptions } from './object-files.ts';
