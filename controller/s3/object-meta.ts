/**
 * How S3 object metadata maps onto sluice attributes, in both directions.
 *
 * - User metadata (`x-amz-meta-<name>: <value>`) is stored as ONE attribute `x-amz-meta`, a map of
 *   lower-case names to strings, written in the same put as the body: handlers read it as
 *   `record.attrs['x-amz-meta'].<name>`.
 * - What only the gateway needs (multipart ETag, stored Cache-Control and the like) is one internal map
 *   `$sluice.s3.object` (a name no function's processed-marker `$sluice.<function>` can take, since
 *   function names hold no dots).
 * - Every other attribute — those functions set — is shown to S3 clients on HEAD and GET as
 *   `x-amz-meta-sluice-attr-<name>` and by GetObjectTagging; internal `$…` attributes never are.
 *   Strings are sent as they are when they are printable ASCII, everything else as JSON (bytes as
 *   `{"$bytes":"<base64>"}`), so `has_ssn = true` reads `x-amz-meta-sluice-attr-has_ssn: true`.
 */
import type { Attrs, ObjectHead, Value } from '../../bindings/types.ts';
import { S3Error } from './s3-errors.ts';

export const META_ATTR = 'x-amz-meta';
export const INTERNAL_ATTR = '$sluice.s3.object';
export const ATTR_HEADER_PREFIX = 'x-amz-meta-sluice-attr-';

/** Stored response headers a PUT may set (returned on GET/HEAD as they were given). */
export const STORED_HEADERS = ['cache-control', 'content-disposition', 'content-encoding', 'content-language', 'expires'] as const;

/** The gateway's own data on an object. */
export interface InternalObjectData {
  /** S3 ETag (unquoted) when it differs from the body MD5 (multipart: `<md5>-<n>`). */
  etag?: string;
  /** The body MD5 the ETag above belongs to (a later non-S3 put without this map invalidates it). */
  bodyEtag?: string;
  headers?: Record<string, string>;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PRINTABLE = /^[\x20-\x7e]*$/;

/** User metadata from request headers; at most 2 KiB in total as S3. */
export function metaFromHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  let total = 0;
  for (const [k, v] of Object.entries(headers)) {
    if (!k.startsWith('x-amz-meta-') || v === undefined) continue;
    const name = k.slice('x-amz-meta-'.length);
    if (name === '' || name.startsWith('sluice-attr-')) continue;
    const value = Array.isArray(v) ? v.join(',') : v;
    total += name.length + value.length;
    out[name] = value;
  }
  if (total > 2048) throw new S3Error('InvalidArgument', `user metadata is ${total} bytes; S3 allows at most 2048 (x-amz-meta-* names and values)`);
  return out;
}

/** Stored response headers from request headers. */
export function storedHeadersFrom(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of STORED_HEADERS) {
    let v = headers[k];
    if (typeof v !== 'string') continue;
    // aws-chunked is transfer framing, not an encoding of the stored object.
    if (k === 'content-encoding') v = v.split(',').map((s) => s.trim()).filter((s) => s !== 'aws-chunked' && s !== '').join(', ');
    if (v !== '') out[k] = v;
  }
  return out;
}

/** The attributes a put through the gateway stores with the body. */
export function putAttrs(meta: Record<string, string>, internal: InternalObjectData): Attrs {
  const attrs: Attrs = {};
  if (Object.keys(meta).length > 0) attrs[META_ATTR] = meta;
  const i: Record<string, Value> = {};
  if (internal.etag !== undefined) {
    i.etag = internal.etag;
    i.bodyEtag = internal.bodyEtag ?? '';
  }
  if (internal.headers && Object.keys(internal.headers).length > 0) i.headers = internal.headers;
  if (Object.keys(i).length > 0) attrs[INTERNAL_ATTR] = i;
  return attrs;
}

function asStringMap(v: Value | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date))
    for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

/** The gateway's data on an object. */
export function internalOf(attrs: Attrs): InternalObjectData {
  const v = attrs[INTERNAL_ATTR];
  if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array || v instanceof Date) return {};
  const m = v as Record<string, Value>;
  const out: InternalObjectData = {};
  if (typeof m.etag === 'string') out.etag = m.etag;
  if (typeof m.bodyEtag === 'string') out.bodyEtag = m.bodyEtag;
  const h = asStringMap(m.headers);
  if (Object.keys(h).length > 0) out.headers = h;
  return out;
}

/** User metadata of an object. */
export function metaOf(attrs: Attrs): Record<string, string> {
  return asStringMap(attrs[META_ATTR]);
}

/** The S3 ETag of an object (unquoted): the multipart ETag when one was recorded for this body. */
export function s3Etag(head: Pick<ObjectHead, 'etag' | 'attrs'>): string {
  const i = internalOf(head.attrs);
  return i.etag !== undefined && i.bodyEtag === head.etag ? i.etag : head.etag;
}

/** An attribute value as header text. */
export function attrText(v: Value): string {
  if (typeof v === 'string' && PRINTABLE.test(v)) return v;
  return JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? { $bytes: Buffer.from(x).toString('base64') } : x)).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Attributes shown to S3 clients (function-set ones), as [name, text]. */
export function visibleAttrs(attrs: Attrs): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('$') || k === META_ATTR) continue;
    out.push([k, attrText(v)]);
  }
  return out;
}

/** Response headers carrying an object's metadata and visible attributes. */
export function metaHeaders(attrs: Attrs): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(metaOf(attrs))) if (TOKEN.test(k) && PRINTABLE.test(v)) h[`x-amz-meta-${k}`] = v;
  // Attribute names that are not HTTP tokens (spaces, non-ASCII) cannot be header names; GetObjectTagging shows them.
  for (const [k, v] of visibleAttrs(attrs)) if (TOKEN.test(k)) h[`${ATTR_HEADER_PREFIX}${k}`] = v;
  const stored = internalOf(attrs).headers;
  if (stored) Object.assign(h, stored);
  return h;
}
