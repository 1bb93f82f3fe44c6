/**
 * Bounded buffering while NATS is away. nats.js keeps the connection's outbound buffer growing while
 * it reconnects (with `maxReconnectAttempts: -1` it reconnects forever): every write made during an
 * outage is kept in memory until the server is back, with no bound. The gate counts the writes (and
 * their bytes) that are in flight while the connection is down, and refuses new ones past the bound
 * with SLUICE_BACKEND_UNAVAILABLE, at once — so a caller learns it, nothing is buffered without limit,
 * and nothing is dropped silently: a write the gate admitted either completes or fails with its own
 * code (SLUICE_TIMEOUT when the server did not answer in time).
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { BindingError } from '../errors.ts';

/** Bounds of the {@link ConnectionGate}. */
export interface GateOptions {
  /** Most writes in flight while disconnected. @default 1000 */
  maxBufferedWrites?: number;
  /** Most bytes of writes in flight while disconnected. @default 8388608 (8 MiB) */
  maxBufferedBytes?: number;
}

export class ConnectionGate {
  readonly #maxWrites: number;
  readonly #maxBytes: number;
  /** Epoch ms of the disconnect, while disconnected. */
  #downSince: number | undefined;
  #inflight = 0;
  #inflightBytes = 0;

  constructor(nc: NatsConnection, o: GateOptions = {}) {
    this.#maxWrites = o.maxBufferedWrites ?? 1000;
    this.#maxBytes = o.maxBufferedBytes ?? 8 * 1024 * 1024;
    if (!Number.isInteger(this.#maxWrites) || this.#maxWrites < 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `nats backend: maxBufferedWrites must be a non-negative integer, got ${JSON.stringify(o.maxBufferedWrites)}`);
    if (!Number.isInteger(this.#maxBytes) || this.#maxBytes < 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `nats backend: maxBufferedBytes must be a non-negative integer, got ${JSON.stringify(o.maxBufferedBytes)}`);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnecting') this.#downSince ??= Date.now();
        else if (s.type === 'reconnect') this.#downSince = undefined;
      }
    })().catch(() => undefined);
  }

  /** True while the connection is down. */
  get disconnected(): boolean {
    return this.#downSince !== undefined;
  }

  /** Runs a write of `bytes` through the gate (see the header). */
  async write<T>(bytes: number, where: string, fn: () => Promise<T>): Promise<T> {
    if (this.#downSince !== undefined && (this.#inflight + 1 > this.#maxWrites || this.#inflightBytes + bytes > this.#maxBytes))
      throw new BindingError(
        'SLUICE_BACKEND_UNAVAILABLE',
        `${where}: NATS has been unreachable for ${Date.now() - this.#downSince} ms and ${this.#inflight} writes (${this.#inflightBytes} bytes) already wait for it; refused, retry later`,
      );
    this.#inflight++;
    this.#inflightBytes += bytes;
    try {
      return await fn();
    } finally {
      this.#inflight--;
      this.#inflightBytes -= bytes;
    }
  }
}
