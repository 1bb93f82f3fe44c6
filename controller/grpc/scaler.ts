/**
 * KEDA external scaler: lets KEDA scale a function's workers on its lag
 * (proto: `proto/externalscaler/externalscaler.proto`, identical to KEDA's).
 *
 * A ScaledObject names the function in its trigger metadata:
 *
 * ```yaml
 * triggers:
 *   - type: external-push            # or `external` (polling only)
 *     metadata:
 *       scalerAddress: sluice-controller.sluice:9090
 *       function: thumbnails          # defaults to the ScaledObject's name
 *       tokenFromEnv: SLUICE_SCALER_TOKEN   # the name of an env var of the scale target holding the token
 * ```
 *
 * - IsActive: the function has lag (> 0).
 * - GetMetricSpec: one metric, `sluice-lag-<function>`, whose target is the lag one replica should carry,
 *   so the HPA sizes the deployment as ceil(lag / targetLagPerReplica).
 * - GetMetrics: the current lag.
 * - StreamIsActive: the current activity, then every change, until KEDA cancels the call.
 * - StreamMetricSpec (optional in KEDA): not implemented; gRPC answers UNIMPLEMENTED and KEDA polls
 *   GetMetricSpec instead.
 *
 * Authentication. KEDA's external-scaler client dials with TLS options only (`enableTLS`, `caCert`,
 * `tlsClientCert`, `tlsClientKey`, `unsafeSsl`; see kedacore/keda `pkg/scalers/external_scaler.go`): it
 * sends no per-call metadata, so a bearer header cannot be required of it. What it does send is the
 * trigger metadata, with `*FromEnv` keys resolved from the scale target's environment (which may come
 * from a Secret). So with `scalerTokens` set, a call is accepted when it carries either
 * `authorization: Bearer <token>` (other clients) or `scalerMetadata.tokenFromEnv` holding a token
 * (KEDA). The server requires a token by default (the control tokens, or `scalerTokens`); only
 * `scalerTokens: false` opens it. With KEDA the token reaches us as follows: the scale target's
 * container has `SLUICE_SCALER_TOKEN` from a Secret (`valueFrom.secretKeyRef`), the trigger says
 * `tokenFromEnv: SLUICE_SCALER_TOKEN`, KEDA resolves it from that environment and sends the value in
 * `scalerMetadata.tokenFromEnv`. A `TriggerAuthentication` cannot carry the token itself: KEDA's external
 * scaler reads only `caCert`, `tlsClientCert` and `tlsClientKey` from it (auth params are not forwarded
 * in `scalerMetadata`) — use it for mTLS on top of the token.
 */
import type { handleServerStreamingCall, handleUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { SluiceError } from '../../bindings/errors.ts';
import { bearerToken, type TokenSet } from './auth.ts';
import type { GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, ScaledObjectRef } from './protos.ts';
import { toServiceError, unauthenticated } from './status.ts';
import { pump, serveStream, type OpenStreams } from './streams.ts';

/** What the external scaler asks of the controller about one function. */
export interface ScalerSource {
  /** Current total lag of the function (records not yet handled). Throws SLUICE_NOT_FOUND for an unknown function. */
  lag(name: string): Promise<number>;
  /** Lag one replica should carry; the HPA target of the lag metric. */
  targetLagPerReplica(name: string): Promise<number>;
  /**
   * Whether the function has work (lag > 0): the current value first, then each change. The iteration
   * ends (and should release its resources) when `signal` aborts or the consumer breaks.
   */
  activity(name: string, options?: { signal?: AbortSignal }): AsyncIterable<boolean>;
}

/** Name of the lag metric of a function. */
export function lagMetricName(fn: string): string {
  return `sluice-lag-${fn}`;
}

/** The function a ScaledObjectRef names: `scalerMetadata.function`, else the ScaledObject's name. */
export function functionOf(ref: ScaledObjectRef | null): string {
  const named = ref?.scalerMetadata['function'];
  const fn = named !== undefined && named !== '' ? named : (ref?.name ?? '');
  if (fn === '') throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'ScaledObjectRef names no function: set the trigger metadata `function` (or the ScaledObject name)');
  return fn;
}

