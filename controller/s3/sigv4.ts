/**
 * AWS Signature Version 4 as S3 verifies it: the `Authorization` header form and the presigned query
 * form. The canonical request is rebuilt from the request exactly as received (raw headers, raw query),
 * because each client encodes slightly differently and the signature covers its own encoding; the one
 * place clients disagree (whether the path is sent re-encoded) is tried both ways.
 *
 * Signing keys are derived once per (secret, day, region) and cached: the chain of four HMACs costs more
 * than the signature check itself.
 */
import * as crypto from 'node:crypto';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AccessKey } from './credentials.ts';
import { S3Error } from './s3-errors.ts';

export const ALGORITHM = 'AWS4-HMAC-SHA256';
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const STREAMING_SIGNED = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';
export const STREAMING_SIGNED_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER';
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';

/** How the request body is covered by the signature. */
export type PayloadMode =
  | { type: 'signed'; sha256: string }
  | { type: 'unsigned' }
  /** aws-chunked with per-chunk signatures (optionally a signed trailer). */
  | { type: 'streaming-signed'; trailer: boolean }
  /** aws-chunked without chunk signatures, with a checksum trailer. */
  | { type: 'streaming-unsigned-trailer' };

/** A verified request's identity and what the body verification needs. */
export interface AuthContext {
  key: AccessKey;
  payload: PayloadMode;
  /** Derived signing key (for chunk signatures). */
  signingKey: Buffer;
  /** `x-amz-date` value, e.g. 20130524T000000Z. */
  amzDate: string;
  /** `<day>/<region>/s3/aws4_request`. */
  scope: string;
  /** The request signature (seed of the chunk signature chain). */
  signature: string;
  /** True for presigned (query) authentication. */
  presigned: boolean;
}

/** What the verifier needs from the gateway. */
export interface SigV4Options {
  /** Looks up a key by its access key id. */
  lookup(accessKeyId: string): AccessKey | undefined;
  /** Largest accepted clock difference. */
  maxSkewMs: number;
  /** Longest presigned URL lifetime accepted, in seconds (S3: 7 days). */
  maxPresignExpiresS: number;
  /** Current time (tests). */
  now(): number;
}

const keyCache = new Map<string, Buffer>();

/** `crypto.hash` where the runtime has it (added in Node 20.12; package.json allows older 20.x). */
const oneShot = (crypto as { hash?: (alg: string, data: string | Uint8Array, enc: 'hex') => string }).hash;

/** The SigV4 signing key of `secret` for one day, region and service. */
export function signingKey(secret: string, day: string, region: string, service = 's3'): Buffer {
  const id = `${secret}\0${day}\0${region}\0${service}`;
  let k = keyCache.get(id);
  if (k === undefined) {
    const kDate = createHmac('sha256', `AWS4${secret}`).update(day).digest();
    const kRegion = createHmac('sha256', kDate).update(region).digest();
    const kService = createHmac('sha256', kRegion).update(service).digest();
    k = createHmac('sha256', kService).update('aws4_request').digest();
    // Bounded: a day's worth of keys × regions; clear rather than track recency.
    if (keyCache.size > 256) keyCache.clear();
    keyCache.set(id, k);
  }
  return k;
}

export function hmacHex(key: Buffer, s: string): string {
  return createHmac('sha256', key).update(s).digest('hex');
}

export function sha256Hex(s: string | Uint8Array): string {
  // The one-shot `hash` (Node ≥ 20.12) is half the cost of a Hash object for a short input.
  return oneShot !== undefined ? oneShot('sha256', s, 'hex') : createHash('sha256').update(s).digest('hex');
}

/** RFC 3986 encoding as SigV4 wants it (unreserved kept, everything else %XX upper-case). */
export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The canonical query string from a raw query, leaving out `skip` (X-Amz-Signature of a presigned URL). */
export function canonicalQuery(rawQuery: string, skip?: string): string {
  if (rawQuery === '') return '';
  const pairs: [string, string][] = [];
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const i = part.indexOf('=');
    const k = uriEncode(safeDecode(i < 0 ? part : part.slice(0, i)));
    if (k === skip) continue;
    pairs.push([k, uriEncode(safeDecode(i < 0 ? '' : part.slice(i + 1)))]);
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

/** Whitespace a header value must have collapsed before signing (anything but single spaces). */
const FOLDABLE = /[^\S ]| {2}/;

/**
 * Canonical headers block from the raw headers as received. Runs on every request: a linear scan of the
 * signed names (a handful) beats building a Set and a Map per request, and values without runs of
 * whitespace skip the regex replace.
 */
function canonicalHeaders(req: IncomingMessage, signed: readonly string[]): string {
  const values: (string | undefined)[] = new Array<string | undefined>(signed.length);
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const at = signed.indexOf(raw[i]!.toLowerCase());
    if (at < 0) continue;
    let v = raw[i + 1]!.trim();
    if (FOLDABLE.test(v)) v = v.replace(/\s+/g, ' ');
    const prev = values[at];
    values[at] = prev === undefined ? v : `${prev},${v}`;
  }
  let out = '';
  for (let i = 0; i < signed.length; i++) {
    // A name listed twice in SignedHeaders holds its value at its first place (indexOf above).
    const v = values[i] ?? values[signed.indexOf(signed[i]!)];
    if (v === undefined) throw new S3Error('AccessDenied', `header '${signed[i]}' is signed but absent from the request`);
    out += `${signed[i]}:${v}\n`;
  }
  return out;
}

