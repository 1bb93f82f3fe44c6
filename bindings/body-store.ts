/**
 * The body store: where an object's body lives when it does not live inside the backend's own
 * metadata store. Metadata, attributes and change records always stay in the backend (one LMDB
 * transaction locally, one KV message on NATS), so DESIGN invariant 1 holds whatever stores the body.
 *
 * The write protocol that makes this crash-safe, used by both object bindings:
 *  1. `put` uploads the body under a NEW unique ref (never an overwrite) BEFORE the metadata commit;
 *  2. the metadata commit references the ref;
 *  3. after the commit, the body the commit replaced (overwrite) or dropped (delete) is removed; after
 *     a failed commit (condition, conflict) the new body is removed.
 * A crash between any two steps leaves at most an unreferenced body, never a visible object without its
 * body. {@link BodyCollector} removes such orphans later: bodies older than a grace period that the
 * metadata does not reference. A put that would commit later than the grace period after its upload
 * started is refused (SLUICE_TIMEOUT, body removed), so the collector never removes the body of a commit
 * still to come — as long as every process uses the same grace period and clocks agree to well within it.
 *
 * What the contract deliberately leaves out: content addressing / dedup (each put has its own body, so
 * removal never needs reference counts), multipart uploads (a body is at most `Limits.maxObjectBytes`),
 * and the backends' native body stores (LMDB inline bodies, NATS Object Store), which keep their own
 * code paths: they commit or purge in the backend itself and need no collector.
 */
import { BindingError } from './errors.ts';
import type { CallOptions } from './types.ts';

/** A stored body as a listing returns it. */
export interface StoredBody {
  /** The body's ref (what the metadata stores). */
  ref: string;
  /** The sluice bucket it was written for. */
  bucket: string;
  /** The object key it was written for, or undefined when only {@link BodyStore.keyOf} can tell. */
  key: string | undefined;
  /** When it was written (the store's clock, second precision on many S3 servers). */
  created: Date;
}

/** One page of {@link BodyStore.list}. */
export interface BodyPage {
  bodies: StoredBody[];
  /** Present when more bodies follow; pass back as `token`. */
  nextToken?: string;
}

