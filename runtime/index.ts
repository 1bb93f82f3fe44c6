/** The worker runtime: shard ownership, micro-batching, hand-off, exactly-once commit. */
export { assign, owners } from './assign.ts';
export { openBackend, type BackendSpec } from './backend-spec.ts';
export type { BatchInput, BatchRecordInput, BindingSpec } from './batch-types.ts';
export { markerAttr } from './committer.ts';
export { nextCheckpoint, type BatchOutcome, type RecordFate } from './checkpoint.ts';
export type { RecordSource, Fetched, PullOptions } from './records.ts';
export {
  GENERATION_KEY,
  nextGeneration,
  openStateTable,
  readCounters,
  readGeneration,
  replicasKey,
  StateKeys,
  StateReader,
  STATE_TABLE,
  type Checkpoint,
  type CounterHold,
  type LeaseRecord,
  type PendingRecord,
  type ReplicasRecord,
} from './state.ts';
export { Worker, type WorkerState } from './worker.ts';
export { resolveWorkerOptions, type ResolvedWorkerOptions, type Trigger, type WorkerOptions } from './worker-options.ts';
export { parseDurationMs } from '../functions/types.ts';
export { loadTls, type LoadedTls, type TlsFiles } from './tls.ts';
export { graphDigest, handlerGraph, type GraphProblem, type HandlerGraph } from './handler-graph.ts';
export { checkHandlerLoads, whereOf, type LoadFailure } from './handler-load.ts';
export { nodeArgs, tsxLoaderUrl } from './node-loader.ts';
export { invokeInChild, type InvokeChildRequest, type InvokeChildResult } from './invoke-child.ts';
