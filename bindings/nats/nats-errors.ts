/**
 * The one place where native NATS / JetStream errors become sluice errors, so callers see the same
 * codes whatever the backend. Every public method of the NATS bindings funnels what it catches
 * through {@link toBindingError}.
 */
import {
  AuthorizationError,
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  InvalidArgumentError,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
  UserAuthenticationExpiredError,
} from '@nats-io/nats-core';
import { JetStreamApiError } from '@nats-io/jetstream';
// Not re-exported by the package root; the internal entry point is public API of the package too.
import { JetStreamStatusError, jserrors } from '@nats-io/jetstream/internal';
import { BindingError, type ErrorCode, SluiceError } from '../errors.ts';

/** JetStream API error codes the backend reacts to (`ApiError.err_code`). */
export const JsCodes = {
  ConsumerNotFound: 10014,
  NoMessageFound: 10037,
  JetStreamNotEnabled: 10039,
  StreamNameInUse: 10058,
  StreamNotFound: 10059,
  WrongLastSequence: 10071,
  WrongLastSequenceUnknown: 10164,
} as const;

/** What a native error means in the context of one call. */
export interface ErrorContext {
  /**
   * The code for "the stream behind this call is gone" (JetStream answered "stream not found"):
   * SLUICE_BUCKET_NOT_FOUND for an object call, SLUICE_TABLE_NOT_FOUND for a KV call. Not used for
   * "nobody answered" (see {@link toBindingError}).
   * @default 'SLUICE_STREAM_NOT_FOUND'
   */
  notFound?: ErrorCode;
}

/** True for a CAS failure: the subject's last sequence was not the expected one. */
export function isWrongLastSequence(err: unknown): boolean {
  if (!(err instanceof JetStreamApiError)) return false;
  return err.code === JsCodes.WrongLastSequence || err.code === JsCodes.WrongLastSequenceUnknown;
}

/** True when the stream (or the consumer's stream) does not exist. */
export function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JsCodes.StreamNotFound;
}

/** True when a consumer does not exist (any more). */
export function isConsumerNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JsCodes.ConsumerNotFound;
}

/** True when nobody answered: no stream captures the subject, or JetStream is not there. */
export function isNoResponders(err: unknown): boolean {
  if (err instanceof NoRespondersError) return true;
  if (err instanceof RequestError && err.isNoResponders()) return true;
  // js.publish reports "no responders" as JetStreamNotEnabled with the RequestError as cause.
  if (err instanceof jserrors.JetStreamNotEnabled) return true;
  if (err instanceof JetStreamStatusError && err.code === 503) return true;
  return false;
}

/**
 * True when a publish may or may not have been applied: no answer in time, or nobody answered (a
 * stream leader being elected). Retrying such a write is safe only with the same message id.
 */
export function isUnknownOutcome(err: unknown): boolean {
  return err instanceof TimeoutError || isNoResponders(err);
}

/**
 * Maps any thrown value to a {@link SluiceError}. `where` names the call and its subject
 * (`put 'a/b' in bucket 'photos'`); the native error is kept as `cause`.
 * SluiceErrors pass through unchanged.
 */
export function toBindingError(err: unknown, where: string, ctx: ErrorContext = {}): SluiceError {
  if (err instanceof SluiceError) return err;
  const native = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  const make = (code: ErrorCode, what: string) => new BindingError(code, `${where}: ${what} (${native})`, { cause: err });

  if (err instanceof JetStreamApiError) {
    switch (err.code) {
      case JsCodes.WrongLastSequence:
      case JsCodes.WrongLastSequenceUnknown:
        return make('SLUICE_CONFLICT', 'a concurrent writer changed the entry');
      case JsCodes.StreamNotFound:
        return make(ctx.notFound ?? 'SLUICE_STREAM_NOT_FOUND', 'the JetStream stream does not exist');
      case JsCodes.NoMessageFound:
        return make('SLUICE_NOT_FOUND', 'no such message');
      case JsCodes.StreamNameInUse:
        return make('SLUICE_ALREADY_EXISTS', 'a JetStream stream of that name exists with another configuration');
      case JsCodes.JetStreamNotEnabled:
        return make('SLUICE_BACKEND_UNAVAILABLE', 'JetStream is not enabled for this account');
      default:
        return make('SLUICE_INTERNAL', `JetStream API error ${err.code}`);
    }
  }
  // Nobody answered: on a cluster this is what a write (or a read) sees while a stream has no leader —
  // just after it was created, during a leader election, or while a restarted server recovers its
  // streams. It is NOT "the bucket is gone": that reading made the committer dead-letter whole batches
  // as SLUICE_BUCKET_NOT_FOUND (non-retryable) during an election (the stuck-shard defect of issue 10).
  // A caller that can tell a missing stream apart asks JetStream (KvStore.put does) before mapping.
  if (isNoResponders(err)) return make('SLUICE_BACKEND_UNAVAILABLE', 'no JetStream stream answered (no stream leader reachable: election in progress, or the stream is gone)');
  if (err instanceof TimeoutError) return make('SLUICE_TIMEOUT', 'NATS did not answer in time');
  if (err instanceof ClosedConnectionError || err instanceof DrainingConnectionError)
    return make('SLUICE_BACKEND_UNAVAILABLE', 'the NATS connection is closed');
  if (err instanceof ConnectionError || err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError)
    return make('SLUICE_BACKEND_UNAVAILABLE', 'cannot reach NATS');
  // The server's own permissions (per-function NATS users) refused the subject: the same code as a
  // binding the spec does not grant.
  if (err instanceof PermissionViolationError || (err instanceof RequestError && (err.cause instanceof PermissionViolationError || /Permissions Violation/.test(err.message))))
    return make('SLUICE_ACCESS_DENIED', 'the NATS server refused the subject (permissions of this user)');
  if (err instanceof InvalidArgumentError && /max_payload/i.test(err.message))
    return make('SLUICE_VALUE_TOO_LARGE', "the message exceeds the server's max_payload");
  if (err instanceof Error && err.name === 'AbortError') return make('SLUICE_ABORTED', 'aborted');
  return make('SLUICE_INTERNAL', 'unexpected NATS failure');
}