/** A path of unreserved characters and slashes only: the same whether re-encoded or not. */
const PLAIN_PATH = /^[A-Za-z0-9\-._~/]*$/;

/** The two forms of the canonical URI clients use: the path as sent, and the path re-encoded per segment. */
function canonicalUris(rawPath: string): string[] {
  if (PLAIN_PATH.test(rawPath)) return [rawPath];
  const reencoded = rawPath
    .split('/')
    .map((seg) => uriEncode(safeDecode(seg)))
    .join('/');
  return reencoded === rawPath ? [rawPath] : [rawPath, reencoded];
}

/** Parses an ISO 8601 basic timestamp (20130524T000000Z) to ms, or NaN. */
export function parseAmzDate(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return NaN;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
}

/** The payload modes without a per-request value, shared (a PayloadMode is never mutated). */
const UNSIGNED_MODE: PayloadMode = Object.freeze({ type: 'unsigned' });
const STREAMING_MODE: PayloadMode = Object.freeze({ type: 'streaming-signed', trailer: false });
const STREAMING_TRAILER_MODE: PayloadMode = Object.freeze({ type: 'streaming-signed', trailer: true });
const UNSIGNED_TRAILER_MODE: PayloadMode = Object.freeze({ type: 'streaming-unsigned-trailer' });

function payloadMode(value: string | undefined, presigned: boolean): PayloadMode {
  if (value === undefined) {
    if (presigned) return UNSIGNED_MODE;
    throw new S3Error('InvalidRequest', 'missing required header x-amz-content-sha256');
  }
  if (value === UNSIGNED_PAYLOAD) return UNSIGNED_MODE;
  if (value === STREAMING_SIGNED) return STREAMING_MODE;
  if (value === STREAMING_SIGNED_TRAILER) return STREAMING_TRAILER_MODE;
  if (value === STREAMING_UNSIGNED_TRAILER) return UNSIGNED_TRAILER_MODE;
  if (/^[0-9a-f]{64}$/.test(value)) return { type: 'signed', sha256: value };
  throw new S3Error('InvalidArgument', `x-amz-content-sha256 must be a SHA-256 in hex or one of the streaming modes, not '${value.slice(0, 80)}'`);
}

