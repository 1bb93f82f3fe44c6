/**
 * From a validated spec to the configuration of one worker process ({@link WorkerOptions}). Paths
 * become absolute (against the spec's directory), secrets are resolved from the environment, and the
 * trigger kinds the runtime does not run yet are refused here, at deploy time, rather than by a
 * worker that would crash-loop.
 */
import { resolve } from 'node:path';
import type { BackendSpec } from '../../runtime/backend-spec.ts';
import type { Trigger, WorkerOptions } from '../../runtime/worker-options.ts';
import { resolveWorkerOptions } from '../../runtime/worker-options.ts';
import { SluiceError } from '../../bindings/errors.ts';
import { tickStreamName } from '../../runtime/triggers/cron.ts';
import { runStreamName, type QuerySchedule } from '../../runtime/triggers/query.ts';
import { durationMs } from './schema.ts';
import { SpecError } from './errors.ts';
import type { FunctionSpec, TriggerSpec } from './types.ts';

/**
 * The NATS backend as the worker receives it, with the auth token resolved from `tokenSecret`.
 */
export type NatsWorkerBackend = Extract<BackendSpec, { kind: 'nats' }> & { token?: string };

/** Options of {@link toWorkerOptions}. */
export interface ToWorkerOptionsOptions {
  /** Directory of the spec file: the handler path and a local backend's dir are relative to it. */
  specDir: string;
  /** Ordinal of the worker, 0..replicas-1. */
  ordinal: number;
  /** Workers of the function. */
  replicas: number;
  /** Environment that `fromEnv` secrets are read from. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * The value of the secret `name` of the spec: its `value`, or the environment variable its `fromEnv`
 * names. Errors name the secret and the variable, never a value.
 */
export function resolveSecret(spec: FunctionSpec, name: string, env: Readonly<Record<string, string | undefined>> = process.env): string {
  const i = spec.spec.secrets.findIndex((s) => s.name === name);
  const s = spec.spec.secrets[i];
  if (s === undefined) throw new SpecError([{ path: 'spec.secrets', message: `has no secret named ${JSON.stringify(name)}` }]);
  if (s.value !== undefined) return s.value;
  const v = env[s.fromEnv];
  if (v === undefined || v === '') throw new SpecError([{ path: `spec.secrets[${i}].fromEnv`, message: `environment variable ${s.fromEnv} (secret ${JSON.stringify(name)}) is not set` }]);
  return v;
}

/** Every secret of the spec resolved, by name (fails on the first that cannot be). */
export function resolveSecrets(spec: FunctionSpec, env: Readonly<Record<string, string | undefined>> = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of spec.spec.secrets) out[s.name] = resolveSecret(spec, s.name, env);
  return out;
}

function trigger(t: TriggerSpec, fn: string): Trigger {
  if (t.object !== undefined) {
    const o = t.object;
    const out: Trigger = { type: 'object', bucket: o.bucket, events: [...o.events] };
    if (o.prefix !== undefined) out.prefix = o.prefix;
    if (o.suffix !== undefined) out.suffix = o.suffix;
    if (o.inlineBodyMaxBytes !== undefined) out.inlineBodyMaxBytes = o.inlineBodyMaxBytes;
    if (o.selfTrigger !== undefined) out.selfTrigger = o.selfTrigger;
    return out;
  }
  if (t.stream !== undefined) return { type: 'stream', stream: t.stream.stream, ...(t.stream.selfTrigger !== undefined ? { selfTrigger: t.stream.selfTrigger } : {}) };
  if (t.cron !== undefined) {
    const c = t.cron;
    const stream = tickStreamName(fn);
    if (stream.length > 63) throw new SpecError([{ path: 'metadata.name', message: `is too long for a cron trigger (its tick stream ${stream} exceeds 63 characters)` }]);
    return { type: 'stream', stream, cron: { schedule: c.schedule, catchUp: c.catchUp, overlap: c.overlap, ...(c.timezone !== undefined ? { timezone: c.timezone } : {}) } };
  }
  if (t.query !== undefined) {
    const q = t.query;
    if (q.continuous === true) return { type: 'object', bucket: q.bucket, events: [...(q.events ?? ['put'])], where: q.where, ...(q.prefix !== undefined ? { prefix: q.prefix } : {}) };
    const feed = runStreamName(fn);
    if (feed.length > 63) throw new SpecError([{ path: 'metadata.name', message: `is too long for a query trigger (its run stream ${feed} exceeds 63 characters)` }]);
    const query: QuerySchedule = { where: q.where };
    if (q.prefix !== undefined) query.prefix = q.prefix;
    if (q.schedule !== undefined) query.schedule = q.schedule;
    if (q.timezone !== undefined) query.timezone = q.timezone;
    if (q.every !== undefined) query.everyMs = durationMs(q.every);
    if (q.pageSize !== undefined) query.pageSize = q.pageSize;
    return { type: 'object', bucket: q.bucket, events: ['put'], where: q.where, feed, query, ...(q.prefix !== undefined ? { prefix: q.prefix } : {}) };
  }
  const h = t.http!;
  return {
    type: 'http',
    path: h.path,
    ...(h.methods !== undefined ? { methods: [...h.methods] } : {}),
    ...(h.maxBodyBytes !== undefined ? { maxBodyBytes: h.maxBodyBytes } : {}),
    ...(h.streamBodyBytes !== undefined ? { streamBodyBytes: h.streamBodyBytes } : {}),
    ...(h.concurrency !== undefined ? { concurrency: h.concurrency } : {}),
    ...(h.maxQueue !== undefined ? { maxQueue: h.maxQueue } : {}),
    ...(h.isolation !== undefined ? { isolation: h.isolation } : {}),
  };
}

