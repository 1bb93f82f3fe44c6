/** Options of the web console, in the house's stages: what callers write, then resolved and checked. */
import { SluiceError } from '../../bindings/errors.ts';
import type { Backend } from '../../bindings/types.ts';
import type { ControlPlane } from '../control-plane.ts';

/** What the console asks of the controller: the controller itself in-process, or a `ControlClient`. */
export type ConsoleSource = Pick<ControlPlane, 'list' | 'status' | 'logs'>;

/** Options of {@link startConsole}. */
export interface ConsoleOptions {
  /** The controller (in-process) or a control client (standalone console). Required. */
  plane: ConsoleSource;
  /** The platform's backend: objects, dead-letter streams, the state table. Required. */
  backend: Backend;
  /** Control tokens accepted at login (and as `authorization: Bearer`). Required (or `token`), non-empty. */
  tokens?: readonly string[];
  /** One control token: shorthand for `tokens: [token]`. @default undefined */
  token?: string;
  /** Address to bind, `host:port`; port 0 picks a free one. @default '127.0.0.1:7071' */
  address?: string;
  /** Period of the status sampler behind the functions page and the charts. @default 1000 */
  sampleIntervalMs?: number;
  /** Samples kept per function (the charts' window is this × sampleIntervalMs). @default 600 */
  samplesPerFunction?: number;
  /** Log lines kept per followed function. @default 1000 */
  logLines?: number;
  /** A function's log follow stops after this long without a reader. @default 60000 */
  logIdleMs?: number;
  /** Age of a login session. @default 43200000 (12 h) */
  sessionTtlMs?: number;
  /** Most live sessions; past it the oldest is dropped. @default 1000 */
  maxSessions?: number;
  /** Buckets shown in the object browser besides those the deployed specs name. @default [] */
  buckets?: readonly string[];
  /** Mark the cookie `Secure` (set when a TLS proxy fronts the console). @default false */
  secureCookie?: boolean;
}

export interface ResolvedConsoleOptions {
  readonly plane: ConsoleSource;
  readonly backend: Backend;
  readonly tokens: readonly string[];
  readonly host: string;
  readonly port: number;
  readonly sampleIntervalMs: number;
  readonly samplesPerFunction: number;
  readonly logLines: number;
  readonly logIdleMs: number;
  readonly sessionTtlMs: number;
  readonly maxSessions: number;
  readonly buckets: readonly string[];
  readonly secureCookie: boolean;
}

/** Splits `host:port` (`[::1]:7071` for IPv6); SLUICE_INVALID_ARGUMENT naming `where` when malformed. */
export function parseAddress(address: string, where: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${where} must be host:port (e.g. 127.0.0.1:7071, port 0 for any free port), got '${address}'`);
  return { host: (m[1] ?? m[2])!, port };
}

function int(v: number | undefined, where: string, min: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `console.${where} must be an integer of at least ${min}, got ${String(v)}`);
  return v;
}

export function resolveConsoleOptions(o: ConsoleOptions): ResolvedConsoleOptions {
  if (!o || typeof o.plane?.status !== 'function') throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'console.plane must be a control plane (the controller or a ControlClient)');
  if (typeof o.backend?.objects !== 'function') throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'console.backend must be an open backend');
  const { host, port } = parseAddress(o.address ?? '127.0.0.1:7071', 'console.address');
  return Object.freeze({
    plane: o.plane,
    backend: o.backend,
    tokens: o.tokens ?? (o.token !== undefined ? [o.token] : []),
    host,
    port,
    sampleIntervalMs: int(o.sampleIntervalMs, 'sampleIntervalMs', 50, 1000),
    samplesPerFunction: int(o.samplesPerFunction, 'samplesPerFunction', 2, 600),
    logLines: int(o.logLines, 'logLines', 1, 1000),
    logIdleMs: int(o.logIdleMs, 'logIdleMs', 1000, 60_000),
    sessionTtlMs: int(o.sessionTtlMs, 'sessionTtlMs', 1000, 12 * 3600_000),
    maxSessions: int(o.maxSessions, 'maxSessions', 1, 1000),
    buckets: Object.freeze([...(o.buckets ?? [])]),
    secureCookie: o.secureCookie ?? false,
  });
}