function equalHex(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

interface Parsed {
  accessKeyId: string;
  day: string;
  region: string;
  service: string;
  signedHeaders: string[];
  /** The SignedHeaders value as sent (`a;b;c`, the canonical request's line). */
  signedHeaderList: string;
  signature: string;
  amzDate: string;
  payloadHash: string;
  payload: PayloadMode;
  presigned: boolean;
}

/**
 * The parsed parts of a request's SigV4 auth. Built as one literal with every field (no spread): this
 * runs on every request, and a spread followed by more properties takes a slow V8 path.
 */
function parsed(cred: string, where: 'AuthorizationHeaderMalformed' | 'AuthorizationQueryParametersError', sh: string, signature: string, amzDate: string, payloadHash: string, payload: PayloadMode, presigned: boolean): Parsed {
  const parts = cred.split('/');
  if (parts.length !== 5 || parts[4] !== 'aws4_request') throw new S3Error(where, `the credential '${cred}' is not <key>/<date>/<region>/<service>/aws4_request`);
  return { accessKeyId: parts[0]!, day: parts[1]!, region: parts[2]!, service: parts[3]!, signedHeaders: sh.split(';'), signedHeaderList: sh, signature, amzDate, payloadHash, payload, presigned };
}

/** Parses the SigV4 parts of a request (header or query form); undefined when it carries no SigV4 auth. */
function parse(req: IncomingMessage, query: URLSearchParams): Parsed | undefined {
  const h = req.headers.authorization;
  if (h !== undefined) {
    if (!h.startsWith(`${ALGORITHM} `)) {
      if (h.startsWith('AWS ')) throw new S3Error('InvalidRequest', 'signature version 2 is not supported; sign requests with AWS4-HMAC-SHA256 (SigV4)');
      throw new S3Error('AuthorizationHeaderMalformed', `unsupported authorization type '${h.split(' ')[0]}'`);
    }
    // `Credential=…, SignedHeaders=…, Signature=…` in any order; a later repeat wins.
    let cred: string | undefined;
    let sh: string | undefined;
    let sig: string | undefined;
    for (const f of h.slice(ALGORITHM.length + 1).split(',')) {
      const i = f.indexOf('=');
      if (i <= 0) continue;
      const name = f.slice(0, i).trim();
      if (name === 'Credential') cred = f.slice(i + 1).trim();
      else if (name === 'SignedHeaders') sh = f.slice(i + 1).trim();
      else if (name === 'Signature') sig = f.slice(i + 1).trim();
    }
    if (!cred || !sh || !sig) throw new S3Error('AuthorizationHeaderMalformed', 'the Authorization header needs Credential, SignedHeaders and Signature');
    const amzDate = (req.headers['x-amz-date'] as string | undefined) ?? '';
    if (amzDate === '') throw new S3Error('AccessDenied', 'AWS authentication requires a valid x-amz-date header');
    const ph = req.headers['x-amz-content-sha256'] as string | undefined;
    return parsed(cred, 'AuthorizationHeaderMalformed', sh, sig, amzDate, ph ?? '', payloadMode(ph, false), false);
  }
  const alg = query.get('X-Amz-Algorithm');
  if (alg === null) return undefined;
  if (alg !== ALGORITHM) throw new S3Error('AuthorizationQueryParametersError', `X-Amz-Algorithm must be ${ALGORITHM}`);
  const cred = query.get('X-Amz-Credential');
  const sh = query.get('X-Amz-SignedHeaders');
  const sig = query.get('X-Amz-Signature');
  const amzDate = query.get('X-Amz-Date');
  if (!cred || !sh || !sig || !amzDate)
    throw new S3Error('AuthorizationQueryParametersError', 'a presigned URL needs X-Amz-Credential, X-Amz-SignedHeaders, X-Amz-Date and X-Amz-Signature');
  const ph = query.get('X-Amz-Content-Sha256') ?? query.get('x-amz-content-sha256') ?? UNSIGNED_PAYLOAD;
  return parsed(cred, 'AuthorizationQueryParametersError', sh, sig, amzDate, ph, payloadMode(ph, true), true);
}

/**
 * Verifies a request's SigV4 signature (header or presigned query) and clock skew; returns who signed it
 * and how the body is covered. Throws AccessDenied for an unsigned request, InvalidAccessKeyId,
 * SignatureDoesNotMatch, RequestTimeTooSkewed, or AccessDenied for an expired presigned URL.
 */
export function verifyRequest(req: IncomingMessage, rawPath: string, rawQuery: string, query: URLSearchParams, o: SigV4Options): AuthContext {
  const p = parse(req, query);
  if (p === undefined) throw new S3Error('AccessDenied', 'anonymous requests are refused: sign the request with AWS Signature Version 4');
  const key = o.lookup(p.accessKeyId);
  if (key === undefined) throw new S3Error('InvalidAccessKeyId', `the access key id '${p.accessKeyId}' is not known to this gateway`);
  const t = parseAmzDate(p.amzDate);
  if (Number.isNaN(t)) throw new S3Error('AccessDenied', `x-amz-date '${p.amzDate}' is not an ISO 8601 basic timestamp`);
  if (!p.amzDate.startsWith(p.day)) throw new S3Error('SignatureDoesNotMatch', `the credential date ${p.day} is not the day of x-amz-date ${p.amzDate}`);
  const now = o.now();
  if (p.presigned) {
    const expires = Number(query.get('X-Amz-Expires') ?? '');
    if (!Number.isInteger(expires) || expires < 1 || expires > o.maxPresignExpiresS)
      throw new S3Error('AuthorizationQueryParametersError', `X-Amz-Expires must be an integer from 1 to ${o.maxPresignExpiresS}`);
    if (t - o.maxSkewMs > now) throw new S3Error('RequestTimeTooSkewed', 'the presigned URL is dated in the future');
    if (now > t + expires * 1000) throw new S3Error('AccessDenied', 'request has expired: the presigned URL is past its X-Amz-Expires');
  } else if (Math.abs(now - t) > o.maxSkewMs) {
    throw new S3Error('RequestTimeTooSkewed', `the difference between the request time (${p.amzDate}) and the server time (${new Date(now).toISOString()}) is more than ${o.maxSkewMs / 60_000} minutes`);
  }
  if (!p.signedHeaders.includes('host')) throw new S3Error('AccessDenied', 'the host header must be signed');
  const cq = canonicalQuery(rawQuery, p.presigned ? 'X-Amz-Signature' : undefined);
  const ch = canonicalHeaders(req, p.signedHeaders);
  const sk = signingKey(key.secretAccessKey, p.day, p.region, p.service);
  const scope = `${p.day}/${p.region}/${p.service}/aws4_request`;
  for (const uri of canonicalUris(rawPath)) {
    const creq = `${req.method}\n${uri}\n${cq}\n${ch}\n${p.signedHeaderList}\n${p.payloadHash}`;
    const sts = `${ALGORITHM}\n${p.amzDate}\n${scope}\n${sha256Hex(creq)}`;
    if (equalHex(hmacHex(sk, sts), p.signature))
      return { key, payload: p.payload, signingKey: sk, amzDate: p.amzDate, scope, signature: p.signature, presigned: p.presigned };
  }
  throw new S3Error('SignatureDoesNotMatch', 'the request signature we calculated does not match the signature you provided; check your key and signing method');
}
