/**
 * Durable consumer groups on NATS: one committed position per shard, a KV entry in `<prefix>_meta`
 * under `group.<stream>.<incarnation>.<group>.<shard>` (stream and group base64url-encoded), updated
 * with a CAS so that concurrent committers never move a position backwards.
 *
 * Why not a JetStream durable consumer: a group position must be readable and settable by any process
 * (handoff between pods commits, the new owner reads), per shard, and never move backwards — a KV CAS
 * gives exactly that; a durable consumer's ack floor cannot be set to an arbitrary sequence on 2.9.
 */
import { BindingError } from '../errors.ts';
import { checkShard, checkSignal } from '../backend-helpers.ts';
import type { CallOptions, ConsumerGroup, Cursor } from '../types.ts';
import { utf8Length } from '../values.ts';
import { isWrongLastSequence, toBindingError } from './nats-errors.ts';
import type { KvStore } from './nats-kvstore.ts';
import { encodeKey, streamToken } from './nats-names.ts';
import { casBackoff, type StreamTarget } from './nats-context.ts';

/** What a group needs of the stream binding. */
export interface Seeker {
  seek(name: string, shard: number, position: 'earliest', options?: CallOptions): Promise<Cursor>;
}

/** Optimistic attempts of one commit before SLUICE_CONFLICT. */
const MAX_ATTEMPTS = 100;

/** Group names: non-empty, at most 255 UTF-8 bytes, no control characters. */
export function checkGroupName(group: unknown, where: string): asserts group is string {
  // eslint-disable-next-line no-control-regex
  if (typeof group !== 'string' || group.length === 0 || utf8Length(group) > 255 || /[\u0000-\u001f\u007f]/.test(group))
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: group name must be a non-empty string of at most 255 bytes without control characters`);
}

/** One consumer group of one stream incarnation. */
export class NatsGroup implements ConsumerGroup {
  readonly stream: string;
  readonly group: string;
  readonly #streams: Seeker;
  readonly #meta: KvStore;
  readonly #target: StreamTarget;

  constructor(streams: Seeker, meta: KvStore, target: StreamTarget, group: string) {
    this.#streams = streams;
    this.#meta = meta;
    this.#target = target;
    this.stream = target.name;
    this.group = group;
  }

  async position(shard: number, options?: CallOptions): Promise<Cursor> {
    const where = `position of group '${this.group}' on stream '${this.stream}' shard ${String(shard)}`;
    checkSignal(options?.signal, where);
    checkShard(this.stream, shard, this.#target.shards);
    try {
      const stored = await this.#read(shard);
      if (stored && stored.seq >= 0) return { stream: this.stream, shard, seq: stored.seq };
      return await this.#streams.seek(this.stream, shard, 'earliest', options);
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async commit(cursor: Cursor, options?: CallOptions): Promise<Cursor> {
    const where = `commit of group '${this.group}' on stream '${this.stream}'`;
    checkSignal(options?.signal, where);
    const c = cursor as Partial<Cursor> | null;
    if (c === null || typeof c !== 'object' || c.stream !== this.stream || typeof c.seq !== 'number' || !Number.isSafeInteger(c.seq) || c.seq < 0)
      throw new BindingError('SLUICE_CURSOR_INVALID', `${where}: cursor ${JSON.stringify(cursor)} is not a cursor of stream '${this.stream}'`);
    checkShard(this.stream, c.shard, this.#target.shards);
    const shard = c.shard;
    try {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        checkSignal(options?.signal, where);
        await casBackoff(attempt, options?.signal);
        const stored = await this.#read(shard);
        // Positions never move backwards: an older (or equal) cursor returns what is stored.
        if (stored && stored.seq >= c.seq) return { stream: this.stream, shard, seq: stored.seq };
        try {
          await this.#meta.put(this.#key(shard), Buffer.from(JSON.stringify({ seq: c.seq })), { expect: stored?.revision ?? 0 });
          return { stream: this.stream, shard, seq: c.seq };
        } catch (err) {
          if (!isWrongLastSequence(err)) throw err;
        }
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent committers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  #key(shard: number): string {
    return `group.${streamToken(this.stream)}.${this.#target.incarnation}.${encodeKey(this.group)}.${shard}`;
  }

  /** The stored position, with the revision to CAS on; undefined when nothing was committed. */
  async #read(shard: number): Promise<{ seq: number; revision: number } | undefined> {
    const rec = await this.#meta.get(this.#key(shard));
    if (!rec) return undefined;
    if (rec.op !== 'PUT') return { seq: -1, revision: rec.revision };
    const v = JSON.parse(Buffer.from(rec.value).toString('utf8')) as { seq: number };
    return { seq: v.seq, revision: rec.revision };
  }
}
