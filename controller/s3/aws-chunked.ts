/**
 * A push decoder for `Content-Encoding: aws-chunked` bodies, the framing S3 clients use for streaming
 * uploads: `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n` … a zero-size chunk, then (trailer modes)
 * `name:value\r\n` lines and an empty line. In the signed mode every chunk's signature chains off the
 * previous one, starting from the request's seed signature, and is checked as soon as the chunk ends, so
 * a forged chunk is refused before anything is stored. Data is handed out as it arrives; nothing but one
 * header line is buffered.
 */
import { createHash, type Hash } from 'node:crypto';
import { EMPTY_SHA256, hmacHex, sha256Hex } from './sigv4.ts';
import { S3Error } from './s3-errors.ts';

/** Chunk signature inputs (signed modes). */
export interface ChunkSigning {
  signingKey: Buffer;
  amzDate: string;
  scope: string;
  /** The request (seed) signature. */
  seedSignature: string;
}

const MAX_LINE = 4096;
const CR = 13;
const LF = 10;

type State = 'header' | 'data' | 'data-crlf' | 'final-crlf' | 'trailer' | 'done';

/** Decodes one aws-chunked body. */
export class AwsChunkedDecoder {
  readonly #signing: ChunkSigning | undefined;
  readonly #trailer: boolean;
  #state: State = 'header';
  #line: Buffer[] = [];
  #lineLen = 0;
  #remaining = 0;
  #crlfSeen = 0;
  #prevSig: string;
  #chunkSig = '';
  #hash: Hash | undefined;
  readonly #trailers = new Map<string, string>();
  #trailerSig: string | undefined;
  #decoded = 0;

  /** `trailer`: a trailer section follows the zero-size chunk. */
  constructor(options: { signing?: ChunkSigning; trailer: boolean }) {
    this.#signing = options.signing;
    this.#trailer = options.trailer;
    this.#prevSig = options.signing?.seedSignature ?? '';
  }

  /** Bytes of payload decoded so far. */
  get decodedBytes(): number {
    return this.#decoded;
  }

  /** Feeds raw body bytes; calls `onData` with each piece of payload, in order. */
  push(buf: Buffer, onData: (b: Buffer) => void): void {
    let i = 0;
    const n = buf.length;
    while (i < n) {
      switch (this.#state) {
        case 'header':
        case 'trailer': {
          const j = buf.indexOf(LF, i);
          const end = j < 0 ? n : j + 1;
          this.#line.push(buf.subarray(i, end));
          this.#lineLen += end - i;
          if (this.#lineLen > MAX_LINE) throw new S3Error('IncompleteBody', 'aws-chunked: a chunk header or trailer line is longer than 4096 bytes');
          i = end;
          if (j >= 0) {
            const line = Buffer.concat(this.#line, this.#lineLen).toString('latin1');
            this.#line = [];
            this.#lineLen = 0;
            if (!line.endsWith('\r\n')) throw new S3Error('IncompleteBody', 'aws-chunked: a line does not end with CRLF');
            const text = line.slice(0, -2);
            if (this.#state === 'header') this.#header(text);
            else this.#trailerLine(text);
          }
          break;
        }
        case 'data': {
          const take = Math.min(this.#remaining, n - i);
          const piece = buf.subarray(i, i + take);
          this.#hash?.update(piece);
          this.#decoded += take;
          onData(piece);
          this.#remaining -= take;
          i += take;
          if (this.#remaining === 0) {
            this.#state = 'data-crlf';
            this.#crlfSeen = 0;
          }
          break;
        }
        case 'data-crlf':
        case 'final-crlf': {
          const want = this.#crlfSeen === 0 ? CR : LF;
          if (buf[i] !== want) throw new S3Error('IncompleteBody', 'aws-chunked: chunk data is not followed by CRLF');
          i++;
          if (++this.#crlfSeen === 2) {
            if (this.#state === 'data-crlf') {
              this.#verifyChunk(this.#hash ? this.#hash.digest('hex') : '');
              this.#state = 'header';
            } else this.#state = 'done';
          }
          break;
        }
        case 'done':
          throw new S3Error('IncompleteBody', 'aws-chunked: bytes after the final chunk');
      }
    }
  }

  /** Ends the body; returns the trailers (lower-case names). IncompleteBody when it ended early. */
  end(): Map<string, string> {
    // A trailer section cut right after its last line (without the empty line) is accepted: some
    // clients close the section with the request.
    if (this.#state === 'trailer' && this.#lineLen === 0) this.#finishTrailers();
    if (this.#state !== 'done') throw new S3Error('IncompleteBody', 'aws-chunked: the body ended before its final chunk');
    return this.#trailers;
  }

  #header(text: string): void {
    const semi = text.indexOf(';');
    const sizeHex = (semi < 0 ? text : text.slice(0, semi)).trim();
    if (!/^[0-9a-fA-F]{1,16}$/.test(sizeHex)) throw new S3Error('IncompleteBody', `aws-chunked: bad chunk size '${sizeHex.slice(0, 20)}'`);
    const size = parseInt(sizeHex, 16);
    if (this.#signing) {
      const m = /chunk-signature=([0-9a-f]{64})/.exec(text);
      if (!m) throw new S3Error('SignatureDoesNotMatch', 'aws-chunked: a chunk carries no chunk-signature');
      this.#chunkSig = m[1]!;
    }
    if (size === 0) {
      this.#verifyChunk(this.#signing ? EMPTY_SHA256 : '');
      this.#state = this.#trailer ? 'trailer' : 'final-crlf';
      this.#crlfSeen = 0;
      return;
    }
    this.#remaining = size;
    this.#hash = this.#signing ? createHash('sha256') : undefined;
    this.#state = 'data';
  }

  #verifyChunk(dataHash: string): void {
    const s = this.#signing;
    if (!s) return;
    const sts = `AWS4-HMAC-SHA256-PAYLOAD\n${s.amzDate}\n${s.scope}\n${this.#prevSig}\n${EMPTY_SHA256}\n${dataHash}`;
    if (hmacHex(s.signingKey, sts) !== this.#chunkSig) throw new S3Error('SignatureDoesNotMatch', 'aws-chunked: a chunk signature does not match its data');
    this.#prevSig = this.#chunkSig;
  }

  #trailerLine(text: string): void {
    if (text === '') return this.#finishTrailers();
    const c = text.indexOf(':');
    if (c <= 0) throw new S3Error('IncompleteBody', 'aws-chunked: a trailer line is not name:value');
    const name = text.slice(0, c).trim().toLowerCase();
    const value = text.slice(c + 1).trim();
    if (name === 'x-amz-trailer-signature') this.#trailerSig = value;
    else this.#trailers.set(name, value);
  }

  #finishTrailers(): void {
    const s = this.#signing;
    if (s) {
      if (this.#trailerSig === undefined) throw new S3Error('SignatureDoesNotMatch', 'aws-chunked: the trailer carries no x-amz-trailer-signature');
      let canon = '';
      for (const [k, v] of this.#trailers) canon += `${k}:${v}\n`;
      const sts = `AWS4-HMAC-SHA256-TRAILER\n${s.amzDate}\n${s.scope}\n${this.#prevSig}\n${sha256Hex(canon)}`;
      if (hmacHex(s.signingKey, sts) !== this.#trailerSig) throw new S3Error('SignatureDoesNotMatch', 'aws-chunked: the trailer signature does not match');
    }
    this.#state = 'done';
  }
}
