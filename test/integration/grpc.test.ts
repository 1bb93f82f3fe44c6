/**
 * The control API over real gRPC on loopback: every Control RPC round-trips through ControlClient
 * against an in-memory ControlPlane, bearer tokens are enforced before the plane is touched, sluice
 * errors map to gRPC statuses and come back as the same code, and KEDA's external scaler, called with a
 * client built from externalscaler.proto alone, answers from the lag.
 */
import { Client, credentials, loadPackageDefinition, Metadata, status as Status, type GrpcObject, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { load, type MessageTypeDefinition } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SluiceError, type ErrorCode } from '../../bindings/errors.ts';
import { ControlClient } from '../../controller/grpc/client.ts';
import { loadProtos, method, PROTO_ROOT } from '../../controller/grpc/protos.ts';
import type { ScalerSource } from '../../controller/grpc/scaler.ts';
import { startControlServer, type ControlServer } from '../../controller/grpc/server.ts';
import type { ControlPlane, FunctionStatus, LogLine } from '../../controller/control-plane.ts';

const TOKENS = ['token-one', 'token-two'];
const SCALER_TOKEN = 'scaler-secret';

// ---- fakes ------------------------------------------------------------------------------------------

/** An in-memory controller that records every call, and can be told to fail. */
class FakePlane implements ControlPlane {
  readonly calls: string[] = [];
  readonly functions = new Map<string, { revision: number; replicas: number }>();
  readonly backlog: LogLine[] = [
    { at: '2026-01-01T00:00:00.000Z', ordinal: 1, level: 'info', message: 'started', fields: { worker: 'w-1' } },
    { at: '2026-01-01T00:00:01.000Z', ordinal: 2, level: 'warn', message: 'slow batch', fields: { ms: 912, nested: { ok: true } } },
  ];
  readonly logSignals: AbortSignal[] = [];
  logsEnded = 0;
  /** Thrown by status() when set. */
  failWith: unknown;
  /** Awaited by status() when set, to hold a call in flight. */
  gate: Promise<void> | undefined;
  lastEvent: unknown;
  #waiters = new Set<(line: LogLine | undefined) => void>();

  async deploy(specYaml: string, specDir: string): Promise<{ name: string; revision: number }> {
    this.calls.push('deploy');
    const name = /^name:\s*(\S+)$/m.exec(specYaml)?.[1];
    if (name === undefined) throw new SluiceError('SLUICE_SPEC_INVALID', `spec in ${specDir}: name is required`);
    const revision = (this.functions.get(name)?.revision ?? 0) + 1;
    this.functions.set(name, { revision, replicas: 1 });
    return { name, revision };
  }

  async remove(name: string): Promise<boolean> {
    this.calls.push('remove');
    return this.functions.delete(name);
  }

  async list(): Promise<{ name: string; revision: number; replicas: number }[]> {
    this.calls.push('list');
    return [...this.functions].map(([name, f]) => ({ name, ...f }));
  }

  async status(name: string): Promise<FunctionStatus> {
    this.calls.push('status');
    if (this.gate !== undefined) await this.gate;
    if (this.failWith !== undefined) throw this.failWith;
    const f = this.#get(name);
    return {
      name,
      revision: f.revision,
      replicas: { desired: f.replicas, ready: f.replicas - 1 },
      shards: [
        { shard: 0, owner: 'worker-a', epoch: 7, lag: 120, pending: 3 },
        { shard: 1, owner: '', epoch: 0, lag: 0, pending: 0 },
      ],
      lag: 120,
      ratePerSecond: 41.25,
      counters: { processed: 1_000_000, failed: 2, 'bytes.in': 1.5e12 },
      deadLetters: 2,
      errors: [{ at: '2026-01-01T00:00:02.000Z', message: 'worker-b exited with code 137' }],
      restarts: 3,
      lastError: { at: '2026-01-01T00:00:02.000Z', message: 'worker-b exited with code 137' },
    };
  }

