/**
 * The function spec (`apiVersion: sluice.dev/v1`, `kind: Function`) as ONE zod schema: strict objects
 * everywhere (an unknown key is an error, never silently ignored), defaults applied here, TypeScript
 * types derived from it (`types.ts`). Messages are short phrases ("must be a positive integer"); the
 * loader (`load.ts`) prefixes them with the file position and the path, and appends the offending value.
 *
 * Worker-level knobs (batch, concurrency, retries, timeout) carry no defaults here on purpose:
 * `resolveWorkerOptions` owns them, so there is one place that decides a default and the spec cannot
 * drift from the worker. Their documented defaults are repeated in the TSDoc for readers.
 */
import { z } from 'zod';
import { parseCondition } from '../../bindings/expr/index.ts';
import { parseCron } from '../../runtime/triggers/cron.ts';

/** A `sluice.dev/v1` Function's API version and kind. */
export const SpecApiVersion = 'sluice.dev/v1';
export const SpecKind = 'Function';

const DURATION = /^\d+(?:\.\d+)?(?:ms|s|m|h)$/;

/** A duration: a number of milliseconds, or a string like '250ms', '30s', '5m', '1h'. */
const DURATION_MESSAGE = "must be a duration (a number of ms, or like '250ms', '30s', '5m', '1h')";
// The message sits on each branch too: when one branch matches the type (a string that misses the
// pattern), zod reports that branch's issue rather than the union's.
export const durationSchema = z.union([z.number().finite({ error: DURATION_MESSAGE }).nonnegative({ error: DURATION_MESSAGE }), z.string().regex(DURATION, { error: DURATION_MESSAGE })], {
  error: DURATION_MESSAGE,
});

