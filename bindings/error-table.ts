/**
 * What each sluice error code means to each consumer, in ONE table: the HTTP status and S3 error code the
 * gateways answer with, the gRPC status the control API sends, the CLI's exit code, and whether the runtime
 * (and a well-behaved client) should retry. Every other mapping in the tree reads this table; none keeps
 * its own switch or regex. `docs/ERRORS.md` shows the same table and a unit test compares the two.
 *
 * The table is a `Record` over every {@link ErrorCode}, so adding a code without its row fails to compile.
 */
import type { ErrorCode } from './errors.ts';

/** gRPC status codes by name (the numbers are fixed by the gRPC spec; no dependency on a gRPC library here). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusName = keyof typeof GrpcStatus;

/** The CLI's exit codes (documented in docs/CLI.md and `sluice --help`). */
export const ExitCodes = {
  ok: 0,
  /** Anything unexpected. */
  failed: 1,
  /** Bad usage: unknown command or option, missing argument. */
  usage: 2,
  /** The function, bucket, object, table, item, stream or a file named on the command line does not exist. */
  notFound: 3,
  /** Invalid input: a malformed spec, expression, key, or a value out of range (e.g. scaling past max). */
  invalid: 4,
  /** Missing or wrong token, or access refused. */
  unauthenticated: 5,
  /** The backend or the controller cannot be reached, or did not answer in time. */
  unavailable: 6,
  /** A condition failed (ifMatch, ifRevision, condition expression). */
  conflict: 7,
} as const;
export type ExitName = keyof typeof ExitCodes;

/** One row of the table. */
export interface ErrorMapping {
  /** HTTP status of the S3 gateway and the HTTP ingress. */
  readonly http: number;
  /** S3 error `Code` element the gateway answers with. */
  readonly s3: string;
  /** gRPC status of the control API. */
  readonly grpc: GrpcStatusName;
  /** CLI exit code (by name; numbers in {@link ExitCodes}). */
  readonly exit: ExitName;
  /** True when the same call may succeed later unchanged (the runtime retries it with backoff). */
  readonly retryable: boolean;
}

const row = (http: number, s3: string, grpc: GrpcStatusName, exit: ExitName, retryable: boolean): ErrorMapping =>
  Object.freeze({ http, s3, grpc, exit, retryable });

