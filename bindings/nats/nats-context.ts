/**
 * What every NATS binding shares: the connection and JetStream handles, the resolved options, and the
 * low-level pull protocol.
 *
 * Why a hand-written pull: nats.js v3's `consumer.fetch()` insists on `expires >= 1000ms`, but
 * `getRecords({maxWaitMs: 0})` must return at once, and scans must stop exactly when the consumer has
 * nothing more. JetStream's pull request (`$JS.API.CONSUMER.MSG.NEXT`, ADR-13) with `no_wait` does
 * both, on nats-server 2.9: the server delivers what is there and ends the request with a 404/408 status.
 */
import type { ConnectionGate } from './nats-gate.ts';
import { createInbox, nanos, nuid, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import type { ConsumerConfig, JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { AckPolicy, DeliverPolicy, JetStreamApiError, ReplayPolicy } from '@nats-io/jetstream';
import { BindingError } from '../errors.ts';
import { JsCodes } from './nats-errors.ts';
import { headersOf } from './nats-headers.ts';
import { consumerName, type NatsNames } from './nats-names.ts';

/** Resolved backend state handed to every binding. */
export interface NatsContext {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly names: NatsNames;
  /** JetStream API prefix (`$JS.API` unless a domain is used). */
  readonly apiPrefix: string;
  readonly replicas: number;
  readonly inlineBodyMaxBytes: number;
  /**
   * Read single entries with direct get (any replica answers, fast) or with the leader's
   * STREAM.MSG.GET (read-your-writes in a cluster). Direct only on a single (unclustered) server.
   */
  readonly directReads: boolean;
  /** Bounds writes buffered while disconnected (see nats-gate.ts). */
  readonly gate: ConnectionGate;
}

/** A stream resolved to its JetStream stream and fixed configuration. */
export interface StreamTarget {
  name: string;
  jsStream: string;
  shards: number;
  retentionMs: number;
  /** Changes with every re-creation of the stream (see `incarnationOf`). */
  incarnation: string;
  /** Set for a change stream: its bucket and the bucket's KV bucket. */
  bucket: string | undefined;
  kvBucket: string | undefined;
  /** Subject filter of one shard. */
  filter(shard: number): string;
}

/** One message delivered by a pull. */
export interface PulledMsg {
  subject: string;
  /** Stream sequence. */
  seq: number;
  /** Consumer (delivery) sequence: consecutive for one consumer unless deliveries were lost. */
  deliverySeq: number;
  /** Messages the consumer still has to deliver after this one. */
  pending: number;
  time: Date;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
}

/** A pull that ended in an unexpected status (consumer deleted, no responders, …). */
export class PullStatusError extends Error {
  readonly status: number;
  constructor(status: number, description: string) {
    super(`pull ended with status ${status} ${description}`);
    this.name = 'PullStatusError';
    this.status = status;
  }
}

/**
 * Parses a JetStream ack subject: v1 `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>`
 * or v2 `$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<token>]`.
 */
export function parseAckSubject(reply: string): { seq: number; deliverySeq: number; timeNs: bigint; pending: number } | undefined {
  const t = reply.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  const o = t.length === 9 ? 2 : t.length >= 11 ? 4 : -1;
  if (o < 0) return undefined;
  const seq = Number(t[o + 3]);
  const deliverySeq = Number(t[o + 4]);
  const pending = Number(t[o + 6]);
  const tm = t[o + 5] ?? '0';
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(deliverySeq) || !Number.isSafeInteger(pending) || !/^\d+$/.test(tm)) return undefined;
  return { seq, deliverySeq, timeNs: BigInt(tm), pending };
}

/** Options of one pull request. */
export interface PullRequest {
  batch: number;
  /** Wait up to this long for `batch` messages; without it the request ends as soon as nothing is left (no_wait). */
  expiresMs?: number;
  signal?: AbortSignal | undefined;
  /**
   * Silence (no message, no status) past `expiresMs` after which the client stops waiting and asks
   * whether the consumer still exists: a pull to a vanished consumer gets no answer at all (the
   * account's JetStream API import swallows it), so only this tells it from a slow server. @default 3000
   */
  graceMs?: number;
}

/**
 * Sends one pull request to a pull consumer and collects its messages until the batch is full or the
 * server ends the request (404 no messages / 408 request timeout). Any other status rejects with
 * {@link PullStatusError}; the caller then discards the consumer (deliveries may have been lost).
 */
export function pull(ctx: NatsContext, stream: string, consumer: string, req: PullRequest): Promise<PulledMsg[]> {
  return new Promise<PulledMsg[]>((resolve, reject) => {
    const msgs: PulledMsg[] = [];
    const inbox = createInbox();
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(silence);
      req.signal?.removeEventListener('abort', onAbort);
      sub.unsubscribe();
      if (err === undefined) resolve(msgs);
      else reject(err);
    };
    const onAbort = () => finish(new BindingError('SLUICE_ABORTED', `reading stream ${stream} was aborted`, { cause: req.signal?.reason }));
    const sub = ctx.nc.subscribe(inbox, {
      callback: (err, m) => {
        if (err) return finish(err);
        const headers = headersOf(m);
        const code = headers?.code ?? 0;
        if (code !== 0 && m.data.length === 0 && !m.reply) {
          // Status messages: 100 heartbeat (not requested; ignore), 404/408 end of request.
          if (code === 100) return;
          if (code === 404 || code === 408) return finish();
          return finish(new PullStatusError(code, headers?.description ?? ''));
        }
        const info = parseAckSubject(m.reply ?? '');
        if (!info) return finish(new PullStatusError(0, `unexpected delivery without an ack subject on ${m.subject}`));
        silence.refresh();
        msgs.push({
          subject: m.subject,
          seq: info.seq,
          deliverySeq: info.deliverySeq,
          pending: info.pending,
          time: new Date(Number(info.timeNs / 1_000_000n)),
          headers,
          data: m.data,
        });
        if (msgs.length >= req.batch) finish();
      },
    });
    const body: Record<string, unknown> = { batch: req.batch };
    if (req.expiresMs !== undefined && req.expiresMs > 0) body.expires = nanos(req.expiresMs);
    else body.no_wait = true;
    const grace = req.graceMs ?? 3000;
    const silence = setTimeout(() => {
      // Waiting longer would only help a server that is alive but slow; a missing consumer never answers.
      silence.unref();
      void consumerGone(ctx, stream, consumer).then((gone) =>
        finish(gone ? new PullStatusError(404, `consumer ${consumer} no longer exists`) : new BindingError('SLUICE_TIMEOUT', `pull from stream ${stream} got no answer within ${grace} ms`)),
      );
    }, (req.expiresMs ?? 0) + grace);
    if (req.signal) {
      if (req.signal.aborted) return onAbort();
      req.signal.addEventListener('abort', onAbort, { once: true });
    }
    try {
      ctx.nc.publish(`${ctx.apiPrefix}.CONSUMER.MSG.NEXT.${stream}.${consumer}`, JSON.stringify(body), { reply: inbox });
    } catch (err) {
      finish(err);
    }
  });
}

