/**
 * Bodies in a bucket of any S3-compatible service (AWS S3, MinIO, s3rver, a sluice gateway), through
 * `@aws-sdk/client-s3`. Each put writes a new key, never an overwrite, so a ref names one immutable body
 * and its removal can never hit a newer write (see body-store.ts for the whole protocol).
 *
 * Key of a body: `<prefix><bucket>/<base64url(object key)>/<uuid>`. The object key inside the S3 key lets
 * the collector check a listed body against the metadata with no extra request; keys whose encoding
 * would push the S3 key past its 1,024-byte limit are written as `<prefix><bucket>/~<sha256>/<uuid>`
 * with the object key in the `x-amz-meta-sluice-key` header instead (the collector reads it with a HEAD).
 *
 * Checksums: the client computes request checksums only when an operation requires them
 * (`WHEN_REQUIRED`): PutObject then sends a plain signed payload that every S3-compatible server
 * accepts (s3rver and older MinIO refuse the SDK v3 default CRC32 trailers).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { resolveBodyStoreOptions, type BodyPage, type BodyStore, type ResolvedS3BodyStoreOptions, type S3BodyStoreOptions } from '../body-store.ts';
import { BindingError } from '../errors.ts';
import type { CallOptions } from '../types.ts';
import { isNoSuchKey, toBindingError } from './s3-errors.ts';

/** Longest base64url object key kept inside the S3 key (leaves room for prefix, bucket and uuid under 1,024 bytes). */
const MAX_ENCODED_KEY = 640;
/** User metadata header (without `x-amz-meta-`) holding the base64url object key. */
const KEY_META = 'sluice-key';

const b64url = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
const unb64url = (s: string) => Buffer.from(s, 'base64url').toString('utf8');
const opts = (o: CallOptions | undefined) => (o?.signal ? { abortSignal: o.signal } : {});

/** `BodyStore` on an S3-compatible service. */
export class S3BodyStore implements BodyStore {
  readonly kind = 's3';
  readonly inlineMaxBytes: number;
  readonly graceMs: number;
  readonly options: ResolvedS3BodyStoreOptions;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #where: string;

