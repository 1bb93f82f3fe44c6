/**
 * NATS message headers, read and written by sluice itself. nats.js's `MsgHdrsImpl` answers every
 * `get` by building an array of all keys and filtering it, validates and re-canonicalises each key on
 * every `set`, and decodes a message's header block by splitting it into an array of lines and
 * appending each through that same validation. On the NATS event path each record's headers are
 * decoded twice (its change-feed delivery and the direct get of its entry) and written once (the
 * commit's CAS put): that was 16 µs of main-thread CPU per event, ≈ 9 % of the worker's (measured
 * 2026-12-03, docs/BENCHMARKS.md), plus the garbage it left.
 *
 * {@link NatsHeaders} implements nats.js's `MsgHdrs` (so it goes wherever nats.js takes headers: the
 * client calls `encode()` when it publishes) over one `Map` of value arrays, with the same results:
 * the same matching rules (`Match.Exact`, `CanonicalMIME`, `IgnoreCase`), the same validation of what
 * is written (a key of printable ASCII without ':', a value without CR or LF, trimmed), the same
 * status line and wire bytes. {@link headersOf} reads a received message's header block straight from
 * the bytes nats.js received, without touching its `headers` getter.
 */
import { canonicalMIMEHeaderKey, InvalidArgumentError, Match, type Msg, type MsgHdrs } from '@nats-io/nats-core';

const STATUS_LINE = 'NATS/1.0';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Throws unless `k` is a valid header name (printable ASCII, no ':'). */
function checkKey(k: string): void {
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if (c === 58 || c < 33 || c > 126) throw InvalidArgumentError.format('header', `'${k[i]}' is not a valid character in a header name`);
  }
}

/** A header value as written: no CR or LF, trimmed. */
function checkValue(v: string): string {
  if (v.includes('\r') || v.includes('\n')) throw InvalidArgumentError.format('header', 'values cannot contain \\r or \\n');
  return v.trim();
}

/** Message headers with nats.js's `MsgHdrs` behaviour, without its per-call allocations. */
export class NatsHeaders implements MsgHdrs {
  readonly #values = new Map<string, string[]>();
  #code: number;
  #description: string;

  constructor(code = 0, description = '') {
    this.#code = code;
    this.#description = description;
  }