/** True when the consumer (or its stream) does not exist; false when it does or NATS cannot tell. */
async function consumerGone(ctx: NatsContext, stream: string, consumer: string): Promise<boolean> {
  try {
    await ctx.jsm.consumers.info(stream, consumer);
    return false;
  } catch (err) {
    return err instanceof JetStreamApiError && (err.code === JsCodes.ConsumerNotFound || err.code === JsCodes.StreamNotFound);
  }
}

/**
 * Sequence of the last message on a subject filter, or of the first at or after `seq`; undefined when
 * there is none. Read from the stream leader when R > 1 (see {@link NatsContext.directReads}).
 */
export async function seqOf(ctx: NatsContext, jsStream: string, q: { last_by_subj: string } | { next_by_subj: string; seq: number }): Promise<number | undefined> {
  if (ctx.directReads) return (await ctx.jsm.direct.getMessage(jsStream, q))?.seq;
  try {
    return (await ctx.jsm.streams.getMessage(jsStream, q))?.seq;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JsCodes.NoMessageFound) return undefined;
    throw err;
  }
}

/** Where an ephemeral consumer starts. */
export type ConsumerStart = { seq: number } | { time: Date } | 'last_per_subject';

/** Creates an ephemeral pull consumer (ack none, in memory, removed by the server after `idleMs` without pulls). */
export async function createEphemeral(
  ctx: NatsContext,
  stream: string,
  opts: { kind: 'read' | 'scan' | 'seek'; filter: string; start: ConsumerStart; headersOnly?: boolean; idleMs?: number },
): Promise<string> {
  const name = consumerName(opts.kind, nuid.next());
  const cfg: Partial<ConsumerConfig> = {
    name,
    ack_policy: AckPolicy.None,
    replay_policy: ReplayPolicy.Instant,
    filter_subject: opts.filter,
    inactive_threshold: nanos(opts.idleMs ?? 60_000),
    mem_storage: true,
    num_replicas: 1,
    headers_only: opts.headersOnly ?? false,
  };
  if (opts.start === 'last_per_subject') cfg.deliver_policy = DeliverPolicy.LastPerSubject;
  else if ('seq' in opts.start) {
    cfg.deliver_policy = DeliverPolicy.StartSequence;
    cfg.opt_start_seq = Math.max(1, opts.start.seq);
  } else {
    cfg.deliver_policy = DeliverPolicy.StartTime;
    cfg.opt_start_time = opts.start.time.toISOString();
  }
  await ctx.jsm.consumers.add(stream, cfg);
  return name;
}

