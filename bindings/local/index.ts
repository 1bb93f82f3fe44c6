export { LocalBackend, type LocalBackendOptions } from './local-backend.ts';
export { LocalStore, type LocalStoreOptions } from './local-store.ts';
export { lockRecordDir, watchWriteLock, type WriteLockWatch, type WriteLockWatchOptions } from './write-lock.ts';
