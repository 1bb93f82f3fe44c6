/**
 * Reads a request body as the signature says it is covered, checking every digest the client sent while
 * the bytes stream in: the signed SHA-256, aws-chunked chunk signatures, flexible-checksum headers and
 * trailers, Content-MD5. The size bound is checked against the declared length before reading and again
 * while reading, so an oversized upload is refused without buffering it.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AwsChunkedDecoder } from './aws-chunked.ts';
import { Checksum, expectChecksum, headerChecksums, isChecksumAlgorithm, type ChecksumAlgorithm } from './checksums.ts';
import { S3Error } from './s3-errors.ts';
import type { AuthContext } from './sigv4.ts';

/**
 * Bounds the bytes of request bodies the gateway holds at once (each PUT or part is buffered whole before
 * its one atomic put): past the bound a request gets `503 SlowDown`, which every S3 client retries with
 * backoff, instead of the process growing without limit.
 */
export class BodyBudget {
  readonly maxBytes: number;
  #used = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get usedBytes(): number {
    return this.#used;
  }

  /** Takes `n` bytes for a reservation; SlowDown past the bound. */
  take(n: number): void {
    if (this.#used + n > this.maxBytes) throw new S3Error('SlowDown', `the gateway is holding ${this.#used} bytes of upload bodies (bound ${this.maxBytes}); retry later`);
    this.#used += n;
  }

  /** Returns `n` bytes a reservation held. */
  give(n: number): void {
    this.#used -= n;
  }

  /** A holder for one request: takes bytes as the body grows; `release()` returns them all. */
  open(): BodyReservation {
    // A small object, not two closures: one is opened per request, bodies or not.
    return new Reservation(this);
  }
}

/** One request's share of the {@link BodyBudget}. */
export interface BodyReservation {
  take(n: number): void;
  release(): void;
}

class Reservation implements BodyReservation {
  readonly #budget: BodyBudget;
  #held = 0;

  constructor(budget: BodyBudget) {
    this.#budget = budget;
  }

  take(n: number): void {
    this.#budget.take(n);
    this.#held += n;
  }

  release(): void {
    this.#budget.give(this.#held);
    this.#held = 0;
  }
}

function tooLarge(n: number, max: number): S3Error {
  return new S3Error('EntityTooLarge', `the body is ${n} bytes; the gateway accepts at most ${max} bytes per object or part`);
}

/** Reads, decodes and verifies the body of a request; at most `maxBytes` decoded bytes. */
export async function readBody(req: IncomingMessage, auth: AuthContext, maxBytes: number, reservation?: BodyReservation): Promise<Buffer> {
  const h = req.headers;
  const mode = auth.payload;
  const chunked = mode.type === 'streaming-signed' || mode.type === 'streaming-unsigned-trailer' || /\baws-chunked\b/.test(h['content-encoding'] ?? '');
  const declared = chunked ? h['x-amz-decoded-content-length'] : h['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) throw tooLarge(Number(declared), maxBytes);
  // Reserve the declared size up front (refused before any byte is read); an undeclared size as it grows.
  const declaredBytes = declared !== undefined ? Number(declared) : undefined;
  if (reservation && declaredBytes !== undefined && declaredBytes > 0) reservation.take(declaredBytes);
  if (chunked && declared === undefined && h['transfer-encoding'] === undefined)
    throw new S3Error('MissingContentLength', 'an aws-chunked upload needs x-amz-decoded-content-length');

  const checks: [ChecksumAlgorithm, string, Checksum][] = headerChecksums(h).map(([a, v]) => [a, v, new Checksum(a)]);
  let trailerCheck: Checksum | undefined;
  const trailerNames = String(h['x-amz-trailer'] ?? '').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
  for (const t of trailerNames) {
    const alg = t.startsWith('x-amz-checksum-') ? t.slice('x-amz-checksum-'.length) : '';
    if (!isChecksumAlgorithm(alg)) throw new S3Error('InvalidRequest', `unsupported trailer '${t}'`);
    trailerCheck = new Checksum(alg);
  }
  const md5Header = typeof h['content-md5'] === 'string' ? h['content-md5'] : undefined;
  const md5 = md5Header !== undefined ? createHash('md5') : undefined;
  const sha = mode.type === 'signed' ? createHash('sha256') : undefined;

  const parts: Buffer[] = [];
  let size = 0;
  const take = (b: Buffer): void => {
    size += b.length;
    if (size > maxBytes) throw tooLarge(size, maxBytes);
    if (reservation && (declaredBytes === undefined || size > declaredBytes)) reservation.take(b.length);
    parts.push(b);
    md5?.update(b);
    trailerCheck?.update(b);
    for (const c of checks) c[2].update(b);
  };
  const decoder = chunked
    ? new AwsChunkedDecoder({
        trailer: mode.type === 'streaming-unsigned-trailer' || (mode.type === 'streaming-signed' && mode.trailer) || trailerNames.length > 0,
        ...(mode.type === 'streaming-signed' ? { signing: { signingKey: auth.signingKey, amzDate: auth.amzDate, scope: auth.scope, seedSignature: auth.signature } } : {}),
      })
    : undefined;

  for await (const raw of req as AsyncIterable<Buffer>) {
    if (decoder) decoder.push(raw, take);
    else {
      sha?.update(raw);
      take(raw);
    }
  }
  if (!req.complete) throw new S3Error('IncompleteBody', 'the request body ended before Content-Length bytes');
  const trailers = decoder?.end();
  if (declared !== undefined && Number(declared) !== size)
    throw new S3Error('IncompleteBody', `the body has ${size} bytes but its declared length is ${declared}`);
  if (sha && mode.type === 'signed' && sha.digest('hex') !== mode.sha256)
    throw new S3Error('XAmzContentSHA256Mismatch', 'the provided x-amz-content-sha256 does not match what was computed');
  if (md5Header !== undefined) {
    const got = md5!.digest('base64');
    if (!/^[A-Za-z0-9+/]{22}==$/.test(md5Header.trim())) throw new S3Error('InvalidDigest', 'the Content-MD5 you specified is not valid');
    if (got !== md5Header.trim()) throw new S3Error('BadDigest', 'the Content-MD5 you specified did not match what we received');
  }
  for (const [alg, expected, c] of checks) expectChecksum(alg, expected, c.digestBase64());
  if (trailerCheck) {
    const name = `x-amz-checksum-${trailerCheck.algorithm}`;
    const v = trailers?.get(name);
    if (v === undefined) throw new S3Error('InvalidRequest', `the body announced trailer ${name} but did not send it`);
    expectChecksum(trailerCheck.algorithm, v, trailerCheck.digestBase64());
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
}

/** Reads a small body without a size-declared payload (XML documents), bounded. */
export async function readSmallBody(req: IncomingMessage, auth: AuthContext, maxBytes = 1024 * 1024, reservation?: BodyReservation): Promise<string> {
  return (await readBody(req, auth, maxBytes, reservation)).toString('utf8');
}

/** Discards a body the operation does not read (so the connection can be reused). */
export function drain(req: IncomingMessage): void {
  if (!req.complete) req.resume();
}
