export { LocalBackend, type LocalBackendOptions } from './local-backend.ts';
export { LocalStore, type LocalStoreOptions } from './local-store.ts';
