/**
 * The bindings' public entry: the four contracts, their errors and values, the expression language,
 * the change-record format, the value codec, and the two backends. Code outside `bindings/` imports
 * from here; files inside import each other directly (so no import cycle runs through this file).
 */
export * from './types.ts';
export * from './errors.ts';
export * from './values.ts';
export * from './expr/index.ts';
export * from './change-record.ts';
export { codec } from './codec.ts';
export { matchesWhere, stateItem, type ObjectState } from './query/index.ts';
export { LocalBackend, LocalStore, type LocalBackendOptions, type LocalStoreOptions } from './local/index.ts';
export { NatsBackend, type NatsBackendOptions } from './nats/index.ts';