/** Milliseconds of a duration that {@link durationSchema} accepted. */
export function durationMs(d: number | string): number {
  if (typeof d === 'number') return d;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(d);
  if (!m) throw new TypeError(`not a duration: ${JSON.stringify(d)}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
}

/** An integer from `min` to `max`, with messages that say which bound failed. */
function int(min: number, max?: number) {
  const lower = min === 1 ? 'must be a positive integer' : min === 0 ? 'must be a non-negative integer' : `must be an integer of at least ${min}`;
  const s = z.number({ error: lower }).int({ error: lower }).min(min, { error: lower });
  return max === undefined ? s : s.max(max, { error: `must be at most ${max}` });
}

const nonEmpty = (what = 'must be a non-empty string') => z.string({ error: what }).min(1, { error: what });

/** Bucket, stream and resource names: what the bindings accept (checked again by the backend). */
/**
 * Copies of a bucket, table or stream when sluice creates it (NATS: JetStream replicas; local: ignored,
 * one machine keeps one copy). Same range as the bindings' own check (bindings/backend-helpers.ts).
 */
const resourceReplicas = () => int(1, 5).optional();
const resourceName = () => z.string({ error: 'must be a name' }).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/, { error: "must be a name of letters, digits, '_', '.', '-' (up to 255)" });

/** A Kubernetes label key (optional DNS-subdomain prefix) and value, so labels can go onto objects. */
const labelKey = /^(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const labelValue = /^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

const metadataSchema = z.strictObject({
  /** 1–63 lowercase letters, digits and '-', starting and ending with a letter or digit (a DNS label). */
  name: z.string({ error: 'must be a string' }).regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, {
    error: "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit",
  }),
  /** Labels copied onto every object the function runs as. @default {} */
  labels: z
    .record(z.string(), z.string({ error: 'must be a string' }).regex(labelValue, { error: 'must be a label value (up to 63 letters, digits, -, _, .)' }))
    .check((ctx) => {
      // Checked here rather than with a key schema so the issue points at the key itself.
      for (const k of Object.keys(ctx.value)) {
        if (!labelKey.test(k)) ctx.issues.push({ code: 'custom', input: k, path: [k], params: { quiet: true }, message: 'is not a label key (optional prefix/, then up to 63 letters, digits, -, _, .)' });
      }
    })
    .default({}),
});

/** `backend.bodies`: object bodies in an S3-compatible store (bindings/body-store.ts documents every field). */
const bodiesSchema = z.strictObject({
  kind: z.literal('s3', { error: "must be 's3'" }),
  /** Endpoint URL of the S3-compatible service. */
  endpoint: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  /** Bucket holding the bodies; it must exist. */
  bucket: nonEmpty('must be the name of an S3 bucket'),
  /** Name of an entry of `spec.secrets` holding the access key id. */
  accessKeyIdSecret: nonEmpty('must be the name of a secret'),
  /** Name of an entry of `spec.secrets` holding the secret access key. */
  secretAccessKeySecret: nonEmpty('must be the name of a secret'),
  /** Signing region. @default 'us-east-1' */
  region: nonEmpty().optional(),
  /** Path-style addressing. @default true */
  forcePathStyle: z.boolean({ error: 'must be true or false' }).optional(),
  /** Prefix of every key sluice writes in the bucket. @default '' */
  prefix: z.string({ error: 'must be a string' }).max(256, { error: 'must be at most 256 characters' }).optional(),
  /** Bodies up to this many bytes stay in the backend. @default 65536 */
  inlineMaxBytes: int(0, 512 * 1024).optional(),
});

const localBackendSchema = z.strictObject({
  kind: z.literal('local'),
  /** Data directory, relative to the spec file. @default './.sluice-data' */
  dir: nonEmpty().default('./.sluice-data'),
  /** Object bodies in an S3-compatible store. @default undefined (bodies in the data directory) */
  bodies: bodiesSchema.optional(),
});

const natsBackendSchema = z.strictObject({
  kind: z.literal('nats'),
  /** Server URL(s), comma-separated, e.g. 'nats://nats.sluice:4222'. */
  url: nonEmpty('must be the URL of a NATS server'),
  /** Prefix of every stream and KV bucket sluice creates. @default the backend's */
  prefix: z.string({ error: 'must be a string' }).regex(/^[A-Za-z0-9_-]*$/, { error: "must hold only letters, digits, '_' and '-'" }).optional(),
  /** Name of an entry of `spec.secrets` holding the NATS auth token. */
  tokenSecret: nonEmpty('must be the name of a secret').optional(),
  /** Object bodies in an S3-compatible store. @default undefined (bodies in NATS) */
  bodies: bodiesSchema.optional(),
  /** NATS user the workers connect as (e.g. the function's own user, controller/nats-users.ts). @default none */
  user: nonEmpty('must be a NATS user name').optional(),
  /** Name of an entry of `spec.secrets` holding the password of `user`. */
  passwordSecret: nonEmpty('must be the name of a secret').optional(),
  /** TLS to the NATS servers; paths relative to the spec file. `certFile` + `keyFile` present a client certificate (mTLS). @default plaintext */
  tls: z.strictObject({ caFile: nonEmpty().optional(), certFile: nonEmpty().optional(), keyFile: nonEmpty().optional() }).optional(),
  /** JetStream replicas of the streams and KV buckets the function's workers create. @default 'auto' (3 on a cluster, else 1) */
  replicas: z.union([z.literal('auto'), z.number().int().min(1).max(5)], { error: "must be 'auto' or an integer from 1 to 5" }).optional(),
});

const backendSchema = z.discriminatedUnion('kind', [localBackendSchema, natsBackendSchema], { error: "must be one of 'local', 'nats'" });

const eventsSchema = z.array(z.enum(['put', 'delete', 'attrs'], { error: "must be one of 'put', 'delete', 'attrs'" }), { error: 'must be a list of event types' });

const objectTriggerSchema = z.strictObject({
  bucket: resourceName(),
  /** Replicas of the bucket when `sluice dev` creates it (an existing bucket keeps its own). @default backend.replicas */
  replicas: resourceReplicas(),
  /** Event types delivered. @default ['put'] */
  events: eventsSchema
    .min(1, { error: 'must name at least one event type' })
    .refine((e) => new Set(e).size === e.length, { error: 'must not repeat an event type' })
    .default(['put']),
  /** Only keys starting with this. @default '' */
  prefix: z.string({ error: 'must be a string' }).optional(),
  /** Only keys ending with this. @default '' */
  suffix: z.string({ error: 'must be a string' }).optional(),
  /** Bodies up to this size come inline with the batch. @default 65536 */
  inlineBodyMaxBytes: int(0, 4 * 1024 * 1024).optional(),
  /** Deliver the change records of this function's own commits too (only `maxHops` then stops a loop). @default false */
  selfTrigger: z.boolean({ error: 'must be true or false' }).optional(),
});

const streamTriggerSchema = z.strictObject({
  stream: resourceName(),
  /** Replicas of the stream when `sluice dev` creates it (an existing stream keeps its own). @default backend.replicas */
  replicas: resourceReplicas(),
  /** Deliver the records this function's own commits emitted to the stream too. @default false */
  selfTrigger: z.boolean({ error: 'must be true or false' }).optional(),
});

const httpTriggerSchema = z.strictObject({
  /** The route: requests to this path (and below it) reach the function through the platform's HTTP ingress. */
  path: z.string({ error: 'must be a string' }).regex(/^\/\S*$/, { error: "must be a URL path starting with '/'" }),
  /** Methods accepted (others get 405). @default every method */
  methods: z.array(z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], { error: 'must be one of GET, HEAD, POST, PUT, PATCH, DELETE' })).min(1, { error: 'must name at least one method' }).optional(),
  /** Largest request body (413 past it). @default 8388608 */
  maxBodyBytes: int(0, 1024 * 1024 * 1024).optional(),
  /** Request bodies up to this size reach the handler whole (`req.body`); larger ones stream (`req.bodyStream`). @default 1048576 */
  streamBodyBytes: int(0, 1024 * 1024 * 1024).optional(),
  /** Requests one handler thread works on at once. @default 16 */
  concurrency: int(1, 10_000).optional(),
  /** Requests waiting for a thread per worker; past it, 429 with Retry-After. @default 64 */
  maxQueue: int(0, 100_000).optional(),
  /** Where handlers run: `thread` (handler threads; a runaway handler is killed) or `inline` (the worker's event loop; faster, no kill). @default 'thread' */
  isolation: z.enum(['thread', 'inline'], { error: "must be 'thread' or 'inline'" }).optional(),
});

const cronTriggerSchema = z
  .strictObject({
    /** Cron expression: 5 fields, or 6 with seconds first (croner syntax). */
    schedule: nonEmpty('must be a cron expression'),
    /** IANA time zone the expression is read in. @default the worker's local zone */
    timezone: nonEmpty('must be an IANA time zone').optional(),
    /** Instants missed while no worker ran: none | one (the latest, once) | all. @default 'one' */
    catchUp: z.enum(['none', 'one', 'all'], { error: "must be one of 'none', 'one', 'all'" }).default('one'),
    /** An instant reached while the previous tick is unhandled: skip it, or queue it. @default 'skip' */
    overlap: z.enum(['skip', 'queue'], { error: "must be one of 'skip', 'queue'" }).default('skip'),
  })
  .check((ctx) => {
    // croner is the one cron parser: the spec refuses what the worker's ticker could not run.
    try {
      parseCron(ctx.value.schedule, ctx.value.timezone);
    } catch (e) {
      const path = /time ?zone/i.test((e as Error).message) && ctx.value.timezone !== undefined ? 'timezone' : 'schedule';
      ctx.issues.push({ code: 'custom', input: ctx.value.schedule, path: [path], message: `is not valid: ${(e as Error).message}` });
    }
  });

const queryTriggerSchema = z
  .strictObject({
    bucket: resourceName(),
    /** Replicas of the bucket when `sluice dev` creates it (an existing bucket keeps its own). @default backend.replicas */
    replicas: resourceReplicas(),
    /** The condition (expression language) objects must meet, e.g. `attribute_not_exists(backed_up_etag) OR backed_up_etag <> etag`. */
    where: nonEmpty('must be a condition expression'),
    /** Only keys starting with this. @default '' */
    prefix: z.string().optional(),
    /** Runs on a cron schedule (6 fields allowed). One of schedule, every, continuous. */
    schedule: nonEmpty('must be a cron expression').optional(),
    /** IANA time zone of `schedule`. @default the worker's local zone */
    timezone: nonEmpty('must be an IANA time zone').optional(),
    /** Runs every this long ('5m'); the first run starts at deploy. One of schedule, every, continuous. */
    every: durationSchema.optional(),
    /** Delivers every change whose new state matches `where`, as it happens. One of schedule, every, continuous. */
    continuous: z.literal(true, { error: 'must be true (or left out)' }).optional(),
    /** With continuous: the change types considered. @default [put] */
    events: z.array(z.enum(['put', 'attrs'], { error: "must be 'put' or 'attrs'" })).min(1).optional(),
    /** Rows per query page in a scheduled run. @default 500 */
    pageSize: int(1, 10_000).optional(),
  })
  .check((ctx) => {
    const v = ctx.value;
    const modes = [v.schedule !== undefined, v.every !== undefined, v.continuous === true].filter(Boolean).length;
    if (modes !== 1) ctx.issues.push({ code: 'custom', input: v, path: [], message: 'must give exactly one of schedule, every, continuous' });
    if (v.events !== undefined && v.continuous !== true) ctx.issues.push({ code: 'custom', input: v.events, path: ['events'], message: 'only applies to continuous: true' });
    try {
      parseCondition(v.where);
    } catch (e) {
      ctx.issues.push({ code: 'custom', input: v.where, path: ['where'], message: `does not parse: ${(e as Error).message}` });
    }
    if (v.schedule !== undefined) {
      try {
        parseCron(v.schedule, v.timezone);
      } catch (e) {
        ctx.issues.push({ code: 'custom', input: v.schedule, path: ['schedule'], message: `is not valid: ${(e as Error).message}` });
      }
    }
  });

/** Every trigger kind, the reserved ones included (accepted here, refused by `toWorkerOptions`). */
export const TriggerKinds = ['object', 'stream', 'http', 'cron', 'query'] as const;
/** Trigger kinds a worker runs today. */
export const SupportedTriggerKinds = ['object', 'stream', 'http', 'cron', 'query'] as const;

/** Exactly one of the keys of T: what a one-key YAML variant (`- object: {...}`) means. */
type OneOf<T> = { [K in keyof T]-?: { [P in K]-?: Exclude<T[P], undefined> } & { [P in Exclude<keyof T, K>]?: never } }[keyof T];

const triggerObject = z.strictObject({
  object: objectTriggerSchema.optional(),
  stream: streamTriggerSchema.optional(),
  http: httpTriggerSchema.optional(),
  cron: cronTriggerSchema.optional(),
  query: queryTriggerSchema.optional(),
});

// A strict object of optional keys plus an exactly-one check reports problems inside the chosen
// variant precisely (spec.triggers[0].object.colour: unknown key), where a union of one-key objects
// would only say "matches no variant".
const triggerSchema = triggerObject
  .check((ctx) => {
    const keys = TriggerKinds.filter((k) => ctx.value[k] !== undefined);
    if (keys.length !== 1) ctx.issues.push({ code: 'custom', input: ctx.value, message: `must have exactly one of ${TriggerKinds.join(', ')} (got ${keys.length === 0 ? 'none' : keys.join(', ')})` });
  })
  .transform((t) => t as OneOf<z.output<typeof triggerObject>>);

const batchSchema = z.strictObject({
  /** Most records in one batch. @default 100 */
  maxRecords: int(1, 10_000).optional(),
  /** Most bytes (inline bodies + keys) in one batch. @default 1048576 */
  maxBytes: int(1024, 64 * 1024 * 1024).optional(),
  /** Longest wait to fill a batch once one record is there. @default '20ms' */
  maxWait: durationSchema.optional(),
});

const concurrencySchema = z.strictObject({
  /** Handler threads per worker; 0 runs handlers on the worker's main thread. @default 1 */
  threads: int(0, 64).optional(),
  /** Batches in flight per worker. @default threads * 2 */
  batchesInFlight: int(1, 1024).optional(),
});

const retriesSchema = z
  .strictObject({
    /** Attempts per record, the first included. @default 5 */
    maxAttempts: int(1, 1000).optional(),
    /** First backoff, doubling per attempt. @default '200ms' */
    initialBackoff: durationSchema.optional(),
    /** Backoff ceiling. @default '30s' */
    maxBackoff: durationSchema.optional(),
    /** Records older than this are dead-lettered at their next failure. @default '1h' */
    maxRecordAge: durationSchema.optional(),
    /** Where dead letters go. @default stream 'dlq-<function>' */
    deadLetter: z.strictObject({ stream: resourceName() }).optional(),
  })
  .check((ctx) => {
    const { initialBackoff: a, maxBackoff: b } = ctx.value;
    if (a !== undefined && b !== undefined && durationMs(a) > durationMs(b)) {
      ctx.issues.push({ code: 'custom', input: a, path: ['initialBackoff'], message: `must not exceed maxBackoff (${JSON.stringify(b)})` });
    }
  });

const scalingSchema = z
  .strictObject({
    /** Fewest workers; 0 lets the function scale to zero when idle. @default 1 */
    minReplicas: int(0, 1024).default(1),
    /** Most workers. @default 4 */
    maxReplicas: int(1, 1024).default(4),
    /** Lag (records not yet handled) one worker is expected to carry; more lag adds workers. @default 1000 */
    targetLagPerReplica: int(1).default(1000),
    /** Idle time before scaling to zero (only when minReplicas is 0). @default '5m' */
    scaleToZeroAfter: durationSchema.default('5m'),
    /** Function-wide cap on batches in flight, shared out over the replicas. @default no cap */
    maxBatchesInFlight: int(1).optional(),
    /**
     * Who sets the replica count: `sluice` (the controller's own autoscaler) or `keda` (a KEDA ScaledObject
     * over the controller's external scaler; `sluice render k8s` renders it and the controller stops scaling
     * the function itself, so the two never fight). @default 'sluice'
     */
    autoscaler: z.enum(['sluice', 'keda']).default('sluice'),
    stabilization: z
      .strictObject({
        /** Window whose lowest recommendation a scale-up takes. @default '0s' */
        scaleUp: durationSchema.default('0s'),
        /** Window whose highest recommendation a scale-down takes. @default '60s' */
        scaleDown: durationSchema.default('60s'),
      })
      .prefault({}),
  })
  .check((ctx) => {
    if (ctx.value.minReplicas > ctx.value.maxReplicas) {
      ctx.issues.push({ code: 'custom', input: ctx.value.minReplicas, path: ['minReplicas'], message: `must not exceed maxReplicas (${ctx.value.maxReplicas})` });
    }
  });

const bindingSchema = z.strictObject({
  /** Property of `ctx.data` the handler reaches the binding through. */
  name: z.string({ error: 'must be a string' }).regex(/^[A-Za-z_$][A-Za-z0-9_$]*$/, { error: 'must be an identifier (letters, digits, _ or $, not starting with a digit)' }),
  /** `object-files`: the bucket's objects as read-only files, paths `<bucket>/<key>` (access must be 'read'). */
  kind: z.enum(['object', 'kv', 'stream', 'file', 'object-files'], { error: "must be one of 'object', 'kv', 'stream', 'file', 'object-files'" }),
  /** Bucket, table, stream name, file root, or (object-files) bucket. */
  resource: nonEmpty(),
  access: z.enum(['read', 'read-write'], { error: "must be one of 'read', 'read-write'" }),
  /** Replicas of the bucket / table when `sluice dev` creates it (object and kv bindings only). @default backend.replicas */
  replicas: resourceReplicas(),
}).check((ctx) => {
  if (ctx.value.replicas !== undefined && ctx.value.kind !== 'object' && ctx.value.kind !== 'kv')
    ctx.issues.push({ code: 'custom', input: ctx.value.replicas, path: ['replicas'], message: `applies to object and kv bindings only, not '${ctx.value.kind}'` });
  if (ctx.value.kind === 'object-files' && ctx.value.access !== 'read')
    ctx.issues.push({ code: 'custom', input: ctx.value.access, path: ['access'], message: "must be 'read' for an object-files binding (object bodies as files are read-only)" });
});

const secretObject = z.strictObject({
  name: z.string({ error: 'must be a string' }).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, { error: "must be 1-63 letters, digits, '_', '.' or '-'" }),
  /** Name of the environment variable holding the value (of the controller or worker process). */
  fromEnv: z.string({ error: 'must be a string' }).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'must be an environment variable name' }).optional(),
  /** The value itself (prefer fromEnv: a value in a spec file lives in version control). */
  value: z.string({ error: 'must be a string' }).optional(),
});

type SecretFields = z.output<typeof secretObject>;

const secretSchema = secretObject
  .check((ctx) => {
    const n = (ctx.value.fromEnv === undefined ? 0 : 1) + (ctx.value.value === undefined ? 0 : 1);
    if (n !== 1) ctx.issues.push({ code: 'custom', input: undefined, message: 'must have exactly one of fromEnv, value' });
  })
  .transform((s) => s as Pick<SecretFields, 'name'> & OneOf<Omit<SecretFields, 'name'>>);

/** Reports the second and later entries whose `key` repeats an earlier one. */
function unique<T>(key: (t: T) => string, field: string) {
  return (ctx: z.core.ParsePayload<T[]>) => {
    const seen = new Set<string>();
    ctx.value.forEach((t, i) => {
      const k = key(t);
      if (seen.has(k)) ctx.issues.push({ code: 'custom', input: k, path: [i, field], message: `repeats an earlier entry's ${field}` });
      seen.add(k);
    });
  };
}

