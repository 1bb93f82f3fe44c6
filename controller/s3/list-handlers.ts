/**
 * Listings: ListObjectsV2, ListObjects (v1, marker) and ListObjectVersions (every object is its only
 * version, `VersionId` null, as S3 reports objects of an unversioned bucket). One binding page per
 * response; the response is built as one string join, since at 1,000 keys a page XML serialisation is
 * the gateway's main cost of a LIST.
 */
import type { ListOptions, ListResult, ObjectMeta } from '../../bindings/types.ts';
import { compareKeys } from '../../bindings/values.ts';
import { bucketOf, intParam, OWNER, sendXml, type Handler, type S3Context } from './context.ts';
import { S3Error } from './s3-errors.ts';
import { doc, el, esc } from './xml.ts';

const MAX_KEYS = 1000;

interface Common {
  prefix: string;
  delimiter: string | undefined;
  maxKeys: number;
  url: boolean;
}

function common(ctx: S3Context): Common {
  const q = ctx.query;
  const enc = q.get('encoding-type');
  if (enc !== null && enc !== 'url') throw new S3Error('InvalidArgument', `encoding-type must be 'url', not '${enc.slice(0, 20)}'`);
  const d = q.get('delimiter');
  return { prefix: q.get('prefix') ?? '', delimiter: d === null || d === '' ? undefined : d, maxKeys: intParam(q, 'max-keys', MAX_KEYS, MAX_KEYS), url: enc === 'url' };
}

/** Key text as the response carries it: URL-encoded when the client asked for encoding-type=url. */
function keyText(s: string, url: boolean): string {
  return url ? encodeURIComponent(s).replace(/%2F/g, '/') : esc(s);
}

async function page(ctx: S3Context, c: Common, extra: Pick<ListOptions, 'startAfter' | 'continuationToken'>): Promise<ListResult> {
  if (c.maxKeys === 0) return { objects: [], commonPrefixes: [] };
  const b = await ctx.state.bucket(bucketOf(ctx));
  const o: ListOptions = { prefix: c.prefix, limit: c.maxKeys, ...extra };
  if (c.delimiter !== undefined) o.delimiter = c.delimiter;
  return b.list(o);
}

function contents(objects: ObjectMeta[], url: boolean, owner: boolean, tag = 'Contents', version = ''): string {
  const own = owner ? OWNER : '';
  const parts: string[] = new Array<string>(objects.length);
  for (let i = 0; i < objects.length; i++) {
    const m = objects[i]!;
    parts[i] = `<${tag}><Key>${keyText(m.key, url)}</Key>${version}<LastModified>${m.mtime.toISOString()}</LastModified><ETag>&quot;${m.etag}&quot;</ETag><Size>${m.size}</Size>${own}<StorageClass>STANDARD</StorageClass></${tag}>`;
  }
  return parts.join('');
}

function prefixes(list: string[], url: boolean): string {
  return list.map((p) => `<CommonPrefixes><Prefix>${keyText(p, url)}</Prefix></CommonPrefixes>`).join('');
}

function head(ctx: S3Context, c: Common): string {
  return `${el('Name', bucketOf(ctx))}<Prefix>${keyText(c.prefix, c.url)}</Prefix>${c.delimiter !== undefined ? `<Delimiter>${keyText(c.delimiter, c.url)}</Delimiter>` : ''}${el('MaxKeys', c.maxKeys)}${c.url ? '<EncodingType>url</EncodingType>' : ''}`;
}

/** The last entry of a page in key order (an object key or a common prefix). */
function lastEntry(r: ListResult): string {
  const k = r.objects[r.objects.length - 1]?.key ?? '';
  const p = r.commonPrefixes[r.commonPrefixes.length - 1] ?? '';
  return compareKeys(k, p) >= 0 ? k : p;
}

export const listObjectsV2: Handler = async (ctx) => {
  const c = common(ctx);
  const q = ctx.query;
  const token = q.get('continuation-token');
  const startAfter = q.get('start-after');
  const r = await page(ctx, c, { ...(token ? { continuationToken: token } : {}), ...(startAfter ? { startAfter } : {}) });
  const body =
    head(ctx, c) +
    (token ? el('ContinuationToken', token) : '') +
    (startAfter ? `<StartAfter>${keyText(startAfter, c.url)}</StartAfter>` : '') +
    el('KeyCount', r.objects.length + r.commonPrefixes.length) +
    el('IsTruncated', r.nextToken !== undefined) +
    (r.nextToken !== undefined ? el('NextContinuationToken', r.nextToken) : '') +
    contents(r.objects, c.url, q.get('fetch-owner') === 'true') +
    prefixes(r.commonPrefixes, c.url);
  sendXml(ctx, 200, doc('ListBucketResult', body));
};

export const listObjects: Handler = async (ctx) => {
  const c = common(ctx);
  const marker = ctx.query.get('marker') ?? '';
  const r = await page(ctx, c, marker ? { startAfter: marker } : {});
  const truncated = r.nextToken !== undefined;
  const body =
    head(ctx, c) +
    `<Marker>${keyText(marker, c.url)}</Marker>` +
    el('IsTruncated', truncated) +
    (truncated ? `<NextMarker>${keyText(lastEntry(r), c.url)}</NextMarker>` : '') +
    contents(r.objects, c.url, true) +
    prefixes(r.commonPrefixes, c.url);
  sendXml(ctx, 200, doc('ListBucketResult', body));
};

export const listObjectVersions: Handler = async (ctx) => {
  const c = common(ctx);
  const marker = ctx.query.get('key-marker') ?? '';
  const r = await page(ctx, c, marker ? { startAfter: marker } : {});
  const truncated = r.nextToken !== undefined;
  const body =
    head(ctx, c) +
    `<KeyMarker>${keyText(marker, c.url)}</KeyMarker><VersionIdMarker>${esc(ctx.query.get('version-id-marker') ?? '')}</VersionIdMarker>` +
    el('IsTruncated', truncated) +
    (truncated ? `<NextKeyMarker>${keyText(lastEntry(r), c.url)}</NextKeyMarker><NextVersionIdMarker>null</NextVersionIdMarker>` : '') +
    contents(r.objects, c.url, true, 'Version', '<VersionId>null</VersionId><IsLatest>true</IsLatest>') +
    prefixes(r.commonPrefixes, c.url);
  sendXml(ctx, 200, doc('ListVersionsResult', body));
};
