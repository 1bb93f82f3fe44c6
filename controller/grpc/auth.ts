/**
 * Bearer-token checks for the gRPC services.
 *
 * Tokens are compared as SHA-256 digests with `timingSafeEqual`, and every accepted token is compared
 * on every call: the time a check takes depends neither on how much of a guess matches nor on which
 * token (if any) it matched. Hashing first also makes the compare length-independent, which
 * `timingSafeEqual` on the raw strings is not.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { SluiceError } from '../../bindings/errors.ts';

/** Outcome of a check: `ok`, or the reason to give in the UNAUTHENTICATED status. */
export type AuthResult = { ok: true } | { ok: false; reason: string };

/** A set of accepted bearer tokens. */
export class TokenSet {
  readonly #digests: readonly Buffer[];

  /** `path` names the option in the error when `tokens` is empty or holds an empty token. */
  constructor(tokens: readonly string[], path: string) {
    if (!Array.isArray(tokens) || tokens.length === 0) {
      throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${path} must hold at least one token`);
    }
    tokens.forEach((t, i) => {
      if (typeof t !== 'string' || t.trim() === '') throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${path}[${i}] must be a non-empty string`);
    });
    this.#digests = tokens.map(digest);
  }

  /** True when `token` is one of the set. */
  accepts(token: string): boolean {
    const d = digest(token);
    let hit = false;
    // No early exit: compare against every token so timing does not reveal which one matched.
    for (const ok of this.#digests) hit = timingSafeEqual(d, ok) || hit;
    return hit;
  }

  /** Checks the `authorization: Bearer <token>` metadata of a call. */
  check(metadata: Metadata): AuthResult {
    const token = bearerToken(metadata);
    if (token === undefined) return { ok: false, reason: "missing credentials: send metadata 'authorization: Bearer <token>'" };
    return this.accepts(token) ? { ok: true } : { ok: false, reason: 'the bearer token is not accepted' };
  }
}

/** The token of the call's `authorization: Bearer <token>` metadata, if any (scheme is case-insensitive). */
export function bearerToken(metadata: Metadata): string | undefined {
  for (const v of metadata.get('authorization')) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(typeof v === 'string' ? v : v.toString('utf8'));
    if (m?.[1] !== undefined) return m[1];
  }
  return undefined;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