const specBody = z.strictObject({
  /** Path of the function module (default export from defineFunction), relative to the spec file. */
  handler: nonEmpty('must be the path of the function module'),
  /** Where the data lives. The same function moves from laptop to cluster by changing only this. @default {kind: local} */
  backend: backendSchema.prefault({ kind: 'local' }),
  /** What starts the function: exactly one entry for now. */
  triggers: z.array(triggerSchema, { error: 'must be a list of triggers' }).length(1, { error: 'must have exactly one entry (several triggers per function are not supported yet)' }),
  batch: batchSchema.optional(),
  concurrency: concurrencySchema.optional(),
  retries: retriesSchema.optional(),
  /** A handler running longer is stopped and its batch retried. @default '30s' */
  timeout: durationSchema.optional(),
  /** Chain depth (function commits that led to a record) at which it is dead-lettered with SLUICE_HOP_LIMIT instead of run. @default $SLUICE_MAX_HOPS, else 8 */
  maxHops: int(1, 1000).optional(),
  /** Halve a batch whose handler throws until the failing record is isolated; only it is retried. @default true */
  bisectOnError: z.boolean({ error: 'must be true or false' }).optional(),
  scaling: scalingSchema.prefault({}),
  /** Bindings the handler may reach as `ctx.data.<name>`, with the declared access. @default [] */
  bindings: z.array(bindingSchema, { error: 'must be a list of bindings' }).check(unique((b) => b.name, 'name')).default([]),
  /** Credentials, by name; never logged. @default [] */
  secrets: z.array(secretSchema, { error: 'must be a list of secrets' }).check(unique((s) => s.name, 'name')).default([]),
});