  private constructor(o: ResolvedS3BodyStoreOptions) {
    this.options = o;
    this.inlineMaxBytes = o.inlineMaxBytes;
    this.graceMs = o.gcGraceMs;
    this.#bucket = o.bucket;
    this.#prefix = o.prefix;
    this.#where = `s3 body store ${o.endpoint}/${o.bucket}`;
    this.#client = new S3Client({
      endpoint: o.endpoint,
      region: o.region,
      forcePathStyle: o.forcePathStyle,
      credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
      maxAttempts: o.maxAttempts,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { requestTimeout: o.requestTimeoutMs, connectionTimeout: Math.min(o.requestTimeoutMs, 10_000) },
    });
  }

  /** Validates the options and checks that the bucket exists and the credentials are accepted. */
  static async open(options: S3BodyStoreOptions): Promise<S3BodyStore> {
    const s = new S3BodyStore(resolveBodyStoreOptions(options));
    try {
      await s.#client.send(new HeadBucketCommand({ Bucket: s.#bucket }));
    } catch (err) {
      s.#client.destroy();
      const e = toBindingError(err, `open ${s.#where}`);
      // HEAD answers have no body, so a missing bucket arrives as a bare 404 "NotFound".
      if (e.code === 'SLUICE_NOT_FOUND') throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', `open ${s.#where}: the bucket does not exist`, { cause: err });
      throw e;
    }
    return s;
  }

  #bucketPrefix(bucket: string): string {
    return `${this.#prefix}${bucket}/`;
  }

  async put(bucket: string, key: string, bytes: Uint8Array, options?: CallOptions): Promise<string> {
    const enc = b64url(key);
    const long = enc.length > MAX_ENCODED_KEY;
    const ref = `${this.#bucketPrefix(bucket)}${long ? `~${createHash('sha256').update(key).digest('hex')}` : enc}/${randomUUID()}`;
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: ref,
          Body: bytes,
          ContentLength: bytes.byteLength,
          ContentType: 'application/octet-stream',
          ...(long ? { Metadata: { [KEY_META]: enc } } : {}),
        }),
        opts(options),
      );
      return ref;
    } catch (err) {
      throw toBindingError(err, `put body of '${key}' in bucket '${bucket}' to ${this.#where}`);
    }
  }

  async get(ref: string, range: { start: number; end: number }, options?: CallOptions): Promise<Uint8Array | undefined> {
    const where = `get body ${ref} from ${this.#where}`;
    try {
      if (range.end <= range.start) return (await this.#exists(ref, options)) ? new Uint8Array(0) : undefined;
      const res = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: ref, Range: `bytes=${range.start}-${range.end - 1}` }), opts(options));
      if (!res.Body) throw new BindingError('SLUICE_INTERNAL', `${where}: the answer has no body`);
      return await res.Body.transformToByteArray();
    } catch (err) {
      if (isNoSuchKey(err)) return undefined;
      throw toBindingError(err, where);
    }
  }

  async getStream(ref: string, range: { start: number; end: number }, options?: CallOptions): Promise<AsyncIterable<Uint8Array> | undefined> {
    const where = `get body ${ref} from ${this.#where}`;
    try {
      if (range.end <= range.start) return (await this.#exists(ref, options)) ? (async function* none() {})() : undefined;
      const res = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: ref, Range: `bytes=${range.start}-${range.end - 1}` }), opts(options));
      if (!res.Body) throw new BindingError('SLUICE_INTERNAL', `${where}: the answer has no body`);
      return chunks(res.Body as Readable, where);
    } catch (err) {
      if (isNoSuchKey(err)) return undefined;
      throw toBindingError(err, where);
    }
  }

  async delete(ref: string, options?: CallOptions): Promise<void> {
    try {
      // S3 answers 204 also for a missing key: removal is idempotent.
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: ref }), opts(options));
    } catch (err) {
      if (isNoSuchKey(err)) return;
      throw toBindingError(err, `delete body ${ref} from ${this.#where}`);
    }
  }

  async list(options: { token?: string | undefined; limit: number } & CallOptions): Promise<BodyPage> {
    try {
      // No delimiter listing: not every S3-compatible server implements it for nested keys (s3rver 3.7 does not).
      const res = await this.#client.send(
        new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#prefix, MaxKeys: options.limit, ...(options.token ? { ContinuationToken: options.token } : {}) }),
        opts(options),
      );
      const page: BodyPage = { bodies: [] };
      for (const c of res.Contents ?? []) {
        // <prefix><bucket>/<encoded key>/<uuid>; anything else is not a key sluice wrote.
        const parts = c.Key?.slice(this.#prefix.length).split('/');
        if (!c.Key || parts?.length !== 3 || !parts[0] || !parts[1] || !parts[2]) continue;
        const enc = parts[1];
        page.bodies.push({ ref: c.Key, bucket: parts[0], key: enc.startsWith('~') ? undefined : unb64url(enc), created: c.LastModified ?? new Date(0) });
      }
      if (res.IsTruncated && res.NextContinuationToken) page.nextToken = res.NextContinuationToken;
      return page;
    } catch (err) {
      throw toBindingError(err, `list bodies in ${this.#where}`);
    }
  }

  async keyOf(ref: string, options?: CallOptions): Promise<string | undefined> {
    try {
      const res = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: ref }), opts(options));
      const enc = res.Metadata?.[KEY_META];
      return enc === undefined ? undefined : unb64url(enc);
    } catch (err) {
      if (isNoSuchKey(err)) return undefined;
      throw toBindingError(err, `head body ${ref} in ${this.#where}`);
    }
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  async #exists(ref: string, options: CallOptions | undefined): Promise<boolean> {
    try {
      await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: ref }), opts(options));
      return true;
    } catch (err) {
      if (isNoSuchKey(err)) return false;
      throw err;
    }
  }
}

/** The chunks of a response body; leaving the loop early (`break`) destroys the socket's stream. */
async function* chunks(body: Readable, where: string): AsyncIterable<Uint8Array> {
  try {
    for await (const c of body as AsyncIterable<Uint8Array>) yield c;
  } catch (err) {
    throw toBindingError(err, where);
  } finally {
    body.destroy();
  }
}
