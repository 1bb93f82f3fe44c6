/**
 * The control API's protos, loaded once with proto-loader, and the wire shapes they decode to.
 *
 * proto-loader gives untyped service definitions; this file is the one place that states the decoded
 * shapes (`keepCase: false` → camelCase fields, `longs: Number`, `defaults: true` → absent scalars and
 * repeated/map fields read as their zero values, absent sub-messages as `null`). The conversions between
 * the wire shapes and the `ControlPlane` types live here too, so server and client cannot drift apart.
 */
import { fileURLToPath } from 'node:url';
import { load, type MethodDefinition, type Options, type PackageDefinition, type ServiceDefinition } from '@grpc/proto-loader';
import { SluiceError } from '../../bindings/errors.ts';
import type { FunctionStatus, LogLine } from '../control-plane.ts';

/** Folder holding the `.proto` files (`sluice/v1/control.proto`, `externalscaler/externalscaler.proto`). */
export const PROTO_ROOT = fileURLToPath(new URL('./proto/', import.meta.url));

const LOADER_OPTIONS: Options = {
  includeDirs: [PROTO_ROOT],
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  // Lets `optional` fields (InvokeRequest.body) tell "absent" from "empty".
  oneofs: true,
};

// ---- wire shapes (decoded messages) ------------------------------------------------------------

export interface DeployRequest { specYaml: string; specDir: string }
export interface DeployResponse { name: string; revision: number }
export interface NameRequest { name: string }
export interface DeleteResponse { removed: boolean }
export type ListRequest = Record<string, never>;
export interface ListResponse { functions: { name: string; revision: number; replicas: number }[] }
export interface WireShardStatus { shard: number; owner: string; epoch: number; lag: number; pending: number }
export interface WireFunctionStatus {
  name: string;
  revision: number;
  replicas: { desired: number; ready: number } | null;
  shards: WireShardStatus[];
  lag: number;
  ratePerSecond: number;
  counters: Record<string, number>;
  deadLetters: number;
  errors: { at: string; message: string }[];
  restarts: number;
  lastError: { at: string; message: string } | null;
  queryRuns?: { id: string; startedAt: string; finishedAt: string; matched: number; processed: number; failed: number }[];
}
export interface ScaleRequest { name: string; replicas: number }
export type ScaleResponse = Record<string, never>;
/** `body` is absent (not merely empty) when the event has none. */
export interface InvokeRequest { name: string; key: string; body?: Uint8Array; attrsJson: string; dryRun: boolean }
export interface InvokeResponse { effectsJson: string }
export interface LogsRequest { name: string; follow: boolean }
export interface WireLogLine { at: string; ordinal: number; level: string; message: string; fieldsJson: string }

/** KEDA's ScaledObjectRef. */
export interface ScaledObjectRef { name: string; namespace: string; scalerMetadata: Record<string, string> }
export interface IsActiveResponse { result: boolean }
export interface GetMetricSpecResponse { metricSpecs: { metricName: string; targetSize: number; targetSizeFloat: number }[] }
export interface GetMetricsRequest { scaledObjectRef: ScaledObjectRef | null; metricName: string }
export interface GetMetricsResponse { metricValues: { metricName: string; metricValue: number; metricValueFloat: number }[] }

// ---- loading ------------------------------------------------------------------------------------

/** A method with its (de)serialisers, typed by the wire shapes above. */
export interface TypedMethod<Req, Res> {
  path: string;
  serialize: (value: Req) => Buffer;
  deserialize: (bytes: Buffer) => Res;
}

export interface LoadedProtos {
  control: ServiceDefinition;
  externalScaler: ServiceDefinition;
}

let loading: Promise<LoadedProtos> | undefined;

/** Loads both protos (once per process). */
export function loadProtos(): Promise<LoadedProtos> {
  loading ??= load(['sluice/v1/control.proto', 'externalscaler/externalscaler.proto'], LOADER_OPTIONS).then((def) => ({
    control: service(def, 'sluice.v1.Control'),
    externalScaler: service(def, 'externalscaler.ExternalScaler'),
  }));
  // A failed load (missing file) must not stick for the life of the process.
  loading.catch(() => { loading = undefined; });
  return loading;
}