/** The whole document. */
export const functionSpecSchema = z
  .strictObject({
    apiVersion: z.literal(SpecApiVersion, { error: `must be '${SpecApiVersion}'` }),
    kind: z.literal(SpecKind, { error: `must be '${SpecKind}'` }),
    metadata: metadataSchema,
    spec: specBody,
  })
  .check((ctx) => {
    const b = ctx.value.spec.backend;
    if (b.kind === 'nats' && b.tokenSecret !== undefined && !ctx.value.spec.secrets.some((s) => s.name === b.tokenSecret)) {
      ctx.issues.push({ code: 'custom', input: b.tokenSecret, path: ['spec', 'backend', 'tokenSecret'], message: 'must name an entry of spec.secrets' });
    }
    for (const field of ['accessKeyIdSecret', 'secretAccessKeySecret'] as const) {
      const name = b.bodies?.[field];
      if (name !== undefined && !ctx.value.spec.secrets.some((s) => s.name === name))
        ctx.issues.push({ code: 'custom', input: name, path: ['spec', 'backend', 'bodies', field], message: 'must name an entry of spec.secrets' });
    }
    if (b.kind === 'nats' && b.passwordSecret !== undefined && !ctx.value.spec.secrets.some((s) => s.name === b.passwordSecret)) {
      ctx.issues.push({ code: 'custom', input: b.passwordSecret, path: ['spec', 'backend', 'passwordSecret'], message: 'must name an entry of spec.secrets' });
    }
    if (b.kind === 'nats' && (b.user === undefined) !== (b.passwordSecret === undefined)) {
      ctx.issues.push({ code: 'custom', input: b.user, path: ['spec', 'backend', b.user === undefined ? 'user' : 'passwordSecret'], message: 'user and passwordSecret go together' });
    }
    if (b.kind === 'nats' && b.tls !== undefined && (b.tls.certFile === undefined) !== (b.tls.keyFile === undefined)) {
      ctx.issues.push({ code: 'custom', input: b.tls, path: ['spec', 'backend', 'tls'], message: 'certFile and keyFile go together' });
    }
  });