/** Trigger-metadata key through which KEDA can present a token (see the header). */
export const SCALER_TOKEN_METADATA_KEY = 'tokenFromEnv';

/** Handlers of `externalscaler.ExternalScaler`; `tokens` undefined leaves the service open. */
export function externalScalerHandlers(scaler: ScalerSource, tokens: TokenSet | undefined, streams: OpenStreams): UntypedServiceImplementation {
  const refused = (metadata: Parameters<TokenSet['check']>[0], ref: ScaledObjectRef | null): string | undefined => {
    if (tokens === undefined) return undefined;
    const header = bearerToken(metadata);
    const meta = ref?.scalerMetadata[SCALER_TOKEN_METADATA_KEY];
    const token = header ?? meta;
    if (token === undefined) {
      return `missing credentials: send metadata 'authorization: Bearer <token>' or trigger metadata '${SCALER_TOKEN_METADATA_KEY}'`;
    }
    return tokens.accepts(token) ? undefined : 'the scaler token is not accepted';
  };

  function unary<Req, Res>(refOf: (req: Req) => ScaledObjectRef | null, fn: (req: Req) => Promise<Res>): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const reason = refused(call.metadata, refOf(call.request));
      if (reason !== undefined) {
        callback(unauthenticated(reason));
        return;
      }
      Promise.resolve()
        .then(() => fn(call.request))
        .then((res) => callback(null, res), (err: unknown) => callback(toServiceError(err)));
    };
  }

  const isActive = unary<ScaledObjectRef, IsActiveResponse>((ref) => ref, async (ref) => ({ result: (await scaler.lag(functionOf(ref))) > 0 }));

  const getMetricSpec = unary<ScaledObjectRef, GetMetricSpecResponse>((ref) => ref, async (ref) => {
    const fn = functionOf(ref);
    const target = await scaler.targetLagPerReplica(fn);
    if (!Number.isFinite(target) || target <= 0) {
      throw new SluiceError('SLUICE_INTERNAL', `targetLagPerReplica of '${fn}' is ${target}; it must be a positive number`);
    }
    // targetSize (int64) for KEDA releases before targetSizeFloat; never 0, which the HPA rejects.
    return { metricSpecs: [{ metricName: lagMetricName(fn), targetSize: Math.max(1, Math.round(target)), targetSizeFloat: target }] };
  });

  const getMetrics = unary<GetMetricsRequest, GetMetricsResponse>((req) => req.scaledObjectRef, async (req) => {
    const fn = functionOf(req.scaledObjectRef);
    const expected = lagMetricName(fn);
    if (req.metricName !== expected) {
      throw new SluiceError('SLUICE_INVALID_ARGUMENT', `unknown metric '${req.metricName}': the scaler serves '${expected}' for function '${fn}'`);
    }
    const lag = await scaler.lag(fn);
    return { metricValues: [{ metricName: expected, metricValue: Math.round(lag), metricValueFloat: lag }] };
  });

  const streamIsActive: handleServerStreamingCall<ScaledObjectRef, IsActiveResponse> = (call: ServerWritableStream<ScaledObjectRef, IsActiveResponse>) => {
    const reason = refused(call.metadata, call.request);
    if (reason !== undefined) {
      call.emit('error', unauthenticated(reason));
      return;
    }
    serveStream(call, streams, async (signal) => {
      const fn = functionOf(call.request);
      let last: boolean | undefined;
      await pump(scaler.activity(fn, { signal }), call, signal, (active) => {
        // Push changes only: a source may repeat its current value.
        if (active === last) return undefined;
        last = active;
        return { result: active };
      });
    });
  };

  return { IsActive: isActive, GetMetricSpec: getMetricSpec, GetMetrics: getMetrics, StreamIsActive: streamIsActive };
}