/** Deletes a consumer; failures are ignored (the server removes idle ephemerals anyway). */
export async function deleteConsumer(ctx: NatsContext, stream: string, name: string): Promise<void> {
  try {
    if (!ctx.nc.isClosed()) await ctx.jsm.consumers.delete(stream, name);
  } catch {
    // best effort: inactive_threshold reaps it
  }
}

/**
 * Reads every message an ephemeral consumer delivers, from the start position until it has nothing
 * more, in batches of `batch`; then deletes the consumer. For scans (`last_per_subject`) and seeks.
 */
export async function drain(
  ctx: NatsContext,
  stream: string,
  opts: { filter: string; start: ConsumerStart; headersOnly?: boolean; batch?: number; max?: number; signal?: AbortSignal | undefined },
  onMsg: (m: PulledMsg) => void,
): Promise<number> {
  const name = await createEphemeral(ctx, stream, { kind: opts.start === 'last_per_subject' ? 'scan' : 'seek', filter: opts.filter, start: opts.start, headersOnly: opts.headersOnly ?? false, idleMs: 30_000 });
  let n = 0;
  let expected = 1;
  try {
    for (;;) {
      const want = Math.min(opts.batch ?? 2000, (opts.max ?? Infinity) - n);
      if (want <= 0) break;
      const got = await pull(ctx, stream, name, { batch: want, signal: opts.signal });
      for (const m of got) {
        // Deliveries of one consumer are consecutive; a gap means the server lost track of us.
        if (m.deliverySeq !== expected) throw new PullStatusError(0, `delivery ${m.deliverySeq} arrived, ${expected} expected`);
        expected++;
        onMsg(m);
      }
      n += got.length;
      const last = got[got.length - 1];
      if (!last || last.pending === 0) break;
    }
  } finally {
    await deleteConsumer(ctx, stream, name);
  }
  return n;
}

/**
 * Pause before retrying an optimistic write that lost its CAS: none after the first loss (contention
 * is usually a single collision), then full jitter up to min(2^attempt, 100) ms, so that writers of one
 * hot key stop colliding in lockstep and each gets its turn within the attempt bound.
 */
export async function casBackoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
  if (attempt === 0) return;
  const ms = Math.random() * Math.min(2 ** attempt, 100);
  await new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
