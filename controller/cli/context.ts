/**
 * What every CLI command shares: global options, output (text or --json), the data backend, the
 * control-API client, and the documented exit codes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { ExitCodes, mappingOf } from '../../bindings/error-table.ts';
import { SluiceError } from '../../bindings/errors.ts';
import type { Backend } from '../../bindings/types.ts';
import type { BackendSpec } from '../../runtime/index.ts';

/** Exit codes of `sluice`, documented in `sluice --help` and docs/CLI.md; defined beside the error table. */
export { ExitCodes };

/** What each exit code means: printed by `sluice --help`, and the table of docs/CLI.md (a unit test compares them). */
export const ExitCodeMeanings: { readonly [K in keyof typeof ExitCodes]: string } = {
  ok: 'success',
  failed: 'anything unexpected (an internal error)',
  usage: 'bad usage: unknown command or option, missing or malformed argument',
  notFound: 'the function, bucket, object, table, item, stream or a file named on the command line does not exist',
  invalid: 'invalid input: a malformed spec, expression, key or value, or a value out of range (e.g. scaling past maxReplicas)',
  unauthenticated: 'missing or wrong control token',
  unavailable: 'the backend or the control API cannot be reached',
  conflict: 'a condition failed (--condition, ifMatch, revision); nothing was written',
};

/** Commander argument parser of an integer of at least `min` (a malformed one is bad usage, exit 2). */
export function intArg(min = 0): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`must be an integer of at least ${min}, got '${v}'`);
    return n;
  };
}

/** Global options of every command. */
export interface GlobalOptions {
  /** Print JSON for scripts instead of text. @default false */
  json?: boolean;
  /** Data backend: a directory for the embedded store, or a nats:// URL. @default $SLUICE_DATA or ./.sluice-data */
  data?: string;
  /** Control API address host:port. @default $SLUICE_SERVER or 127.0.0.1:7070 */
  server?: string;
  /** Control API token. @default $SLUICE_TOKEN, else <data>/token written by `sluice dev` */
  token?: string;
}

/** The backend a `--data` value names, with the body store of `$SLUICE_BODIES` (JSON, docs/S3.md) when set. */
export function backendSpec(g: GlobalOptions): BackendSpec {
  const d = g.data ?? process.env.SLUICE_DATA ?? './.sluice-data';
  const spec: BackendSpec = d.startsWith('nats://') ? { kind: 'nats', url: d } : { kind: 'local', dir: resolve(d) };
  const bodies = process.env.SLUICE_BODIES;
  if (bodies !== undefined && bodies !== '') {
    try {
      // Validated field by field when the backend opens (resolveBodyStoreOptions).
      spec.bodies = JSON.parse(bodies) as NonNullable<BackendSpec['bodies']>;
    } catch (cause) {
      throw new SluiceError('SLUICE_INVALID_ARGUMENT', `SLUICE_BODIES must be JSON like {"kind":"s3","endpoint":…,"bucket":…,"accessKeyId":…,"secretAccessKey":…}: ${(cause as Error).message}`, { cause });
    }
  }
  return spec;
}

/** Opens the data backend. */
export async function dataBackend(g: GlobalOptions): Promise<Backend> {
  // Loaded on use: commands that only talk to the control API start faster without the backends.
  const { openBackend } = await import('../../runtime/index.ts');
  return openBackend(backendSpec(g));
}

/** The control API address and token. */
export function controlTarget(g: GlobalOptions): { address: string; token: string } {
  const address = g.server ?? process.env.SLUICE_SERVER ?? '127.0.0.1:7070';
  let token = g.token ?? process.env.SLUICE_TOKEN;
  if (!token) {
    const spec = backendSpec(g);
    const f = spec.kind === 'local' ? join(spec.dir, 'token') : '';
    if (f && existsSync(f)) token = readFileSync(f, 'utf8').trim();
  }
  if (!token) throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'no control token: pass --token, set SLUICE_TOKEN, or run `sluice dev` (it writes <data>/token)');
  return { address, token };
}

/** Prints a result: JSON with --json, else the text rendering. */
export function out(g: GlobalOptions, value: unknown, text: () => string): void {
  process.stdout.write(g.json ? `${JSON.stringify(value, jsonReplacer)}\n` : `${text()}\n`);
}

/** JSON that keeps bytes (base64) and dates (ISO). */
export function jsonReplacer(_k: string, v: unknown): unknown {
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('base64') };
  if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data))
    return { $bytes: Buffer.from((v as { data: number[] }).data).toString('base64') };
  return v;
}

/** Maps an error to the documented exit code: usage errors from commander, else the error table's row. */
export function exitCodeOf(e: unknown): number {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string') return ExitCodes.failed;
  if (code.startsWith('commander.')) return ExitCodes.usage;
  return ExitCodes[mappingOf(code).exit];
}

/** Parses `--attr name=value` style JSON-ish values: numbers, true/false/null, JSON, else strings. */
export function parseValue(s: string): unknown {
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  if (s === 'true' || s === 'false') return s === 'true';
  if (s === 'null') return null;
  if (/^[[{"]/.test(s)) {
    try {
      return JSON.parse(s);
    } catch {
      return s;
    }
  }
  return s;
}

/** Collects repeated options into an array (commander helper). */
export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** Runs `fn` with a backend and closes it. */
export async function withBackend<T>(g: GlobalOptions, fn: (b: Backend) => Promise<T>): Promise<T> {
  const b = await dataBackend(g);
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}