  /** Decodes a header block (`NATS/1.0[ code description]\r\nKey: value\r\n…`) as received. */
  static decode(bytes: Uint8Array): NatsHeaders {
    const s = decoder.decode(bytes);
    let eol = s.indexOf('\r\n');
    if (eol < 0) eol = s.length;
    const h = new NatsHeaders();
    const first = s.slice(0, eol);
    if (first !== STATUS_LINE) {
      // A status line: `NATS/1.0 404 No Messages` (also tolerates extra spaces, as nats.js does).
      let rest = first.replace(STATUS_LINE, '').trim();
      if (rest.length > 0) {
        const code = parseInt(rest, 10);
        h.#code = Number.isNaN(code) ? 0 : code;
        rest = rest.replace(String(h.#code), '');
        h.#description = rest.trim();
      }
    }
    for (let at = eol + 2; at < s.length; ) {
      let end = s.indexOf('\r\n', at);
      if (end < 0) end = s.length;
      const colon = s.indexOf(':', at);
      if (colon > at && colon < end) {
        const k = s.slice(at, colon);
        const v = s.slice(colon + 1, end).trim();
        const a = h.#values.get(k);
        if (a === undefined) h.#values.set(k, [v]);
        else a.push(v);
      }
      at = end + 2;
    }
    return h;
  }

  get code(): number {
    return this.#code;
  }

  get description(): string {
    return this.#description;
  }

  get hasError(): boolean {
    return this.#code >= 300;
  }

  get status(): string {
    return `${this.#code} ${this.#description}`.trim();
  }

  [Symbol.iterator](): IterableIterator<[string, string[]]> {
    return this.#values.entries();
  }

  /** The stored key `k` matches (the first one), or undefined. */
  #find(k: string, match: Match): string | undefined {
    if (match === Match.Exact) return this.#values.has(k) ? k : undefined;
    if (match === Match.CanonicalMIME) {
      const c = canonicalMIMEHeaderKey(k);
      return this.#values.has(c) ? c : undefined;
    }
    const lower = k.toLowerCase();
    for (const key of this.#values.keys()) if (key.toLowerCase() === lower) return key;
    return undefined;
  }

  /** Every stored key `k` matches. */
  #findAll(k: string, match: Match): string[] {
    if (match !== Match.IgnoreCase) {
      const key = this.#find(k, match);
      return key === undefined ? [] : [key];
    }
    const lower = k.toLowerCase();
    return [...this.#values.keys()].filter((key) => key.toLowerCase() === lower);
  }

  get(k: string, match: Match = Match.Exact): string {
    const key = this.#find(k, match);
    return key === undefined ? '' : (this.#values.get(key)?.[0] ?? '');
  }

  last(k: string, match: Match = Match.Exact): string {
    const key = this.#find(k, match);
    const a = key === undefined ? undefined : this.#values.get(key);
    return a === undefined || a.length === 0 ? '' : (a[a.length - 1] as string);
  }

  has(k: string, match: Match = Match.Exact): boolean {
    return this.#find(k, match) !== undefined;
  }

  keys(): string[] {
    return [...this.#values.keys()];
  }

  values(k: string, match: Match = Match.Exact): string[] {
    const out: string[] = [];
    for (const key of this.#findAll(k, match)) out.push(...(this.#values.get(key) as string[]));
    return out;
  }

  set(k: string, v: string, match: Match = Match.Exact): void {
    this.delete(k, match);
    this.append(k, v, match);
  }

  append(k: string, v: string, match: Match = Match.Exact): void {
    if (match === Match.CanonicalMIME) k = canonicalMIMEHeaderKey(k);
    else checkKey(k);
    const key = this.#find(k, match) ?? k;
    const value = checkValue(v);
    const a = this.#values.get(key);
    if (a === undefined) this.#values.set(key, [value]);
    else a.push(value);
  }

  delete(k: string, match: Match = Match.Exact): void {
    for (const key of this.#findAll(k, match)) this.#values.delete(key);
  }

  /** The header block as sent: empty when there is neither a header nor a status. */
  toString(): string {
    if (this.#values.size === 0 && this.#code === 0) return '';
    let s = STATUS_LINE;
    if (this.#code > 0 && this.#description !== '') s += ` ${this.#code} ${this.#description}`;
    for (const [k, a] of this.#values) for (const v of a) s += `\r\n${k}: ${v}`;
    return `${s}\r\n\r\n`;
  }

  /** The wire bytes (what nats.js's publish calls on the headers it is given). */
  encode(): Uint8Array {
    return encoder.encode(this.toString());
  }
}

/** The parts of nats.js's received message (`MsgImpl`) that hold its raw header block. */
interface RawMsg {
  _rdata: Uint8Array;
  _msg: { hdr: number };
}

/** True when this nats.js's received messages expose their raw header block ({@link headersOf} reads it). */
export function readsRawHeaders(m: Msg): boolean {
  const raw = m as unknown as Partial<RawMsg>;
  return typeof raw._msg?.hdr === 'number' && raw._rdata instanceof Uint8Array;
}

/**
 * The headers of a received message, decoded by {@link NatsHeaders.decode} from the bytes nats.js
 * received; undefined when it has none. A message of another shape (another nats.js version) is read
 * through its own `headers`.
 */
export function headersOf(m: Msg): MsgHdrs | undefined {
  if (!readsRawHeaders(m)) return m.headers;
  const { _msg, _rdata } = m as unknown as RawMsg;
  return _msg.hdr > -1 ? NatsHeaders.decode(_rdata.subarray(0, _msg.hdr)) : undefined;
}
