/**
 * Client of the control API, for the CLI and tests. It implements {@link ControlPlane}, so code written
 * against the controller works unchanged across the wire; failed calls throw the server's
 * {@link SluiceError} with the same code (from the trailing metadata `sluice-code`).
 */
import { Client, credentials as grpcCredentials, Metadata, type CallOptions as GrpcCallOptions, type ChannelCredentials } from '@grpc/grpc-js';
import { SluiceError } from '../../bindings/errors.ts';
import type { ControlPlane, FunctionStatus, LogLine } from '../control-plane.ts';
import {
  loadProtos,
  logFromWire,
  method,
  parseJson,
  statusFromWire,
  toJson,
  type DeleteResponse,
  type DeployRequest,
  type DeployResponse,
  type InvokeRequest,
  type InvokeResponse,
  type ListRequest,
  type ListResponse,
  type LogsRequest,
  type NameRequest,
  type ScaleRequest,
  type ScaleResponse,
  type TypedMethod,
  type WireFunctionStatus,
  type WireLogLine,
} from './protos.ts';
import { fromServiceError } from './status.ts';

/** Per-call options. */
export interface ControlCallOptions {
  /** Cancels the call; it then rejects with SLUICE_ABORTED. */
  signal?: AbortSignal;
  /** Deadline of the call; past it the call rejects with SLUICE_TIMEOUT. @default the client's `callTimeoutMs` */
  timeoutMs?: number;
}

/** Options of {@link ControlClient.connect}. */
export interface ControlClientOptions {
  /** Channel credentials, e.g. `credentials.createSsl(ca)`. @default insecure (plaintext) */
  credentials?: ChannelCredentials;
  /** How long `connect` waits for the channel to be ready. @default 5000 */
  connectTimeoutMs?: number;
  /** Deadline of each unary call unless the call sets its own; 0 means none. @default 30000 */
  callTimeoutMs?: number;
}

interface Methods {
  deploy: TypedMethod<DeployRequest, DeployResponse>;
  remove: TypedMethod<NameRequest, DeleteResponse>;
  list: TypedMethod<ListRequest, ListResponse>;
  status: TypedMethod<NameRequest, WireFunctionStatus>;
  scale: TypedMethod<ScaleRequest, ScaleResponse>;
  invoke: TypedMethod<InvokeRequest, InvokeResponse>;
  logs: TypedMethod<LogsRequest, WireLogLine>;
}

/** A connection to a sluice control server. */
export class ControlClient implements ControlPlane {
  readonly #client: Client;
  readonly #authorization: string;
  readonly #methods: Methods;
  readonly #callTimeoutMs: number;

  private constructor(client: Client, token: string, methods: Methods, callTimeoutMs: number) {
    this.#client = client;
    this.#authorization = `Bearer ${token}`;
    this.#methods = methods;
    this.#callTimeoutMs = callTimeoutMs;
  }