/** A store of immutable bodies, addressed by refs it hands out. */
export interface BodyStore {
  /** 's3' */
  readonly kind: string;
  /** Bodies up to this many bytes stay inline in the backend's metadata store. */
  readonly inlineMaxBytes: number;
  /**
   * The collector's grace period (ms). A put must commit within this time of starting its upload; the
   * bindings check it in the commit itself and refuse later commits with SLUICE_TIMEOUT, so the collector
   * can never remove the body of a commit still to come.
   */
  readonly graceMs: number;
  /** Stores `bytes` as a new body of object `key` in `bucket`; resolves with its ref once durable. */
  put(bucket: string, key: string, bytes: Uint8Array, options?: CallOptions): Promise<string>;
  /** Bytes `[start, end)` of a body; undefined when the body does not exist. */
  get(ref: string, range: { start: number; end: number }, options?: CallOptions): Promise<Uint8Array | undefined>;
  /** Bytes `[start, end)` as chunks (`break` releases the connection); undefined when the body does not exist. */
  getStream(ref: string, range: { start: number; end: number }, options?: CallOptions): Promise<AsyncIterable<Uint8Array> | undefined>;
  /** Removes a body; resolves also when it did not exist. */
  delete(ref: string, options?: CallOptions): Promise<void>;
  /** One page of every body in the store, in ref order. */
  list(options: { token?: string | undefined; limit: number } & CallOptions): Promise<BodyPage>;
  /** The object key a body was written for (for refs whose listing does not carry it); undefined when gone. */
  keyOf(ref: string, options?: CallOptions): Promise<string | undefined>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Options of the `s3` body store: bodies in a bucket of any S3-compatible service. */
export interface S3BodyStoreOptions {
  kind: 's3';
  /** Endpoint URL, e.g. `http://127.0.0.1:9000` (MinIO, s3rver, a sluice gateway) or `https://s3.eu-west-1.amazonaws.com`. */
  endpoint: string;
  /** The S3 bucket holding the bodies; it must exist. One sluice installation per bucket and prefix. */
  bucket: string;
  /** Access key id (from a secret; never logged). */
  accessKeyId: string;
  /** Secret access key (from a secret; never logged). */
  secretAccessKey: string;
  /** Signing region. @default 'us-east-1' */
  region?: string;
  /** Path-style addressing (`endpoint/bucket/key`), which MinIO and most self-hosted servers want. @default true */
  forcePathStyle?: boolean;
  /** Prefix of every key sluice writes in the bucket, e.g. `'sluice/'`. @default '' */
  prefix?: string;
  /**
   * Bodies up to this many bytes stay inline in the backend (in the LMDB transaction, or in the NATS
   * KV entry: at most 512 KiB there, and it must fit the server's max_payload); larger ones go to S3.
   * 0 sends every non-empty body to S3. With the nats backend this replaces `inlineBodyMaxBytes`.
   * @default 65536 (64 KiB)
   */
  inlineMaxBytes?: number;
  /**
   * The collector removes an unreferenced body only when it is older than this, in ms. A put whose
   * commit would come later than this after its upload started fails with SLUICE_TIMEOUT instead (its
   * body removed), so keep it far above the slowest upload. @default 3600000 (1 h)
   */
  gcGraceMs?: number;
  /** Interval of the periodic collector in each process that opens the backend, in ms; 0 disables it. @default 900000 (15 min) */
  gcIntervalMs?: number;
  /** Most bodies one collector run examines (the next run continues where it stopped). @default 10000 */
  gcMaxBodiesPerRun?: number;
  /** Attempts of one S3 request (the SDK's retry with backoff). @default 3 */
  maxAttempts?: number;
  /** Deadline of one S3 request attempt, in ms. @default 30000 */
  requestTimeoutMs?: number;
}

/** Options of a body store kept outside the backend (plain data: it crosses threads and processes). */
export type BodyStoreOptions = S3BodyStoreOptions;

/** {@link S3BodyStoreOptions} with defaults applied. */
export interface ResolvedS3BodyStoreOptions extends Readonly<Required<S3BodyStoreOptions>> {}

const INLINE_MAX = 512 * 1024;

/** Validates body store options at the boundary, naming the option; applies defaults. */
export function resolveBodyStoreOptions(o: unknown, where = 'bodies'): ResolvedS3BodyStoreOptions {
  const bad = (m: string) => new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: ${m}`);
  if (o === null || typeof o !== 'object') throw bad("must be an object like { kind: 's3', endpoint, bucket, accessKeyId, secretAccessKey }");
  const v = o as Record<string, unknown>;
  if (v.kind !== 's3') throw bad(`kind must be 's3', got ${JSON.stringify(v.kind)}`);
  const str = (name: string, def?: string, allowEmpty = false): string => {
    const x = v[name] ?? def;
    if (typeof x !== 'string' || (!allowEmpty && x.length === 0)) throw bad(`${name} must be a non-empty string`);
    return x;
  };
  const int = (name: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const x = v[name] ?? def;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) throw bad(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v[name])}`);
    return x;
  };
  const endpoint = str('endpoint');
  try {
    const u = new URL(endpoint);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw bad(`endpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
  }
  const forcePathStyle = v.forcePathStyle ?? true;
  if (typeof forcePathStyle !== 'boolean') throw bad('forcePathStyle must be a boolean');
  const prefix = str('prefix', '', true);
  if (prefix.length > 256) throw bad('prefix must be at most 256 characters');
  return Object.freeze({
    kind: 's3',
    endpoint,
    bucket: str('bucket'),
    accessKeyId: str('accessKeyId'),
    secretAccessKey: str('secretAccessKey'),
    region: str('region', 'us-east-1'),
    forcePathStyle,
    prefix,
    inlineMaxBytes: int('inlineMaxBytes', 64 * 1024, 0, INLINE_MAX),
    gcGraceMs: int('gcGraceMs', 3_600_000, 1),
    gcIntervalMs: int('gcIntervalMs', 900_000, 0),
    gcMaxBodiesPerRun: int('gcMaxBodiesPerRun', 10_000, 1),
    maxAttempts: int('maxAttempts', 3, 1, 20),
    requestTimeoutMs: int('requestTimeoutMs', 30_000, 1),
  });
}

/** A backend that can collect the orphans of its external body store (both backends). */
export interface CollectsBodies {
  collectBodies(options?: CollectOptions): Promise<CollectResult>;
}

/** True when `b` has {@link CollectsBodies.collectBodies}. */
export function collectsBodies(b: object): b is CollectsBodies {
  return typeof (b as Partial<CollectsBodies>).collectBodies === 'function';
}

/** Tells whether the current metadata of `key` references body `ref`. */
export type ReferenceCheck = (key: string, ref: string) => Promise<boolean>;

/** What one collector run did. */
export interface CollectResult {
  /** Bodies examined. */
  scanned: number;
  /** Unreferenced bodies past the grace period, removed. */
  deleted: number;
  /** Unreferenced bodies still inside the grace period, kept. */
  young: number;
  /** True when the run stopped at its bound with bodies left to examine. */
  more: boolean;
}

/** Options of one collector run. */
export interface CollectOptions extends CallOptions {
  /** Override of `gcGraceMs` for this run. @default the store's gcGraceMs */
  graceMs?: number;
  /** Override of `gcMaxBodiesPerRun` for this run. @default the store's gcMaxBodiesPerRun */
  maxBodies?: number;
}

/**
 * Removes bodies that no metadata references. Bounded: a run examines at most `maxBodies` bodies and
 * remembers where it stopped, so periodic runs sweep the whole store over time without ever
 * holding more than one listing page. Safe to run in several processes at once: a body, once
 * unreferenced, is never referenced again (refs are never reused), and removal is idempotent.
 */
export class BodyCollector {
  readonly #store: BodyStore;
  readonly #lookup: (bucket: string) => Promise<ReferenceCheck | undefined>;
  readonly #graceMs: number;
  readonly #maxBodies: number;
  #resume: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<CollectResult> | undefined;

  /** `lookup` gives the reference check of a bucket, or undefined for a bucket the backend does not know (its bodies are left alone). */
  constructor(store: BodyStore, lookup: (bucket: string) => Promise<ReferenceCheck | undefined>, options: { graceMs: number; maxBodies: number }) {
    this.#store = store;
    this.#lookup = lookup;
    this.#graceMs = options.graceMs;
    this.#maxBodies = options.maxBodies;
  }

  /** One bounded run over every bucket. Concurrent calls share the running run. */
  run(options: CollectOptions = {}): Promise<CollectResult> {
    this.#running ??= this.#run(options).finally(() => (this.#running = undefined));
    return this.#running;
  }

  /** Runs every `intervalMs` (first run after a random part of it, so processes started together spread out). */
  start(intervalMs: number): void {
    if (intervalMs <= 0 || this.#timer) return;
    const tick = (delay: number) => {
      this.#timer = setTimeout(() => {
        // A failed periodic run (S3 unreachable) is retried at the next tick; orphans only waste space.
        this.run().catch(() => undefined).finally(() => {
          if (this.#timer) tick(intervalMs);
        });
      }, delay);
      // Never keep a process alive for garbage collection.
      this.#timer.unref();
    };
    tick(Math.floor(Math.random() * intervalMs) + 1);
  }

  /** Stops the periodic runs and waits for a run in progress. */
  async stop(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  async #run(o: CollectOptions): Promise<CollectResult> {
    const graceMs = o.graceMs ?? this.#graceMs;
    const budget = o.maxBodies ?? this.#maxBodies;
    const signal = o.signal;
    const res: CollectResult = { scanned: 0, deleted: 0, young: 0, more: false };
    // Listing time, not the local clock, would be better; the grace period dwarfs clock skew.
    const cutoff = Date.now() - graceMs;
    const checks = new Map<string, ReferenceCheck | undefined>();
    // One listing over the whole store, resumed where the last bounded run stopped, so every body gets
    // its turn however many runs a sweep takes.
    let token = this.#resume;
    do {
      if (res.scanned >= budget) {
        this.#resume = token;
        res.more = true;
        return res;
      }
      const page = await this.#store.list({ token, limit: Math.min(1000, budget - res.scanned), ...(signal ? { signal } : {}) });
      for (const b of page.bodies) {
        res.scanned++;
        if (!checks.has(b.bucket)) checks.set(b.bucket, await this.#lookup(b.bucket));
        const check = checks.get(b.bucket);
        if (!check) continue;
        const key = b.key ?? (await this.#store.keyOf(b.ref, signal ? { signal } : {}));
        if (key === undefined) continue; // removed meanwhile
        if (await check(key, b.ref)) continue;
        if (b.created.getTime() > cutoff) {
          res.young++;
          continue;
        }
        await this.#store.delete(b.ref, signal ? { signal } : {});
        res.deleted++;
      }
      token = page.nextToken;
    } while (token !== undefined);
    this.#resume = undefined;
    return res;
  }
}
