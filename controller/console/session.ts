/**
 * Console sessions: the control token is typed once on the login page; the server answers with a
 * random session id in an httpOnly, SameSite=Strict cookie, so the token itself never sits in the
 * browser's storage or in page script. Sessions live in this process only (a restarted console asks
 * for the token again) and are bounded in count and age.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TokenSet } from '../grpc/auth.ts';

/** Name of the session cookie. */
export const COOKIE = 'sluice_console';

export class Sessions {
  readonly #ttlMs: number;
  readonly #max: number;
  /** id → expiry (epoch ms), in creation order (a Map keeps insertion order: the oldest is first). */
  readonly #live = new Map<string, number>();

  constructor(ttlMs: number, max: number) {
    this.#ttlMs = ttlMs;
    this.#max = max;
  }

  create(): string {
    const id = randomBytes(32).toString('base64url');
    // Bounded: past `max`, the oldest session is dropped (it logs in again).
    while (this.#live.size >= this.#max) this.#live.delete(this.#live.keys().next().value as string);
    this.#live.set(id, Date.now() + this.#ttlMs);
    return id;
  }

  valid(id: string | undefined): boolean {
    if (id === undefined) return false;
    const exp = this.#live.get(id);
    if (exp === undefined) return false;
    if (exp < Date.now()) {
      this.#live.delete(id);
      return false;
    }
    return true;
  }

  delete(id: string | undefined): void {
    if (id !== undefined) this.#live.delete(id);
  }

  /** The Set-Cookie value that gives the browser session `id` (or clears it when undefined). */
  cookie(id: string | undefined, secure: boolean): string {
    const attrs = ['Path=/', 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])];
    return id === undefined ? `${COOKIE}=; Max-Age=0; ${attrs.join('; ')}` : `${COOKIE}=${id}; Max-Age=${Math.floor(this.#ttlMs / 1000)}; ${attrs.join('; ')}`;
  }
}

/** The value of cookie `name` in a request, if any. */
export function cookieOf(req: IncomingMessage, name: string): string | undefined {
  const h = req.headers.cookie;
  if (!h) return undefined;
  for (const part of h.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/**
 * Whether a request is authenticated: a live session cookie, or `authorization: Bearer <token>` with
 * an accepted control token (for scripts and probes that do not log in).
 */
export function authenticated(req: IncomingMessage, sessions: Sessions, tokens: TokenSet): boolean {
  if (sessions.valid(cookieOf(req, COOKIE))) return true;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m?.[1] !== undefined && tokens.accepts(m[1]);
}
