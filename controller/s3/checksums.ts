/**
 * The flexible checksums S3 clients send (`x-amz-checksum-<alg>` headers or aws-chunked trailers; SDK v3
 * sends CRC32 by default): incremental, so bodies are checked as they stream in. CRC32 uses zlib's native
 * implementation; CRC32C (Castagnoli) and CRC64NVME have no native Node implementation, so they run a
 * slicing table in JS (≈ 400 MB/s for CRC32C here, negligible next to the request itself).
 */
import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { S3Error } from './s3-errors.ts';

/** Checksum algorithms accepted, by their header suffix. */
export const ChecksumAlgorithms = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'] as const;
/** One of {@link ChecksumAlgorithms}. */
export type ChecksumAlgorithm = (typeof ChecksumAlgorithms)[number];

export function isChecksumAlgorithm(s: string): s is ChecksumAlgorithm {
  return (ChecksumAlgorithms as readonly string[]).includes(s);
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256 * 8);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) for (let s = 1; s < 8; s++) t[s * 256 + i] = (t[(s - 1) * 256 + i]! >>> 8) ^ t[t[(s - 1) * 256 + i]! & 0xff]!;
  return t;
})();

function crc32cUpdate(crc: number, b: Uint8Array): number {
  let c = ~crc >>> 0;
  let i = 0;
  const n = b.length;
  const T = CRC32C_TABLE;
  // Slicing-by-8: eight table lookups per 8 bytes instead of one per byte.
  for (; i + 8 <= n; i += 8) {
    const lo = (c ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24))) >>> 0;
    c =
      T[7 * 256 + (lo & 0xff)]! ^
      T[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      T[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      T[4 * 256 + (lo >>> 24)]! ^
      T[3 * 256 + b[i + 4]!]! ^
      T[2 * 256 + b[i + 5]!]! ^
      T[256 + b[i + 6]!]! ^
      T[b[i + 7]!]!;
  }
  for (; i < n; i++) c = T[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// CRC64/NVME (reflected polynomial 0x9a6c9329ac4bc9b5), kept as two 32-bit halves to avoid BigInt per byte.
const CRC64_LO = new Uint32Array(256);
const CRC64_HI = new Uint32Array(256);
(() => {
  const polyLo = 0xac4bc9b5;
  const polyHi = 0x9a6c9329;
  for (let i = 0; i < 256; i++) {
    let lo = i;
    let hi = 0;
    for (let k = 0; k < 8; k++) {
      const bit = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi = hi >>> 1;
      if (bit) {
        lo = (lo ^ polyLo) >>> 0;
        hi = (hi ^ polyHi) >>> 0;
      }
    }
    CRC64_LO[i] = lo;
    CRC64_HI[i] = hi;
  }
})();

/** An incremental checksum of one algorithm. */
export class Checksum {
  readonly algorithm: ChecksumAlgorithm;
  #crc = 0;
  #lo = 0xffffffff;
  #hi = 0xffffffff;
  readonly #hash: Hash | undefined;

  constructor(algorithm: ChecksumAlgorithm) {
    this.algorithm = algorithm;
    this.#hash = algorithm === 'sha1' || algorithm === 'sha256' ? createHash(algorithm) : undefined;
  }

  update(b: Uint8Array): void {
    switch (this.algorithm) {
      case 'crc32':
        this.#crc = crc32(b, this.#crc);
        return;
      case 'crc32c':
        this.#crc = crc32cUpdate(this.#crc, b);
        return;
      case 'crc64nvme': {
        let lo = this.#lo;
        let hi = this.#hi;
        for (let i = 0; i < b.length; i++) {
          const idx = (lo ^ b[i]!) & 0xff;
          const nlo = ((lo >>> 8) | ((hi & 0xff) << 24)) >>> 0;
          hi = (hi >>> 8) ^ CRC64_HI[idx]!;
          lo = (nlo ^ CRC64_LO[idx]!) >>> 0;
        }
        this.#lo = lo;
        this.#hi = hi >>> 0;
        return;
      }
      default:
        this.#hash!.update(b);
    }
  }

  /** The checksum as S3 sends it: base64 of the big-endian bytes. */
  digestBase64(): string {
    if (this.#hash) return this.#hash.digest('base64');
    if (this.algorithm === 'crc64nvme') {
      const out = Buffer.alloc(8);
      out.writeUInt32BE(~this.#hi >>> 0, 0);
      out.writeUInt32BE(~this.#lo >>> 0, 4);
      return out.toString('base64');
    }
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.#crc >>> 0, 0);
    return out.toString('base64');
  }
}

/** Checks `actual` against the value the client sent; BadDigest (as S3) when they differ. */
export function expectChecksum(algorithm: ChecksumAlgorithm, expected: string, actual: string): void {
  if (expected.trim() !== actual)
    throw new S3Error('BadDigest', `the ${algorithm.toUpperCase()} you specified (${expected.trim()}) did not match the calculated checksum (${actual})`);
}

/** The `x-amz-checksum-<alg>` headers of a request, as [algorithm, value] pairs. */
export function headerChecksums(headers: Record<string, string | string[] | undefined>): [ChecksumAlgorithm, string][] {
  const out: [ChecksumAlgorithm, string][] = [];
  for (const a of ChecksumAlgorithms) {
    const v = headers[`x-amz-checksum-${a}`];
    if (typeof v === 'string') out.push([a, v]);
  }
  return out;
}
