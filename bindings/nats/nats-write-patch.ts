/**
 * The small frames of one event-loop turn in one socket write, for the connections that ask for it.
 * nats.js (@nats-io/nats-core 3.x) queues what a connection sends and hands it to the transport from a
 * microtask, i.e. after every callback that sent anything: a socket read that answered one request, a
 * timer, an I/O completion. A worker whose batches are one or two records sends a handful of small frames
 * per record (pull, direct get, CAS append, ack, checkpoint), each from a callback of its own, so each
 * left in a write(2) of its own: measured 2026-12-03 (docs/BENCHMARKS.md), socket writes were 23 % of the
 * CPU of a process putting and handling 1,000 objects/s.
 *
 * {@link corkWrites} marks one connection; the first hand-off of a turn on it corks its socket and a
 * `setImmediate` uncorks it, so the frames of every callback that runs before the loop's check phase leave
 * together in one writev(2). Once {@link CORK_MAX_BYTES} are waiting the socket is uncorked at once: under
 * load the frames are large anyway, and holding them to the end of a long turn kept the server idle
 * (measured: a worker with a handler thread lost 11 % of its throughput when every write waited).
 * Order is kept (one socket, FIFO); a frame waits at most until the loop's next check phase (it follows
 * the poll phase, and a pending immediate keeps the poll from blocking; a frame sent from an immediate
 * waits for the next iteration's check phase, which is not delayed either); `end()`
 * uncorks, `destroy()` drops what was not written as it drops any unflushed data. Other connections of
 * the process (a baseline, a user's own client) are not affected. When the installed nats-core does not
 * have this shape (another version), nothing is patched and {@link corkWrites} returns false.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

/** Bytes waiting in a corked socket past which it is written at once. */
export const CORK_MAX_BYTES = 8 * 1024;

const OPTED = Symbol('sluice.corkWrites');
const CORKED = Symbol('sluice.corked');

type CorkedSocket = Socket & { [CORKED]?: boolean };
interface ProtocolLike {
  [OPTED]?: boolean;
  transport?: { socket?: Socket };
  flushPending(): void;
}

let installed: boolean | undefined;

function uncork(s: CorkedSocket): void {
  if (s[CORKED] !== true) return;
  s[CORKED] = false;
  // Exactly one cork level is taken per corked period, so one uncork writes what waits.
  if (!s.destroyed) s.uncork();
}

/** Wraps ProtocolHandler.flushPending once per process; true when in place. */
function install(): boolean {
  if (installed !== undefined) return installed;
  installed = false;
  try {
    const internal = createRequire(import.meta.url)('@nats-io/nats-core/internal') as { ProtocolHandler?: { prototype: ProtocolLike } };
    const proto = internal.ProtocolHandler?.prototype;
    if (proto === undefined || typeof proto.flushPending !== 'function') return false;
    const flushPending = proto.flushPending;
    proto.flushPending = function (this: ProtocolLike): void {
      const s = this[OPTED] === true ? (this.transport?.socket as CorkedSocket | undefined) : undefined;
      if (s === undefined || s.destroyed || typeof s.cork !== 'function') return flushPending.call(this);
      if (s[CORKED] !== true) {
        s[CORKED] = true;
        s.cork();
        setImmediate(uncork, s);
      }
      flushPending.call(this);
      if (s.writableLength >= CORK_MAX_BYTES) uncork(s);
    };
    installed = true;
  } catch {
    // Not resolvable from here: run unpatched.
  }
  return installed;
}

/**
 * Sends what `nc` hands its socket within one event-loop turn in one write (up to {@link CORK_MAX_BYTES}).
 * Lasts for the connection's life, reconnects included (the socket is looked up at each hand-off).
 * Returns false when the installed nats.js cannot be patched (then nothing changes).
 */
export function corkWrites(nc: object): boolean {
  const protocol = (nc as { protocol?: ProtocolLike }).protocol;
  if (!install() || protocol === undefined || typeof protocol.flushPending !== 'function') return false;
  protocol[OPTED] = true;
  return true;
}
