/**
 * Turning stream records into batch records: decoding change records, applying the trigger's filters,
 * and prefetching what the handler will read ("data push": metadata, attributes and small bodies
 * come with the batch, so a handler thread needs no round trip for them).
 */
import { SluiceError } from '../bindings/errors.ts';
import { decodeChange } from '../bindings/shared.ts';
import type { ObjectBinding, StreamRecord } from '../bindings/types.ts';
import type { BatchRecordInput } from './batch-types.ts';
import type { ResolvedWorkerOptions } from './worker-options.ts';

/** A fetched record: where it is, its key, and how it will be delivered. */
export interface Fetched {
  seq: number;
  key: string;
  /** undefined: filtered out or superseded (done without running the handler). */
  input: BatchRecordInput | undefined;
  /** Bytes it adds to a batch (key + inline body). */
  bytes: number;
}

/** Why a record was dropped before the handler, for metrics. */
export type SkipReason = 'filtered' | 'superseded';

/** Decodes and filters stream records of the trigger; prefetches object metadata and bodies. */
export class RecordSource {
  readonly #o: ResolvedWorkerOptions;
  readonly #objects: ObjectBinding | undefined;
  /** Called for records dropped before the handler. */
  onSkip: (reason: SkipReason) => void = () => undefined;

  constructor(options: ResolvedWorkerOptions, objects: ObjectBinding | undefined) {
    this.#o = options;
    this.#objects = objects;
  }

  /** Builds the batch records of `recs` (stream order kept); attempt is the delivery attempt. */
  async prepare(recs: StreamRecord[], attempt: (seq: number) => number): Promise<Fetched[]> {
    const t = this.#o.trigger;
    if (t.type === 'stream') {
      return recs.map((r) => ({
        seq: r.seq,
        key: r.partitionKey ?? '',
        bytes: r.data.byteLength + (r.partitionKey?.length ?? 0),
        input: {
          key: r.partitionKey ?? '',
          type: 'record',
          source: t.stream,
          shard: r.shard,
          seq: r.seq,
          version: 0,
          size: r.data.byteLength,
          etag: '',
          mtimeMs: r.time.getTime(),
          contentType: r.headers['content-type'] ?? 'application/octet-stream',
          attrs: {},
          headers: r.headers,
          attempt: attempt(r.seq),
          body: r.data,
        },
      }));
    }
    const out: Fetched[] = new Array(recs.length);
    // Prefetch reads run concurrently (bounded by the batch size); results keep stream order.
    await Promise.all(
      recs.map(async (r, i) => {
        const c = decodeChange(r.data);
        const keep = (t.events as string[]).includes(c.type) && c.key.startsWith(t.prefix) && c.key.endsWith(t.suffix);
        if (!keep) {
          this.onSkip('filtered');
          out[i] = { seq: r.seq, key: c.key, input: undefined, bytes: 0 };
          return;
        }
        const input: BatchRecordInput = {
          key: c.key,
          type: c.type,
          source: c.bucket,
          shard: r.shard,
          seq: r.seq,
          version: c.version,
          size: c.size,
          etag: c.etag,
          mtimeMs: c.mtime.getTime(),
          contentType: c.contentType,
          attrs: {},
          headers: {},
          attempt: attempt(r.seq),
        };
        if (c.type !== 'delete' && this.#objects) {
          const cur = await this.#read(c.key, c.size <= t.inlineBodyMaxBytes);
          // The object changed since this record (deleted or put again): a newer record describes the
          // current state, so this one is done without running the handler.
          if (!cur || cur.version !== c.version) {
            this.onSkip('superseded');
            out[i] = { seq: r.seq, key: c.key, input: undefined, bytes: 0 };
            return;
          }
          input.attrs = cur.attrs;
          if (cur.body) input.body = cur.body;
        }
        out[i] = { seq: r.seq, key: c.key, input, bytes: c.key.length + (input.body?.byteLength ?? 0) + 64 };
      }),
    );
    return out;
  }

  async #read(key: string, withBody: boolean): Promise<{ version: number; attrs: BatchRecordInput['attrs']; body?: Uint8Array } | undefined> {
    const o = this.#objects!;
    if (!withBody) {
      const h = await o.head(key);
      return h && { version: h.version, attrs: h.attrs };
    }
    try {
      const g = await o.get(key);
      return { version: g.version, attrs: g.attrs, body: g.body };
    } catch (e) {
      if (e instanceof SluiceError && e.code === 'SLUICE_NOT_FOUND') return undefined;
      throw e;
    }
  }
}
