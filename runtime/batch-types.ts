/** The batch as the worker's main thread builds it, before it is written to a shared-memory slot. */
import type { Attrs, Cause } from '../bindings/types.ts';
import type { EventType } from '../functions/types.ts';

/** One record of a batch, with everything prefetched ("data push"). */
export interface BatchRecordInput {
  key: string;
  type: EventType;
  source: string;
  shard: number;
  seq: number;
  version: number;
  size: number;
  etag: string;
  mtimeMs: number;
  contentType: string;
  attrs: Attrs;
  headers: Record<string, string>;
  attempt: number;
  /** Inline body (prefetched small object body, or a stream record's payload). */
  body?: Uint8Array;
  /**
   * The cause of the record (the function commit that wrote it and its hop, runtime/chain.ts); the
   * committer stamps `hop + 1` on this record's writes. Main thread only: not sent to handler threads.
   */
  cause?: Cause;
}

/** A micro-batch for one handler invocation. */
export interface BatchInput {
  function: string;
  source: string;
  shard: number;
  batchId: string;
  /** Epoch ms by which the handler must return. */
  deadlineMs: number;
  records: BatchRecordInput[];
}

/**
 * A binding a function declares: name (ctx.data.<name>), kind, resource and access. `object-files` is
 * a bucket's objects as read-only files (paths `<bucket>/<key>`; access must be 'read').
 */
export interface BindingSpec {
  name: string;
  kind: 'object' | 'kv' | 'stream' | 'file' | 'object-files';
  /** Bucket, table, stream name, file root, or (object-files) bucket. */
  resource: string;
  access: 'read' | 'read-write';
}
