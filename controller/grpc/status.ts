/**
 * sluice errors ↔ gRPC statuses. The server maps a thrown error to a status in {@link toServiceError}
 * (through the one error table, {@link toGrpcStatus}); the exact sluice code rides along in the trailing
 * metadata `sluice-code`, so {@link fromServiceError} on the client rebuilds the same code even where
 * several codes share one gRPC status. A status without `sluice-code` (a proxy, a transport failure,
 * another server) falls back to the closest code by status.
 */
import { Metadata, status as Status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ErrorTable, GrpcStatus } from '../../bindings/error-table.ts';
import { isErrorCode, SluiceError, type ErrorCode } from '../../bindings/errors.ts';

/** Trailing-metadata key carrying the sluice error code. */
export const SLUICE_CODE_KEY = 'sluice-code';
/** Trailing-metadata key carrying the error's details as JSON (e.g. a load error's file, line, stack). */
export const SLUICE_DETAILS_KEY = 'sluice-details-bin';

/** The gRPC status a sluice error code travels as (read from the one table, `bindings/error-table.ts`). */
export function toGrpcStatus(code: ErrorCode): Status {
  return GrpcStatus[ErrorTable[code].grpc] as Status;
}

/** The closest sluice code for a status that came without `sluice-code`. */
function codeForStatus(s: Status): ErrorCode {
  switch (s) {
    case Status.NOT_FOUND:
      return 'SLUICE_NOT_FOUND';
    case Status.INVALID_ARGUMENT:
    case Status.OUT_OF_RANGE:
      return 'SLUICE_INVALID_ARGUMENT';
    case Status.FAILED_PRECONDITION:
      return 'SLUICE_CONDITION_FAILED';
    case Status.UNAVAILABLE:
      return 'SLUICE_BACKEND_UNAVAILABLE';
    case Status.UNAUTHENTICATED:
      return 'SLUICE_UNAUTHENTICATED';
    case Status.DEADLINE_EXCEEDED:
      return 'SLUICE_TIMEOUT';
    case Status.CANCELLED:
      return 'SLUICE_ABORTED';
    default:
      return 'SLUICE_INTERNAL';
  }
}

/** The status a handler reports for `err` (anything thrown): status code, message, `sluice-code`. */
export function toServiceError(err: unknown): Partial<StatusObject> {
  const code: ErrorCode = err instanceof SluiceError ? err.code : 'SLUICE_INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  const metadata = new Metadata();
  metadata.set(SLUICE_CODE_KEY, code);
  // Binary metadata (`-bin`): details may hold newlines (stacks), which text metadata cannot carry.
  if (err instanceof SluiceError && err.details !== undefined) metadata.set(SLUICE_DETAILS_KEY, Buffer.from(JSON.stringify(err.details).slice(0, 6000)));
  return { code: toGrpcStatus(code), details: message, metadata };
}

/** The status of a refused call (no token, or one not accepted). */
export function unauthenticated(message: string): Partial<StatusObject> {
  return toServiceError(new SluiceError('SLUICE_UNAUTHENTICATED', message));
}

/** Rebuilds the server's SluiceError from a failed call; the gRPC error is kept as `cause`. */
export function fromServiceError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  if (!isServiceError(err)) {
    return new SluiceError('SLUICE_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
  }
  const sent = err.metadata.get(SLUICE_CODE_KEY)[0];
  const sentCode = typeof sent === 'string' ? sent : sent?.toString('utf8');
  const code = isErrorCode(sentCode) ? sentCode : codeForStatus(err.code);
  const rawDetails = err.metadata.get(SLUICE_DETAILS_KEY)[0];
  let details: Record<string, unknown> | undefined;
  try {
    if (rawDetails !== undefined) details = JSON.parse(Buffer.from(rawDetails).toString('utf8')) as Record<string, unknown>;
  } catch {
    details = undefined;
  }
  // `details` is the server's message; grpc-js' own `message` prefixes it with "<code> <NAME>: ".
  return new SluiceError(code, err.details !== '' ? err.details : err.message, { cause: err, ...(details ? { details } : {}) });
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && (err as Partial<ServiceError>).metadata instanceof Metadata;
}