  async scale(name: string, replicas: number): Promise<void> {
    this.calls.push('scale');
    const f = this.#get(name);
    if (replicas > 10) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `replicas of '${name}' must lie in 0..10`);
    f.replicas = replicas;
  }

  async invoke(name: string, event: { key: string; body?: Uint8Array; attrs?: Record<string, unknown> }): Promise<unknown> {
    this.calls.push('invoke');
    this.#get(name);
    this.lastEvent = event;
    return { puts: [{ key: `out/${event.key}`, size: event.body?.length ?? null }], attrs: event.attrs ?? null };
  }

  async *logs(name: string, options: { follow: boolean; signal?: AbortSignal }): AsyncIterable<LogLine> {
    this.calls.push('logs');
    this.#get(name);
    if (options.signal !== undefined) this.logSignals.push(options.signal);
    try {
      yield* this.backlog;
      while (options.follow) {
        const line = await this.#nextLine(options.signal);
        if (line === undefined) return;
        yield line;
      }
    } finally {
      this.logsEnded++;
    }
  }

  /** Appends a line that followers receive. */
  emit(line: LogLine): void {
    for (const w of this.#waiters) w(line);
  }

  #nextLine(signal: AbortSignal | undefined): Promise<LogLine | undefined> {
    return new Promise((resolve) => {
      const done = (line: LogLine | undefined): void => {
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', onAbort);
        resolve(line);
      };
      const onAbort = (): void => done(undefined);
      if (signal?.aborted === true) return done(undefined);
      this.#waiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #get(name: string): { revision: number; replicas: number } {
    const f = this.functions.get(name);
    if (f === undefined) throw new SluiceError('SLUICE_NOT_FOUND', `function '${name}' is not deployed`);
    return f;
  }
}

/** Lag per function; activity follows every lag change (repeats included: the server dedupes). */
class FakeScaler implements ScalerSource {
  readonly lags = new Map<string, number>([['thumbs', 0]]);
  activityEnded = 0;
  activityYields = 0;
  #listeners = new Set<() => void>();

  setLag(fn: string, lag: number): void {
    this.lags.set(fn, lag);
    for (const l of [...this.#listeners]) l();
  }

  async lag(name: string): Promise<number> {
    const v = this.lags.get(name);
    if (v === undefined) throw new SluiceError('SLUICE_NOT_FOUND', `function '${name}' is not deployed`);
    return v;
  }

  async targetLagPerReplica(): Promise<number> {
    return 100;
  }

  async *activity(name: string, options: { signal?: AbortSignal } = {}): AsyncIterable<boolean> {
    const { signal } = options;
    try {
      while (signal?.aborted !== true) {
        const active = (await this.lag(name)) > 0;
        this.activityYields++;
        yield active;
        await new Promise<void>((resolve) => {
          const wake = (): void => {
            this.#listeners.delete(wake);
            signal?.removeEventListener('abort', wake);
            resolve();
          };
          this.#listeners.add(wake);
          signal?.addEventListener('abort', wake, { once: true });
        });
      }
    } finally {
      this.activityEnded++;
    }
  }
}

// ---- helpers ----------------------------------------------------------------------------------------

async function eventually(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

const bearer = (token: string): Metadata => {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
};

function sluiceCodeOf(err: ServiceError): string | undefined {
  const v = err.metadata.get('sluice-code')[0];
  return v === undefined ? undefined : String(v);
}

let plane: FakePlane;
let scaler: FakeScaler;
let server: ControlServer;
let address: string;
let client: ControlClient;
let raw: Client;
let keda: InstanceType<ServiceClientConstructor>;
let kedaDef: GrpcObject;

/** A Control call made without ControlClient, to see the raw status and metadata. */
async function rawCall<Req, Res>(rpc: string, req: Req, md: Metadata): Promise<{ err: ServiceError | null; res: Res | undefined }> {
  const m = method<Req, Res>((await loadProtos()).control, rpc);
  return new Promise((resolve) => {
    raw.makeUnaryRequest(m.path, m.serialize, m.deserialize, req, md, (err, res) => resolve({ err, res }));
  });
}

/** A unary ExternalScaler call through the client built from externalscaler.proto. */
function kedaCall<Res>(rpc: 'IsActive' | 'GetMetricSpec' | 'GetMetrics', req: object, md = new Metadata(), on = keda): Promise<Res> {
  const fn = on[rpc] as (req: object, md: Metadata, cb: (err: ServiceError | null, res?: Res) => void) => void;
  return new Promise((resolve, reject) => fn.call(on, req, md, (err, res) => (err !== null ? reject(err) : resolve(res as Res))));
}

function kedaStream(req: object, on = keda): AsyncIterator<{ result: boolean }> & { cancel(): void } {
  const fn = on['StreamIsActive'] as (req: object, md: Metadata) => NodeJS.ReadableStream & { cancel(): void };
  const call = fn.call(on, req, new Metadata());
  const it = (call as AsyncIterable<{ result: boolean }>)[Symbol.asyncIterator]();
  return Object.assign(it, { cancel: () => call.cancel() });
}

beforeAll(async () => {
  plane = new FakePlane();
  scaler = new FakeScaler();
  // The scaler's own behaviour is tested open; its default (a token required) has its own test below.
  server = await startControlServer({ plane, scaler, tokens: TOKENS, scalerTokens: false });
  address = `127.0.0.1:${server.port}`;
  client = await ControlClient.connect(address, 'token-one');
  raw = new Client(address, credentials.createInsecure());
  // KEDA's side: nothing from sluice but the .proto file.
  kedaDef = loadPackageDefinition(await load('externalscaler/externalscaler.proto', { includeDirs: [PROTO_ROOT], longs: Number, defaults: true }));
  const Ctor = (kedaDef['externalscaler'] as GrpcObject)['ExternalScaler'] as ServiceClientConstructor;
  keda = new Ctor(address, credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  raw?.close();
  keda?.close();
  await server?.close();
});

// ---- Control ----------------------------------------------------------------------------------------

describe('grpc - control', () => {
  it('grpc - deploy, list, status, scale, delete round-trip', async () => {
    expect(await client.deploy('name: thumbs\nhandler: ./h.ts\n', '/specs/thumbs')).toEqual({ name: 'thumbs', revision: 1 });
    expect(await client.deploy('name: thumbs\n', '/specs/thumbs')).toEqual({ name: 'thumbs', revision: 2 });
    await client.deploy('name: gone\n', '/specs/gone');
    expect(await client.list()).toEqual([
      { name: 'thumbs', revision: 2, replicas: 1 },
      { name: 'gone', revision: 1, replicas: 1 },
    ]);
    await client.scale('thumbs', 4);
    expect(await client.status('thumbs')).toEqual(await plane.status('thumbs'));
    expect(await client.remove('gone')).toBe(true);
    expect(await client.remove('gone')).toBe(false);
    expect((await client.list()).map((f) => f.name)).toEqual(['thumbs']);
  });

  it('grpc - status carries replicas, shards, counters map, dead letters and errors', async () => {
    const s = await client.status('thumbs');
    expect(s.replicas).toEqual({ desired: 4, ready: 3 });
    expect(s.shards).toEqual([
      { shard: 0, owner: 'worker-a', epoch: 7, lag: 120, pending: 3 },
      { shard: 1, owner: '', epoch: 0, lag: 0, pending: 0 },
    ]);
    expect(s.counters).toEqual({ processed: 1_000_000, failed: 2, 'bytes.in': 1.5e12 });
    expect(s).toMatchObject({ lag: 120, ratePerSecond: 41.25, deadLetters: 2 });
    expect(s.errors).toEqual([{ at: '2026-01-01T00:00:02.000Z', message: 'worker-b exited with code 137' }]);
  });

  it('grpc - invoke keeps an absent body apart from an empty one, and attrs and effects as JSON', async () => {
    expect(await client.invoke('thumbs', { key: 'a.jpg' })).toEqual({ puts: [{ key: 'out/a.jpg', size: null }], attrs: null });
    expect(plane.lastEvent).toEqual({ key: 'a.jpg' });
    await client.invoke('thumbs', { key: 'e.jpg', body: new Uint8Array(0) });
    expect((plane.lastEvent as { body?: Uint8Array }).body?.length).toBe(0);
    const effects = await client.invoke('thumbs', { key: 'b.jpg', body: new Uint8Array([1, 2, 3]), attrs: { w: 64, tags: ['x'] } });
    expect(effects).toEqual({ puts: [{ key: 'out/b.jpg', size: 3 }], attrs: { w: 64, tags: ['x'] } });
    expect([...((plane.lastEvent as { body: Uint8Array }).body)]).toEqual([1, 2, 3]);
    await client.invoke('thumbs', { key: 'd.jpg', dryRun: true });
    expect(plane.lastEvent).toEqual({ key: 'd.jpg', dryRun: true });
  });

  it('grpc - invoke with attrs that are not a JSON object is INVALID_ARGUMENT', async () => {
    const { err } = await rawCall('Invoke', { name: 'thumbs', key: 'k', attrsJson: '[1,2]' }, bearer('token-one'));
    expect(err?.code).toBe(Status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/attrs_json must be a JSON object/);
  });

  it('grpc - logs without follow streams the backlog and ends', async () => {
    const lines: LogLine[] = [];
    for await (const l of client.logs('thumbs', { follow: false })) lines.push(l);
    expect(lines).toEqual(plane.backlog);
  });

  it('grpc - logs with follow streams new lines; aborting the signal ends it and cancels the plane side', async () => {
    const ac = new AbortController();
    const before = plane.logSignals.length;
    const lines: LogLine[] = [];
    const reading = (async () => {
      for await (const l of client.logs('thumbs', { follow: true, signal: ac.signal })) {
        lines.push(l);
        if (lines.length === 2) setTimeout(() => plane.emit({ at: '2026-01-01T00:00:03.000Z', ordinal: 3, level: 'error', message: 'boom', fields: {} }), 20);
        if (lines.length === 3) ac.abort();
      }
    })();
    await reading; // ends quietly on abort
    expect(lines.map((l) => l.ordinal)).toEqual([1, 2, 3]);
    const signal = plane.logSignals[before];
    await eventually(() => signal?.aborted === true, 'the plane-side logs signal to abort');
  });

  it('grpc - breaking out of a followed logs loop cancels the call on the server', async () => {
    const ended = plane.logsEnded;
    for await (const l of client.logs('thumbs', { follow: true })) {
      if (l.ordinal === 2) break;
    }
    await eventually(() => plane.logsEnded === ended + 1, 'the plane-side logs iteration to end');
  });

  it('grpc - logs of an unknown function fail with SLUICE_NOT_FOUND', async () => {
    const err = await caught((async () => {
      for await (const _ of client.logs('nope', { follow: false })) void _;
    })());
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('SLUICE_NOT_FOUND');
  });
});

describe('grpc - authentication', () => {
  it('grpc - a call without a token is UNAUTHENTICATED and the plane is not called', async () => {
    const before = plane.calls.length;
    const { err } = await rawCall('List', {}, new Metadata());
    expect(err?.code).toBe(Status.UNAUTHENTICATED);
    expect(err?.details).toMatch(/authorization: Bearer <token>/);
    expect(sluiceCodeOf(err!)).toBe('SLUICE_UNAUTHENTICATED');
    expect(plane.calls.length).toBe(before);
  });

  it('grpc - a wrong token is UNAUTHENTICATED through ControlClient, for unary and streaming calls, and the plane is not called', async () => {
    const before = plane.calls.length;
    const bad = await ControlClient.connect(address, 'token-three');
    try {
      const e1 = await caught(bad.status('thumbs'));
      expect(e1).toBeInstanceOf(SluiceError);
      expect((e1 as SluiceError).code).toBe('SLUICE_UNAUTHENTICATED');
      expect((e1 as SluiceError).message).toBe('the bearer token is not accepted');
      const e2 = await caught((async () => {
        for await (const _ of bad.logs('thumbs', { follow: true })) void _;
      })());
      expect((e2 as SluiceError).code).toBe('SLUICE_UNAUTHENTICATED');
      const { err } = await rawCall('Deploy', { specYaml: 'name: x', specDir: '/' }, bearer('token-one-but-longer'));
      expect(err?.code).toBe(Status.UNAUTHENTICATED);
    } finally {
      bad.close();
    }
    expect(plane.calls.length).toBe(before);
  });

  it('grpc - every configured token is accepted', async () => {
    const second = await ControlClient.connect(address, 'token-two');
    try {
      expect((await second.list()).map((f) => f.name)).toContain('thumbs');
    } finally {
      second.close();
    }
  });

  it('grpc - the server refuses to start without tokens', async () => {
    const err = await caught(startControlServer({ plane, scaler, tokens: [] }));
    expect((err as SluiceError).code).toBe('SLUICE_INVALID_ARGUMENT');
    expect((err as SluiceError).message).toMatch(/controlServer.tokens/);
  });
});

describe('grpc - errors', () => {
  const cases: [string, unknown, Status, ErrorCode][] = [
    ['SLUICE_NOT_FOUND', new SluiceError('SLUICE_NOT_FOUND', 'function x is not deployed'), Status.NOT_FOUND, 'SLUICE_NOT_FOUND'],
    ['SLUICE_SPEC_INVALID', new SluiceError('SLUICE_SPEC_INVALID', 'spec.triggers.a.batch.maxRecords must be a positive integer'), Status.INVALID_ARGUMENT, 'SLUICE_SPEC_INVALID'],
    ['SLUICE_INVALID_ARGUMENT', new SluiceError('SLUICE_INVALID_ARGUMENT', 'bad'), Status.INVALID_ARGUMENT, 'SLUICE_INVALID_ARGUMENT'],
    ['SLUICE_EXPRESSION_SYNTAX', new SluiceError('SLUICE_EXPRESSION_SYNTAX', 'line 1, column 3'), Status.INVALID_ARGUMENT, 'SLUICE_EXPRESSION_SYNTAX'],
    ['SLUICE_EXPRESSION_INVALID', new SluiceError('SLUICE_EXPRESSION_INVALID', 'unknown placeholder'), Status.INVALID_ARGUMENT, 'SLUICE_EXPRESSION_INVALID'],
    ['SLUICE_CONDITION_FAILED', new SluiceError('SLUICE_CONDITION_FAILED', 'revision moved'), Status.FAILED_PRECONDITION, 'SLUICE_CONDITION_FAILED'],
    ['SLUICE_BACKEND_UNAVAILABLE', new SluiceError('SLUICE_BACKEND_UNAVAILABLE', 'nats is down'), Status.UNAVAILABLE, 'SLUICE_BACKEND_UNAVAILABLE'],
    ['SLUICE_LEASE_LOST (ErrorTable row)', new SluiceError('SLUICE_LEASE_LOST', 'epoch 8 > 7'), Status.ABORTED, 'SLUICE_LEASE_LOST'],
    ['a plain Error', new Error('kaput'), Status.INTERNAL, 'SLUICE_INTERNAL'],
  ];

  for (const [label, thrown, grpcStatus, code] of cases) {
    it(`grpc - ${label} travels as ${Status[grpcStatus]} and comes back as ${code}`, async () => {
      plane.failWith = thrown;
      try {
        const { err } = await rawCall('Status', { name: 'thumbs' }, bearer('token-one'));
        expect(err?.code).toBe(grpcStatus);
        expect(sluiceCodeOf(err!)).toBe(code);
        const back = await caught(client.status('thumbs'));
        expect(back).toBeInstanceOf(SluiceError);
        expect((back as SluiceError).code).toBe(code);
        expect((back as SluiceError).message).toBe((thrown as Error).message);
      } finally {
        plane.failWith = undefined;
      }
    });
  }

  it('grpc - an unknown function and an out-of-range scale keep their codes', async () => {
    expect(((await caught(client.status('nope'))) as SluiceError).code).toBe('SLUICE_NOT_FOUND');
    expect(((await caught(client.scale('thumbs', 11))) as SluiceError).code).toBe('SLUICE_INVALID_ARGUMENT');
    expect(((await caught(client.deploy('handler: x', '/d'))) as SluiceError).code).toBe('SLUICE_SPEC_INVALID');
  });

  it('grpc - an aborted call rejects with SLUICE_ABORTED, a late one with SLUICE_TIMEOUT, an unreachable server with SLUICE_BACKEND_UNAVAILABLE', async () => {
    const ac = new AbortController();
    ac.abort();
    expect(((await caught(client.list({ signal: ac.signal }))) as SluiceError).code).toBe('SLUICE_ABORTED');
    let open = (): void => {};
    plane.gate = new Promise<void>((r) => (open = r));
    try {
      const inFlight = new AbortController();
      setTimeout(() => inFlight.abort(), 50);
      expect(((await caught(client.status('thumbs', { signal: inFlight.signal }))) as SluiceError).code).toBe('SLUICE_ABORTED');
      expect(((await caught(client.status('thumbs', { timeoutMs: 50 }))) as SluiceError).code).toBe('SLUICE_TIMEOUT');
    } finally {
      plane.gate = undefined;
      open();
    }
    const err = await caught(ControlClient.connect('127.0.0.1:1', 'token-one', { connectTimeoutMs: 300 }));
    expect((err as SluiceError).code).toBe('SLUICE_BACKEND_UNAVAILABLE');
  });
});

// ---- KEDA external scaler -----------------------------------------------------------------------

describe('grpc - keda external scaler', () => {
  const ref = { name: 'thumbs-so', namespace: 'media', scalerMetadata: { function: 'thumbs' } };

  it("grpc - externalscaler.proto keeps KEDA's names, types and field numbers", () => {
    const fields = (type: string): string[] => {
      const t = kedaDef['externalscaler'] as GrpcObject;
      const def = t[type] as MessageTypeDefinition<object, object>;
      const d = def.type as { field: { name: string; number: number; type: string; label: string }[] };
      return d.field.map((f) => `${f.number}:${f.name}:${f.type}${f.label === 'LABEL_REPEATED' ? '[]' : ''}`);
    };
    expect(fields('ScaledObjectRef')).toEqual(['1:name:TYPE_STRING', '2:namespace:TYPE_STRING', '3:scalerMetadata:TYPE_MESSAGE[]']);
    expect(fields('IsActiveResponse')).toEqual(['1:result:TYPE_BOOL']);
    expect(fields('GetMetricSpecResponse')).toEqual(['1:metricSpecs:TYPE_MESSAGE[]']);
    expect(fields('MetricSpec')).toEqual(['1:metricName:TYPE_STRING', '2:targetSize:TYPE_INT64', '3:targetSizeFloat:TYPE_DOUBLE']);
    expect(fields('GetMetricsRequest')).toEqual(['1:scaledObjectRef:TYPE_MESSAGE', '2:metricName:TYPE_STRING']);
    expect(fields('GetMetricsResponse')).toEqual(['1:metricValues:TYPE_MESSAGE[]']);
    expect(fields('MetricValue')).toEqual(['1:metricName:TYPE_STRING', '2:metricValue:TYPE_INT64', '3:metricValueFloat:TYPE_DOUBLE']);
    const svc = (kedaDef['externalscaler'] as GrpcObject)['ExternalScaler'] as ServiceClientConstructor;
    expect(Object.values(svc.service).map((m) => `${m.path}${m.responseStream ? ' (stream)' : ''}`)).toEqual([
      '/externalscaler.ExternalScaler/IsActive',
      '/externalscaler.ExternalScaler/StreamIsActive (stream)',
      '/externalscaler.ExternalScaler/GetMetricSpec',
      '/externalscaler.ExternalScaler/GetMetrics',
      '/externalscaler.ExternalScaler/StreamMetricSpec (stream)',
    ]);
  });

  it('grpc - IsActive follows the lag; the function comes from scalerMetadata, else the name', async () => {
    scaler.setLag('thumbs', 0);
    expect(await kedaCall('IsActive', ref)).toEqual({ result: false });
    scaler.setLag('thumbs', 5);
    expect(await kedaCall('IsActive', ref)).toEqual({ result: true });
    expect(await kedaCall('IsActive', { name: 'thumbs', namespace: 'media', scalerMetadata: {} })).toEqual({ result: true });
  });

  it('grpc - GetMetricSpec names one lag metric with the per-replica target; GetMetrics returns the lag', async () => {
    expect(await kedaCall('GetMetricSpec', ref)).toEqual({ metricSpecs: [{ metricName: 'sluice-lag-thumbs', targetSize: 100, targetSizeFloat: 100 }] });
    scaler.setLag('thumbs', 250);
    expect(await kedaCall('GetMetrics', { scaledObjectRef: ref, metricName: 'sluice-lag-thumbs' })).toEqual({
      metricValues: [{ metricName: 'sluice-lag-thumbs', metricValue: 250, metricValueFloat: 250 }],
    });
  });

  it('grpc - an unknown function is NOT_FOUND, an unknown metric INVALID_ARGUMENT', async () => {
    const e1 = (await caught(kedaCall('IsActive', { ...ref, scalerMetadata: { function: 'nope' } }))) as ServiceError;
    expect(e1.code).toBe(Status.NOT_FOUND);
    expect(sluiceCodeOf(e1)).toBe('SLUICE_NOT_FOUND');
    const e2 = (await caught(kedaCall('GetMetrics', { scaledObjectRef: ref, metricName: 'cpu' }))) as ServiceError;
    expect(e2.code).toBe(Status.INVALID_ARGUMENT);
  });

  it('grpc - StreamIsActive sends the current activity, pushes each flip (not repeats), and releases the source on cancel', async () => {
    scaler.setLag('thumbs', 0);
    const ended = scaler.activityEnded;
    const stream = kedaStream(ref);
    expect((await stream.next()).value).toEqual({ result: false });
    scaler.setLag('thumbs', 3);
    expect((await stream.next()).value).toEqual({ result: true });
    const yields = scaler.activityYields;
    scaler.setLag('thumbs', 7); // the source repeats `true`; the server must not push it
    await eventually(() => scaler.activityYields === yields + 1, 'the source to repeat its value');
    scaler.setLag('thumbs', 0);
    expect((await stream.next()).value).toEqual({ result: false });
    stream.cancel();
    await eventually(() => scaler.activityEnded === ended + 1, 'the activity source to be released');
  });

  it('grpc - with scalerTokens, a call needs the bearer header or trigger metadata tokenFromEnv', async () => {
    const guarded = await startControlServer({ plane, scaler, tokens: TOKENS, scalerTokens: [SCALER_TOKEN] });
    const Ctor = (kedaDef['externalscaler'] as GrpcObject)['ExternalScaler'] as ServiceClientConstructor;
    const k = new Ctor(`127.0.0.1:${guarded.port}`, credentials.createInsecure());
    try {
      scaler.setLag('thumbs', 1);
      const e = (await caught(kedaCall('IsActive', ref, new Metadata(), k))) as ServiceError;
      expect(e.code).toBe(Status.UNAUTHENTICATED);
      const wrong = (await caught(kedaCall('IsActive', { ...ref, scalerMetadata: { function: 'thumbs', tokenFromEnv: 'guess' } }, new Metadata(), k))) as ServiceError;
      expect(wrong.code).toBe(Status.UNAUTHENTICATED);
      expect(await kedaCall('IsActive', { ...ref, scalerMetadata: { function: 'thumbs', tokenFromEnv: SCALER_TOKEN } }, new Metadata(), k)).toEqual({ result: true });
      expect(await kedaCall('IsActive', ref, bearer(SCALER_TOKEN), k)).toEqual({ result: true });
      // The Control tokens are not scaler tokens.
      expect(((await caught(kedaCall('IsActive', ref, bearer('token-one'), k))) as ServiceError).code).toBe(Status.UNAUTHENTICATED);
    } finally {
      k.close();
      await guarded.close();
    }
  });

  it('grpc - by default the scaler requires a token (the control tokens): an anonymous IsActive, GetMetrics or StreamIsActive is UNAUTHENTICATED', async () => {
    const dflt = await startControlServer({ plane, scaler, tokens: TOKENS });
    const Ctor = (kedaDef['externalscaler'] as GrpcObject)['ExternalScaler'] as ServiceClientConstructor;
    const k = new Ctor(`127.0.0.1:${dflt.port}`, credentials.createInsecure());
    try {
      scaler.setLag('thumbs', 3);
      expect(((await caught(kedaCall('IsActive', ref, new Metadata(), k))) as ServiceError).code).toBe(Status.UNAUTHENTICATED);
      expect(((await caught(kedaCall('GetMetrics', { scaledObjectRef: ref, metricName: 'sluice-lag-thumbs' }, new Metadata(), k))) as ServiceError).code).toBe(Status.UNAUTHENTICATED);
      const stream = kedaStream(ref, k);
      expect(((await caught(stream.next())) as ServiceError).code).toBe(Status.UNAUTHENTICATED);
      expect(await kedaCall('IsActive', { ...ref, scalerMetadata: { function: 'thumbs', tokenFromEnv: 'token-one' } }, new Metadata(), k)).toEqual({ result: true });
    } finally {
      k.close();
      await dflt.close();
    }
  });
});

describe('grpc - shutdown', () => {
  it('grpc - close() ends a followed logs stream with SLUICE_BACKEND_UNAVAILABLE and returns promptly', async () => {
    const own = await startControlServer({ plane, scaler, tokens: TOKENS, closeGraceMs: 2000 });
    const c = await ControlClient.connect(`127.0.0.1:${own.port}`, 'token-one');
    try {
      const seen: number[] = [];
      const reading = caught((async () => {
        for await (const l of c.logs('thumbs', { follow: true })) seen.push(l.ordinal);
      })());
      await eventually(() => seen.length === 2, 'the backlog');
      const t0 = Date.now();
      await own.close();
      expect(Date.now() - t0).toBeLessThan(1500);
      const err = (await reading) as SluiceError;
      expect(err.code).toBe('SLUICE_BACKEND_UNAVAILABLE');
      expect(err.message).toMatch(/shutting down/);
    } finally {
      c.close();
    }
  });
});
