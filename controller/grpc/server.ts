/**
 * The controller's gRPC server: `sluice.v1.Control` (a thin adapter over {@link ControlPlane}) and
 * KEDA's `externalscaler.ExternalScaler` (over a {@link ScalerSource}) on one port.
 *
 * Every Control call must carry `authorization: Bearer <token>` with one of `tokens`; a call without
 * one ends UNAUTHENTICATED before the plane is touched. Errors leave through one mapping
 * (`status.ts`): a gRPC status plus the exact sluice code in the trailing metadata `sluice-code`.
 */
import { Server, ServerCredentials, type handleServerStreamingCall, type handleUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { SluiceError } from '../../bindings/errors.ts';
import type { ControlPlane } from '../control-plane.ts';
import { TokenSet } from './auth.ts';
import {
  loadProtos,
  logToWire,
  parseJsonObject,
  statusToWire,
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
  type WireFunctionStatus,
  type WireLogLine,
} from './protos.ts';
import { externalScalerHandlers, type ScalerSource } from './scaler.ts';
import { toServiceError, unauthenticated } from './status.ts';
import { OpenStreams, pump, serveStream } from './streams.ts';

/** Options of {@link startControlServer}. */
export interface ControlServerOptions {
  /** The controller the Control service adapts. */
  plane: ControlPlane;
  /** Source of lag and activity for KEDA's external scaler. */
  scaler: ScalerSource;
  /** Bearer tokens accepted on Control calls. Required, non-empty. */
  tokens: readonly string[];
  /**
   * Tokens accepted on ExternalScaler calls, as `authorization: Bearer` or as trigger metadata
   * `tokenFromEnv` (see `scaler.ts` for why KEDA needs the latter). `false` leaves the scaler service
   * open to whoever reaches `host` (it lists function names and their lag): only behind a network
   * policy or mTLS.
   * @default the control `tokens` — a call without one of them is UNAUTHENTICATED
   */
  scalerTokens?: readonly string[] | false;
  /** Address to bind. @default '127.0.0.1' */
  host?: string;
  /** Port to bind; 0 picks a free one (read it from the result). @default 0 */
  port?: number;
  /** Transport credentials, e.g. `ServerCredentials.createSsl(...)` for TLS or mTLS. @default insecure */
  credentials?: ServerCredentials;
  /** How long `close()` lets unary calls in flight finish before cutting them. @default 5000 */
  closeGraceMs?: number;
}

/** A running control server. */
export interface ControlServer {
  /** The port bound (the one picked when `port` was 0). */
  readonly port: number;
  /**
   * Stops accepting calls, ends open streams (Logs follow, StreamIsActive) with UNAVAILABLE, lets
   * unary calls in flight finish for `closeGraceMs`, then cuts the rest. Idempotent.
   */
  close(): Promise<void>;
}

/** Starts the gRPC server with both services. */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  const closeGraceMs = options.closeGraceMs ?? 5000;
  if (typeof host !== 'string' || host === '') throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'controlServer.host must be a non-empty string');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'controlServer.port must be an integer in 0..65535');
  if (!Number.isFinite(closeGraceMs) || closeGraceMs < 0) throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'controlServer.closeGraceMs must be a non-negative number');
  const tokens = new TokenSet(options.tokens, 'controlServer.tokens');
  // Secure by default: the scaler answers only to a token; opening it is an explicit `false`.
  const scalerTokens = options.scalerTokens === false ? undefined : options.scalerTokens === undefined ? tokens : new TokenSet(options.scalerTokens, 'controlServer.scalerTokens');

  const protos = await loadProtos();
  const streams = new OpenStreams();
  const server = new Server();
  server.addService(protos.control, controlHandlers(options.plane, tokens, streams));
  server.addService(protos.externalScaler, externalScalerHandlers(options.scaler, scalerTokens, streams));

  const address = `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, options.credentials ?? ServerCredentials.createInsecure(), (err, p) => {
      if (err === null) resolve(p);
      else {
        server.forceShutdown();
        reject(new SluiceError('SLUICE_BACKEND_UNAVAILABLE', `control server cannot bind ${address}: ${err.message}`, { cause: err }));
      }
    });
  });

  let closing: Promise<void> | undefined;
  return {
    port: bound,
    close: () => (closing ??= shutdown(server, streams, closeGraceMs)),
  };
}

async function shutdown(server: Server, streams: OpenStreams, graceMs: number): Promise<void> {
  // Streams first: they never end on their own, and tryShutdown waits for every call.
  streams.closeAll();
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

/** Handlers of `sluice.v1.Control`. */
function controlHandlers(plane: ControlPlane, tokens: TokenSet, streams: OpenStreams): UntypedServiceImplementation {
  function unary<Req, Res>(fn: (req: Req) => Promise<Res>): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const auth = tokens.check(call.metadata);
      if (!auth.ok) {
        callback(unauthenticated(auth.reason));
        return;
      }
      // Promise.resolve().then: a plane method that throws synchronously still ends as a status.
      Promise.resolve()
        .then(() => fn(call.request))
        .then((res) => callback(null, res), (err: unknown) => callback(toServiceError(err)));
    };
  }

  const logs: handleServerStreamingCall<LogsRequest, WireLogLine> = (call) => {
    const auth = tokens.check(call.metadata);
    if (!auth.ok) {
      call.emit('error', unauthenticated(auth.reason));
      return;
    }
    serveStream(call, streams, (signal) =>
      pump(plane.logs(call.request.name, { follow: call.request.follow, signal }), call, signal, logToWire),
    );
  };

  return {
    Deploy: unary<DeployRequest, DeployResponse>(async (req) => {
      const r = await plane.deploy(req.specYaml, req.specDir);
      return { name: r.name, revision: r.revision };
    }),
    Delete: unary<NameRequest, DeleteResponse>(async (req) => ({ removed: await plane.remove(req.name) })),
    List: unary<ListRequest, ListResponse>(async () => ({
      functions: (await plane.list()).map((f) => ({ name: f.name, revision: f.revision, replicas: f.replicas })),
    })),
    Status: unary<NameRequest, WireFunctionStatus>(async (req) => statusToWire(await plane.status(req.name))),
    Scale: unary<ScaleRequest, ScaleResponse>(async (req) => {
      await plane.scale(req.name, req.replicas);
      return {};
    }),
    Invoke: unary<InvokeRequest, InvokeResponse>(async (req) => {
      const event: { key: string; body?: Uint8Array; attrs?: Record<string, unknown>; dryRun?: boolean } = { key: req.key };
      if (req.dryRun) event.dryRun = true;
      if (req.body !== undefined) event.body = req.body;
      if (req.attrsJson !== '') event.attrs = parseJsonObject(req.attrsJson, 'InvokeRequest.attrs_json');
      return { effectsJson: toJson(await plane.invoke(req.name, event)) };
    }),
    Logs: logs,
  };
}