/** Copies the keys of `from` whose value is defined (exactOptionalPropertyTypes forbids `key: undefined`). */
function defined<T extends object>(from: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(from).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/**
 * The configuration of worker `ordinal` of `replicas` for this spec. Throws {@link SpecError} for a
 * reserved trigger kind or an unresolvable secret, and `SLUICE_INVALID_ARGUMENT` when the result would
 * not pass the worker's own validation (checked here so a bad deploy fails before any process starts).
 */
export function toWorkerOptions(spec: FunctionSpec, options: ToWorkerOptionsOptions): WorkerOptions {
  const s = spec.spec;
  const env = options.env ?? process.env;
  const first = s.triggers[0];
  if (first === undefined) throw new SpecError([{ path: 'spec.triggers', message: 'must have exactly one entry' }]);

  let backend: BackendSpec;
  if (s.backend.kind === 'local') backend = { kind: 'local', dir: resolve(options.specDir, s.backend.dir) };
  else {
    const nats: NatsWorkerBackend = { kind: 'nats', url: s.backend.url };
    if (s.backend.prefix !== undefined) nats.prefix = s.backend.prefix;
    if (s.backend.tokenSecret !== undefined) nats.token = resolveSecret(spec, s.backend.tokenSecret, env);
    if (s.backend.replicas !== undefined) nats.replicas = s.backend.replicas;
    if (s.backend.user !== undefined && s.backend.passwordSecret !== undefined) {
      nats.user = s.backend.user;
      nats.pass = resolveSecret(spec, s.backend.passwordSecret, env);
    }
    if (s.backend.tls !== undefined) {
      const t = s.backend.tls;
      nats.tls = {
        ...(t.caFile !== undefined ? { caFile: resolve(options.specDir, t.caFile) } : {}),
        ...(t.certFile !== undefined ? { certFile: resolve(options.specDir, t.certFile) } : {}),
        ...(t.keyFile !== undefined ? { keyFile: resolve(options.specDir, t.keyFile) } : {}),
      };
    }
    backend = nats;
  }
  if (s.backend.bodies !== undefined) {
    // The credentials come from the spec's secrets (DESIGN invariant 5), resolved here like the NATS token.
    const { accessKeyIdSecret, secretAccessKeySecret, ...rest } = s.backend.bodies;
    backend.bodies = { ...defined(rest), kind: 's3', endpoint: rest.endpoint, bucket: rest.bucket, accessKeyId: resolveSecret(spec, accessKeyIdSecret, env), secretAccessKey: resolveSecret(spec, secretAccessKeySecret, env) };
  }

  const o: WorkerOptions = {
    function: spec.metadata.name,
    module: resolve(options.specDir, s.handler),
    trigger: trigger(first, spec.metadata.name),
    backend,
    ordinal: options.ordinal,
    replicas: options.replicas,
    // replicas only matter where a resource is created (sluice dev), not to the worker.
    bindings: s.bindings.map(({ name, kind, resource, access }) => ({ name, kind, resource, access })),
  };
  // The handler's secrets: every entry but the backend's token (a handler reaches the backend only
  // through its declared bindings — least privilege, DESIGN invariant 5).
  const tokenSecret = s.backend.kind === 'nats' ? s.backend.tokenSecret : undefined;
  const handlerSecrets = s.secrets.filter((x) => x.name !== tokenSecret);
  if (handlerSecrets.length > 0) o.secrets = Object.fromEntries(handlerSecrets.map((x) => [x.name, resolveSecret(spec, x.name, env)]));
  if (s.batch !== undefined) o.batch = defined(s.batch);
  if (s.retries !== undefined) {
    const { deadLetter, ...r } = s.retries;
    o.retries = defined(r);
    if (deadLetter !== undefined) o.retries.deadLetterStream = deadLetter.stream;
  }
  if (s.concurrency?.threads !== undefined) o.threads = s.concurrency.threads;
  if (s.concurrency?.batchesInFlight !== undefined) o.batchesInFlight = s.concurrency.batchesInFlight;
  if (s.timeout !== undefined) o.timeout = s.timeout;
  // The platform's default travels in the worker options, so it reaches workers whatever their environment.
  const platformHops = env.SLUICE_MAX_HOPS;
  if (s.maxHops !== undefined) o.maxHops = s.maxHops;
  else if (platformHops !== undefined && platformHops !== '') {
    const n = Number(platformHops);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `SLUICE_MAX_HOPS (the platform's default of spec.maxHops) must be an integer from 1 to 1000, got ${JSON.stringify(platformHops)}`);
    o.maxHops = n;
  }
  if (s.bisectOnError !== undefined) o.bisectOnError = s.bisectOnError;

  try {
    resolveWorkerOptions(o);
  } catch (e) {
    if (e instanceof SluiceError) throw e;
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `worker options of ${spec.metadata.name}: ${(e as Error).message}`, { cause: e });
  }
  return o;
}