function service(def: PackageDefinition, name: string): ServiceDefinition {
  const s = def[name];
  if (s === undefined || 'format' in s) throw new SluiceError('SLUICE_INTERNAL', `proto service ${name} is missing from ${PROTO_ROOT}`);
  return s as ServiceDefinition;
}

/**
 * One method of a loaded service, typed by the caller. The cast is the single point where the proto's
 * shape is trusted to match the interfaces above (the grpc tests round-trip every message).
 */
export function method<Req, Res>(svc: ServiceDefinition, name: string): TypedMethod<Req, Res> {
  const m: MethodDefinition<object, object> | undefined = svc[name];
  if (m === undefined) throw new SluiceError('SLUICE_INTERNAL', `proto method ${name} is missing`);
  return {
    path: m.path,
    serialize: m.requestSerialize as (value: Req) => Buffer,
    deserialize: m.responseDeserialize as (bytes: Buffer) => Res,
  };
}

// ---- JSON fields ------------------------------------------------------------------------------------

/** JSON text of a free-form value; bigints become decimal strings rather than throwing. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? 'null';
}

/** Parses a JSON-object field; empty text is `{}`. `path` names the field in the error. */
export function parseJsonObject(text: string, path: string): Record<string, unknown> {
  if (text === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (cause) {
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${path} is not valid JSON`, { cause });
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${path} must be a JSON object`);
  }
  return v as Record<string, unknown>;
}

/** Parses JSON text of any value; empty text is `undefined`. */
export function parseJson(text: string, path: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${path} is not valid JSON`, { cause });
  }
}

// ---- conversions -----------------------------------------------------------------------------------

export function statusToWire(s: FunctionStatus): WireFunctionStatus {
  return {
    name: s.name,
    revision: s.revision,
    replicas: { desired: s.replicas.desired, ready: s.replicas.ready },
    shards: s.shards.map((sh) => ({ shard: sh.shard, owner: sh.owner, epoch: sh.epoch, lag: sh.lag, pending: sh.pending })),
    lag: s.lag,
    ratePerSecond: s.ratePerSecond,
    counters: { ...s.counters },
    deadLetters: s.deadLetters,
    errors: s.errors.map((e) => ({ at: e.at, message: e.message })),
    restarts: s.restarts,
    lastError: s.lastError ? { at: s.lastError.at, message: s.lastError.message } : null,
    queryRuns: (s.queryRuns ?? []).map((r) => ({ id: r.id, startedAt: r.startedAt, finishedAt: r.finishedAt ?? '', matched: r.matched, processed: r.processed, failed: r.failed })),
  };
}

export function statusFromWire(w: WireFunctionStatus): FunctionStatus {
  return {
    name: w.name,
    revision: w.revision,
    replicas: { desired: w.replicas?.desired ?? 0, ready: w.replicas?.ready ?? 0 },
    shards: w.shards.map((sh) => ({ shard: sh.shard, owner: sh.owner, epoch: sh.epoch, lag: sh.lag, pending: sh.pending })),
    lag: w.lag,
    ratePerSecond: w.ratePerSecond,
    counters: { ...w.counters },
    deadLetters: w.deadLetters,
    errors: w.errors.map((e) => ({ at: e.at, message: e.message })),
    restarts: w.restarts,
    ...(w.lastError ? { lastError: { at: w.lastError.at, message: w.lastError.message } } : {}),
    ...(w.queryRuns && w.queryRuns.length > 0
      ? { queryRuns: w.queryRuns.map((r) => ({ id: r.id, startedAt: r.startedAt, ...(r.finishedAt ? { finishedAt: r.finishedAt } : {}), matched: Number(r.matched), processed: Number(r.processed), failed: Number(r.failed) })) }
      : {}),
  };
}

export function logToWire(l: LogLine): WireLogLine {
  return { at: l.at, ordinal: l.ordinal, level: l.level, message: l.message, fieldsJson: toJson(l.fields) };
}

export function logFromWire(w: WireLogLine): LogLine {
  return { at: w.at, ordinal: w.ordinal, level: w.level, message: w.message, fields: parseJsonObject(w.fieldsJson, 'LogLine.fields_json') };
}