/** Every code's meaning to HTTP/S3, gRPC, the CLI and the retry logic. */
export const ErrorTable: { readonly [K in ErrorCode]: ErrorMapping } = Object.freeze({
  SLUICE_INVALID_ARGUMENT: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_NAME_INVALID: row(400, 'InvalidBucketName', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_KEY_INVALID: row(400, 'KeyTooLongError', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_VALUE_TOO_LARGE: row(400, 'EntityTooLarge', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_VALUE_INVALID: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_NOT_FOUND: row(404, 'NoSuchKey', 'NOT_FOUND', 'notFound', false),
  SLUICE_BUCKET_NOT_FOUND: row(404, 'NoSuchBucket', 'NOT_FOUND', 'notFound', false),
  SLUICE_TABLE_NOT_FOUND: row(404, 'NoSuchTable', 'NOT_FOUND', 'notFound', false),
  SLUICE_STREAM_NOT_FOUND: row(404, 'NoSuchStream', 'NOT_FOUND', 'notFound', false),
  SLUICE_ALREADY_EXISTS: row(409, 'BucketAlreadyExists', 'ALREADY_EXISTS', 'failed', false),
  SLUICE_CONDITION_FAILED: row(412, 'PreconditionFailed', 'FAILED_PRECONDITION', 'conflict', false),
  SLUICE_EXPRESSION_SYNTAX: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_EXPRESSION_INVALID: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_RANGE_INVALID: row(416, 'InvalidRange', 'OUT_OF_RANGE', 'invalid', false),
  SLUICE_CURSOR_INVALID: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_SHARD_INVALID: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_PATH_INVALID: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_FILE_NOT_FOUND: row(404, 'NoSuchKey', 'NOT_FOUND', 'notFound', false),
  SLUICE_FILE_EXISTS: row(409, 'InvalidRequest', 'ALREADY_EXISTS', 'failed', false),
  SLUICE_NOT_A_DIRECTORY: row(400, 'InvalidRequest', 'FAILED_PRECONDITION', 'failed', false),
  SLUICE_IS_A_DIRECTORY: row(400, 'InvalidRequest', 'FAILED_PRECONDITION', 'failed', false),
  SLUICE_DIRECTORY_NOT_EMPTY: row(409, 'BucketNotEmpty', 'FAILED_PRECONDITION', 'failed', false),
  SLUICE_BACKEND_UNAVAILABLE: row(503, 'ServiceUnavailable', 'UNAVAILABLE', 'unavailable', true),
  SLUICE_TIMEOUT: row(503, 'SlowDown', 'DEADLINE_EXCEEDED', 'unavailable', true),
  SLUICE_ABORTED: row(499, 'RequestTimeout', 'CANCELLED', 'failed', true),
  SLUICE_CONFLICT: row(409, 'OperationAborted', 'ABORTED', 'failed', true),
  SLUICE_INTERNAL: row(500, 'InternalError', 'INTERNAL', 'failed', true),
  SLUICE_ACCESS_DENIED: row(403, 'AccessDenied', 'PERMISSION_DENIED', 'failed', false),
  SLUICE_HANDLER_TIMEOUT: row(504, 'RequestTimeout', 'DEADLINE_EXCEEDED', 'failed', true),
  SLUICE_SLOT_OVERFLOW: row(413, 'EntityTooLarge', 'RESOURCE_EXHAUSTED', 'failed', false),
  SLUICE_HANDLER_FAILED: row(500, 'InternalError', 'INTERNAL', 'failed', true),
  SLUICE_LEASE_LOST: row(409, 'OperationAborted', 'ABORTED', 'failed', true),
  SLUICE_SPEC_INVALID: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_KUBERNETES: row(502, 'InternalError', 'UNAVAILABLE', 'failed', true),
  SLUICE_UNAUTHENTICATED: row(403, 'InvalidAccessKeyId', 'UNAUTHENTICATED', 'unauthenticated', false),
  // 503 + ServiceUnavailable rather than 507: S3 SDKs retry ServiceUnavailable, and a full disk is
  // transient from a client's view (the operator frees space; no restart needed).
  SLUICE_STORAGE_FULL: row(503, 'ServiceUnavailable', 'RESOURCE_EXHAUSTED', 'unavailable', true),
  SLUICE_HANDLER_LOAD: row(400, 'InvalidArgument', 'INVALID_ARGUMENT', 'invalid', false),
  SLUICE_BINDING_MISSING: row(404, 'NoSuchBucket', 'FAILED_PRECONDITION', 'notFound', false),
  // A log code (the watchdog reports it; no call returns it): exit 1 like the other unlisted codes.
  SLUICE_WRITE_LOCK_STALLED: row(503, 'ServiceUnavailable', 'UNAVAILABLE', 'failed', true),
  // 508 Loop Detected: what the record ran into. Not retryable: the same record hits the same limit.
  SLUICE_HOP_LIMIT: row(508, 'InvalidRequest', 'FAILED_PRECONDITION', 'failed', false),
  SLUICE_BUCKET_NOT_EMPTY: row(409, 'BucketNotEmpty', 'FAILED_PRECONDITION', 'conflict', false),
  SLUICE_BUCKET_IN_USE: row(409, 'OperationAborted', 'FAILED_PRECONDITION', 'conflict', false),
});

/** The table's row for `code`, or SLUICE_INTERNAL's when `code` is not a sluice code. */
export function mappingOf(code: string): ErrorMapping {
  return (ErrorTable as Record<string, ErrorMapping | undefined>)[code] ?? ErrorTable.SLUICE_INTERNAL;
}
