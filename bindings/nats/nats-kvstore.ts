/**
 * A thin KV layer over the raw JetStream stream of a KV bucket (`KV_<bucket>`, subjects `$KV.<bucket>.>`),
 * wire-compatible with `@nats-io/kv` and the `nats kv` CLI.
 *
 * Why not `@nats-io/kv` itself: its `put`/`create`/`update` take no headers (the object binding writes
 * its change summary in a header so listings and change feeds can read headers only), and its
 * `delete` does not return the revision of the deletion. Everything here is the same protocol: a write
 * is one publish with `Nats-Expected-Last-Subject-Sequence` for CAS, a read is a direct get (or the
 * leader's message get) of the subject's last message, a delete is a `KV-Operation: DEL` marker.
 */
import { Empty, nanos, nuid, type MsgHdrs } from '@nats-io/nats-core';
import {
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamPublishOptions,
  RetentionPolicy,
  StorageType,
  type StoredMsg,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { JetStreamStatus } from '@nats-io/jetstream/internal';
import { drain, type NatsContext, PullStatusError, type PulledMsg } from './nats-context.ts';
import { isNoResponders, isUnknownOutcome, JsCodes } from './nats-errors.ts';
import { headersOf, NatsHeaders } from './nats-headers.ts';
import { kvStream, kvSubject } from './nats-names.ts';

/** Attempts after the first of a write that timed out (each attempt may wait the full request timeout). */
const PUT_RETRIES = 2;
/**
 * Attempts after the first of a write nobody answered (no stream leader: a leader election, a stream
 * just created, a restarted server recovering its streams). Nothing was written, so retrying is cheap;
 * with the backoff below the attempts span ≈ 3.75 s, about one leader election on a loaded cluster.
 */
const NO_LEADER_RETRIES = 4;

/** The latest message of one key. */
export interface KvRecord {
  /** Subject of the message (`$KV.<bucket>.<key>`). */
  subject: string;
  /** Stream sequence of the message: the key's revision. */
  revision: number;
  /** 'PUT' for a value, 'DEL'/'PURGE' for deletion markers. */
  op: 'PUT' | 'DEL' | 'PURGE';
  value: Uint8Array;
  headers: MsgHdrs | undefined;
  time: Date;
}

/** Header holding the KV operation of a deletion marker. */
export const KV_OPERATION = 'KV-Operation';
const EXPECTED_LAST_SUBJECT_SEQ = 'Nats-Expected-Last-Subject-Sequence';

function opOf(h: MsgHdrs | undefined): KvRecord['op'] {
  const op = h?.get(KV_OPERATION);
  return op === 'DEL' || op === 'PURGE' ? op : 'PUT';
}

/** Options of a KV bucket the backend creates. */
export interface KvBucketOptions {
  /** Messages kept per key (1..64). */
  history: number;
  replicas: number;
  /** Stored in the stream description; buckets keep their fixed configuration here. */
  description: string;
}

/** One KV bucket. */
export class KvStore {
  readonly bucket: string;
  readonly stream: string;
  readonly #ctx: NatsContext;
  /** Subject prefix of this bucket's direct gets. */
  readonly #directGet: string;
  /** The JetStream API's request timeout (what its own direct get waits). */
  readonly #timeoutMs: number;

  constructor(ctx: NatsContext, bucket: string) {
    this.#ctx = ctx;
    this.bucket = bucket;
    this.stream = kvStream(bucket);
    this.#directGet = `${ctx.apiPrefix}.DIRECT.GET.${this.stream}.`;
    this.#timeoutMs = ctx.jsm.getOptions().timeout ?? 5000;
  }

  /** Stream configuration of a KV bucket, as `@nats-io/kv` would create it on nats-server 2.9. */
  static config(bucket: string, o: KvBucketOptions): Partial<StreamConfig> & { name: string } {
    return {
      name: kvStream(bucket),
      subjects: [`$KV.${bucket}.>`],
      description: o.description,
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_msgs_per_subject: o.history,
      max_msg_size: -1,
      max_age: 0,
      discard: DiscardPolicy.New,
      allow_rollup_hdrs: true,
      deny_delete: true,
      allow_direct: true,
      num_replicas: o.replicas,
      // Every write carries a Nats-Msg-Id so that a retry after a timeout or a leader change is
      // deduplicated (see put). The window only has to outlast the retries (seconds), and the server
      // keeps every id of the window in memory: 30 s instead of the 2 min default.
      duplicate_window: nanos(30_000),
    };
  }

  /**
   * Creates the bucket's stream; when a stream of that name exists already (same or other
   * configuration) returns its info so the caller can compare the description.
   */
  static async ensure(ctx: NatsContext, bucket: string, o: KvBucketOptions): Promise<StreamInfo> {
    try {
      return await ctx.jsm.streams.add(KvStore.config(bucket, o));
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JsCodes.StreamNameInUse) return ctx.jsm.streams.info(kvStream(bucket));
      throw err;
    }
  }

  subject(key: string): string {
    return kvSubject(this.bucket, key);
  }

  /** The latest message of `key` (a value or a deletion marker), or undefined when the key never existed. */
  async get(key: string): Promise<KvRecord | undefined> {
    const subject = this.subject(key);
    if (this.#ctx.directReads) return this.#getDirect(subject);
    let sm: StoredMsg | null;
    try {
      sm = await this.#ctx.jsm.streams.getMessage(this.stream, { last_by_subj: subject });
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JsCodes.NoMessageFound) return undefined;
      throw err;
    }
    if (!sm || sm.subject !== subject) return undefined;
    return { subject, revision: sm.seq, op: opOf(sm.header), value: sm.data, headers: sm.header, time: sm.time };
  }

  /**
   * The subject's last message by direct get: the request `jsm.direct.getMessage({ last_by_subj })`
   * sends, answered the same way (not found → undefined, another status → its JetStream error), with
   * the answer's headers (its sequence, subject and time) read by {@link headersOf}.
   */
  async #getDirect(subject: string): Promise<KvRecord | undefined> {
    const r = await this.#ctx.nc.request(this.#directGet + subject, Empty, { timeout: this.#timeoutMs });
    const h = headersOf(r);
    if (h === undefined || h.code !== 0) {
      const status = new JetStreamStatus(r);
      if (status.isMessageNotFound()) return undefined;
      throw status.toError();
    }
    if (h.last('Nats-Subject') !== subject) return undefined;
    const seq = parseInt(h.last('Nats-Sequence'), 10);
    return { subject, revision: Number.isNaN(seq) ? 0 : seq, op: opOf(h), value: r.data, headers: h, time: new Date(Date.parse(h.last('Nats-Time-Stamp'))) };
  }

  /**
   * Appends a value. `expect`: undefined writes unconditionally; 0 requires that the key has no
   * message at all; n requires that the key's latest message is revision n (CAS). Returns the new
   * revision; a failed expectation rejects with JetStream error 10071.
   */
  async put(key: string, value: Uint8Array, o: { expect?: number | undefined; headers?: MsgHdrs | undefined; msgId?: string } = {}): Promise<number> {
    let h = o.headers;
    if (o.expect !== undefined) {
      h ??= new NatsHeaders();
      h.set(EXPECTED_LAST_SUBJECT_SEQ, String(o.expect));
    }
    // Expect the stream too: a write must never land in another stream that captures the subject.
    // One message id for every attempt: when an attempt landed but its answer was lost (timeout, a
    // leader change answering 503), the retry is recognised as a duplicate and answered with the first
    // attempt's sequence — a CAS retried never applies twice, nor fails on its own earlier success.
    const opts: Partial<JetStreamPublishOptions> = { expect: { streamName: this.stream }, msgID: o.msgId ?? nuid.next() };
    if (h) opts.headers = h;
    const subject = this.subject(key);
    let timeouts = 0;
    let unanswered = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await this.#ctx.gate.write(value.byteLength, `write ${subject}`, () => this.#ctx.js.publish(subject, value, opts));
        return ack.seq;
      } catch (err) {
        if (!isUnknownOutcome(err)) throw err;
        const noLeader = isNoResponders(err);
        if (noLeader) unanswered++;
        else timeouts++;
        if (timeouts > PUT_RETRIES || unanswered > NO_LEADER_RETRIES) {
          // Nobody answered even after the retries: a stream that is gone, or one still without a
          // leader. Only JetStream can tell; a missing stream surfaces as its own error (→ the
          // caller's not-found code), anything else stays "unavailable, retry later".
          if (noLeader) await this.#throwIfStreamMissing();
          throw err;
        }
        await new Promise((r) => setTimeout(r, 250 * 2 ** Math.min(attempt, 3)));
      }
    }
  }

  /** Rethrows JetStream's "stream not found" when this bucket's stream does not exist; else returns. */
  async #throwIfStreamMissing(): Promise<void> {
    try {
      await this.#ctx.jsm.streams.info(this.stream);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JsCodes.StreamNotFound) throw err;
    }
  }

  /** Appends a deletion marker (optionally CAS on `expect`); returns its revision. */
  async delete(key: string, o: { expect?: number | undefined } = {}): Promise<number> {
    const h = new NatsHeaders();
    h.set(KV_OPERATION, 'DEL');
    return this.put(key, new Uint8Array(0), { expect: o.expect, headers: h });
  }

  /**
   * The latest message of every key under `filter` (a key pattern such as `>` or `3.>`), deletion
   * markers included, unordered. `headersOnly` leaves values empty (the server sends headers only).
   * Writes racing the scan may show up with their newer message; the newest per key wins.
   */
  async scan(filter: string, o: { headersOnly?: boolean; signal?: AbortSignal | undefined } = {}): Promise<KvRecord[]> {
    for (let attempt = 0; ; attempt++) {
      const latest = new Map<string, PulledMsg>();
      try {
        await drain(
          this.#ctx,
          this.stream,
          { filter: this.subject(filter), start: 'last_per_subject', headersOnly: o.headersOnly ?? false, batch: o.headersOnly ? 10_000 : 1000, signal: o.signal },
          (m) => {
            const prev = latest.get(m.subject);
            if (!prev || prev.seq < m.seq) latest.set(m.subject, m);
          },
        );
      } catch (err) {
        // A lost delivery (consumer reset by the server) is retried once with a fresh consumer.
        if (err instanceof PullStatusError && attempt === 0) continue;
        throw err;
      }
      const out: KvRecord[] = [];
      for (const m of latest.values())
        out.push({ subject: m.subject, revision: m.seq, op: opOf(m.headers), value: m.data, headers: m.headers, time: m.time });
      return out;
    }
  }
}