  /**
   * Connects to `address` (`host:port`) and waits until the channel is ready; the token is sent on
   * every call as `authorization: Bearer <token>` (and first checked by the server on the first call).
   */
  static async connect(address: string, token: string, options: ControlClientOptions = {}): Promise<ControlClient> {
    if (typeof address !== 'string' || address === '') throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'address must be a non-empty host:port');
    if (typeof token !== 'string' || token.trim() === '' || /\s/.test(token)) {
      throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'token must be a non-empty string without whitespace');
    }
    const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    const callTimeoutMs = options.callTimeoutMs ?? 30_000;
    const protos = await loadProtos();
    const svc = protos.control;
    const methods: Methods = {
      deploy: method(svc, 'Deploy'),
      remove: method(svc, 'Delete'),
      list: method(svc, 'List'),
      status: method(svc, 'Status'),
      scale: method(svc, 'Scale'),
      invoke: method(svc, 'Invoke'),
      logs: method(svc, 'Logs'),
    };
    const client = new Client(address, options.credentials ?? grpcCredentials.createInsecure());
    try {
      await new Promise<void>((resolve, reject) => {
        client.waitForReady(Date.now() + connectTimeoutMs, (err) => (err === undefined ? resolve() : reject(err)));
      });
    } catch (cause) {
      client.close();
      throw new SluiceError('SLUICE_BACKEND_UNAVAILABLE', `cannot reach the control server at ${address} within ${connectTimeoutMs} ms`, { cause });
    }
    return new ControlClient(client, token, methods, callTimeoutMs);
  }

  async deploy(specYaml: string, specDir: string, options: ControlCallOptions = {}): Promise<{ name: string; revision: number }> {
    const r = await this.#unary(this.#methods.deploy, { specYaml, specDir }, options);
    return { name: r.name, revision: r.revision };
  }

  /** Removes a function; false when it is unknown. */
  async remove(name: string, options: ControlCallOptions = {}): Promise<boolean> {
    return (await this.#unary(this.#methods.remove, { name }, options)).removed;
  }

  async list(options: ControlCallOptions = {}): Promise<{ name: string; revision: number; replicas: number }[]> {
    const r = await this.#unary(this.#methods.list, {}, options);
    return r.functions.map((f) => ({ name: f.name, revision: f.revision, replicas: f.replicas }));
  }

  async status(name: string, options: ControlCallOptions = {}): Promise<FunctionStatus> {
    return statusFromWire(await this.#unary(this.#methods.status, { name }, options));
  }

  async scale(name: string, replicas: number, options: ControlCallOptions = {}): Promise<void> {
    if (!Number.isInteger(replicas) || replicas < 0 || replicas > 0xffff_ffff) {
      throw new SluiceError('SLUICE_INVALID_ARGUMENT', `replicas must be a non-negative integer, got ${replicas}`);
    }
    await this.#unary(this.#methods.scale, { name, replicas }, options);
  }

  /** Runs the handler once on a synthetic event; returns the declared effects (parsed JSON). */
  async invoke(
    name: string,
    event: { key: string; body?: Uint8Array; attrs?: Record<string, unknown>; dryRun?: boolean },
    options: ControlCallOptions = {},
  ): Promise<unknown> {
    const req: InvokeRequest = { name, key: event.key, attrsJson: event.attrs === undefined ? '' : toJson(event.attrs), dryRun: event.dryRun === true };
    if (event.body !== undefined) req.body = event.body;
    const r = await this.#unary(this.#methods.invoke, req, options);
    return parseJson(r.effectsJson, 'InvokeResponse.effects_json');
  }

  /**
   * Log lines of the function's workers. With `follow`, new lines keep coming until `signal` aborts
   * (the iteration then ends quietly) or the loop breaks; either cancels the call on the server.
   */
  async *logs(name: string, options: { follow: boolean; signal?: AbortSignal }): AsyncIterable<LogLine> {
    const { signal } = options;
    if (signal?.aborted === true) return;
    const m = this.#methods.logs;
    const call = this.#client.makeServerStreamRequest(m.path, m.serialize, m.deserialize, { name, follow: options.follow }, this.#metadata(), {});
    const onAbort = (): void => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const msg of call as AsyncIterable<WireLogLine>) yield logFromWire(msg);
    } catch (err) {
      // Re-read through a function: TS keeps the narrowing from the check above, but the signal may
      // have aborted since.
      if (isAborted(signal)) return;
      throw fromServiceError(err);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // A consumer's break lands here mid-stream: tell the server (no-op once the call has ended).
      call.cancel();
    }
  }

  /** Closes the channel; calls in flight fail with SLUICE_ABORTED or SLUICE_BACKEND_UNAVAILABLE. */
  close(): void {
    this.#client.close();
  }

  #metadata(): Metadata {
    const md = new Metadata();
    md.set('authorization', this.#authorization);
    return md;
  }

  #unary<Req, Res>(m: TypedMethod<Req, Res>, req: Req, options: ControlCallOptions): Promise<Res> {
    const { signal } = options;
    if (signal?.aborted === true) {
      return Promise.reject(new SluiceError('SLUICE_ABORTED', `${m.path} aborted before it started`, { cause: signal.reason }));
    }
    const timeoutMs = options.timeoutMs ?? this.#callTimeoutMs;
    const callOptions: GrpcCallOptions = timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {};
    return new Promise<Res>((resolve, reject) => {
      const onAbort = (): void => call.cancel();
      const call = this.#client.makeUnaryRequest(m.path, m.serialize, m.deserialize, req, this.#metadata(), callOptions, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err !== null) reject(fromServiceError(err));
        else if (res === undefined) reject(new SluiceError('SLUICE_INTERNAL', `${m.path} returned no message`));
        else resolve(res);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
