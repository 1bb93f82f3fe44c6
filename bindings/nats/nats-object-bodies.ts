/**
 * Where the NATS backend keeps object bodies above the inline bound: the bucket's Object Store, or the
 * backend's external body store (option `bodies`). Upload before the commit, removal after it (see the
 * protocol in nats-object.ts and body-store.ts), and the chunk readers of large bodies.
 */
import { nuid } from '@nats-io/nats-core';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { BodyStore } from '../body-store.ts';
import { BindingError } from '../errors.ts';
import type { NatsContext } from './nats-context.ts';
import { toBindingError } from './nats-errors.ts';
import { encodeKey } from './nats-names.ts';

/** A body's place: inline (none of these), in the Object Store (name + nuid) or in the external store (ref). */
export interface BodyPlace {
  bodyName?: string | undefined;
  bodyNuid?: string | undefined;
  bodyRef?: string | undefined;
}

/** The body stores of one bucket. */
export class ObjectBodies {
  readonly #ctx: NatsContext;
  readonly storeName: string;
  readonly external: BodyStore | undefined;
  #store: Promise<ObjectStore> | undefined;

  constructor(ctx: NatsContext, storeName: string, external: BodyStore | undefined) {
    this.#ctx = ctx;
    this.storeName = storeName;
    this.external = external;
  }

  /** The bucket's Object Store. */
  store(): Promise<ObjectStore> {
    // Opened without a round trip: createBucket made the store, and a missing one fails the read.
    this.#store ??= new Objm(this.#ctx.js).open(this.storeName, false);
    return this.#store;
  }

  /** Uploads a body to the Object Store under a fresh name. */
  async upload(key: string, bytes: Uint8Array): Promise<{ name: string; nuid: string }> {
    const name = `${encodeKey(key)}/${nuid.next()}`;
    const info = await (await this.store()).putBlob({ name }, bytes);
    return { name, nuid: info.nuid };
  }

  /** The external body store; SLUICE_BACKEND_UNAVAILABLE when the backend was opened without one. */
  externalFor(where: string): BodyStore {
    if (this.external) return this.external;
    throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', `${where}: the body is in an external body store, but the backend was opened without option 'bodies'`);
  }

  /** Removes a body's chunks and its Object Store entry (or the external body), leaving no tombstone. Best effort. */
  async delete(e: BodyPlace | undefined): Promise<void> {
    if (e?.bodyRef !== undefined) {
      // A failed removal leaves an orphan for the body store's collector.
      await this.external?.delete(e.bodyRef).catch(() => undefined);
      return;
    }
    if (!e?.bodyName || !e.bodyNuid) return;
    const stream = `OBJ_${this.storeName}`;
    try {
      await Promise.all([
        this.#ctx.jsm.streams.purge(stream, { filter: `$O.${this.storeName}.C.${e.bodyNuid}` }),
        this.#ctx.jsm.streams.purge(stream, { filter: bodyMetaSubject(this.storeName, e.bodyName) }),
      ]);
    } catch {
      // An unreferenced body wastes space but is never visible; nothing else to do here.
    }
  }
}

/** The Object Store subject of an object's metadata (the store's padded base64url of the name). */
function bodyMetaSubject(store: string, name: string): string {
  return `$O.${store}.M.${Buffer.from(name, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_')}`;
}


/** A body of one chunk (none when empty). */
export async function* oneChunk(chunk: Uint8Array): AsyncIterable<Uint8Array> {
  if (chunk.byteLength > 0) yield chunk;
}

/** Yields the bytes [start, end) of a chunk stream. */
export async function* sliceChunks(data: ReadableStream<Uint8Array>, start: number, end: number, where: string): AsyncIterable<Uint8Array> {
  const reader = data.getReader();
  let pos = 0;
  try {
    while (pos < end) {
      const r = await reader.read().catch((err: unknown) => {
        throw toBindingError(err, where, { notFound: 'SLUICE_NOT_FOUND' });
      });
      if (r.done) break;
      const c = r.value;
      const from = Math.max(0, start - pos);
      const to = Math.min(c.byteLength, end - pos);
      pos += c.byteLength;
      if (to > from) yield c.subarray(from, to);
    }
  } finally {
    // `break` in the consumer's loop lands here: stop the Object Store's consumer.
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
