/** Function specs: the schema, loading with positioned errors, and the step to worker options. */
export { SpecError, formatProblem } from './errors.ts';
export { formatPath, loadFunctionSpec, loadFunctionSpecFile, parseFunctionSpec } from './load.ts';
export { durationMs, durationSchema, functionSpecSchema, SpecApiVersion, SpecKind, SupportedTriggerKinds, TriggerKinds } from './schema.ts';
export { resolveSecret, resolveSecrets, toWorkerOptions, type NatsWorkerBackend, type ToWorkerOptionsOptions } from './to-worker-options.ts';
export type * from './types.ts';
