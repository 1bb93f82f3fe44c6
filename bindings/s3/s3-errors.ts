/**
 * The one place where errors of the S3 client (service errors, network failures, timeouts, aborts)
 * become sluice errors, so a body kept on S3 fails with the same codes as one kept in the backend.
 * Every method of {@link S3BodyStore} funnels what it catches through {@link toBindingError}.
 */
import { S3ServiceException } from '@aws-sdk/client-s3';
import { BindingError, type ErrorCode, SluiceError } from '../errors.ts';

/** True when S3 says the key (or the version of it) does not exist. */
export function isNoSuchKey(err: unknown): boolean {
  if (!(err instanceof S3ServiceException)) return false;
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || (err.$metadata.httpStatusCode === 404 && err.name !== 'NoSuchBucket');
}

/** Network-level error codes of Node's http client that mean "the store cannot be reached". */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ETIMEDOUT']);

/**
 * Maps any thrown value to a {@link SluiceError}. `where` names the call and its subject
 * (`put body of 'a/b' in bucket 'photos'`); the native error is kept as `cause`. SluiceErrors pass through.
 */
export function toBindingError(err: unknown, where: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const native = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  const make = (code: ErrorCode, what: string) => new BindingError(code, `${where}: ${what} (${native})`, { cause: err });
  if (err instanceof S3ServiceException) {
    const status = err.$metadata.httpStatusCode ?? 0;
    switch (err.name) {
      case 'NoSuchKey':
      case 'NotFound':
        return make('SLUICE_NOT_FOUND', 'the body does not exist in the body store');
      case 'NoSuchBucket':
        // The body store's bucket is part of the backend's configuration: a missing one is an outage.
        return make('SLUICE_BACKEND_UNAVAILABLE', 'the body store bucket does not exist');
      case 'InvalidAccessKeyId':
      case 'SignatureDoesNotMatch':
      case 'AccessDenied':
      case 'ExpiredToken':
      case 'RequestTimeTooSkewed':
        return make('SLUICE_BACKEND_UNAVAILABLE', 'the body store refused the credentials');
      case 'EntityTooLarge':
        return make('SLUICE_VALUE_TOO_LARGE', 'the body store refused the body as too large');
      case 'InvalidRange':
        return make('SLUICE_RANGE_INVALID', 'the body store refused the byte range');
      case 'SlowDown':
      case 'ServiceUnavailable':
      case 'InternalError':
        return make('SLUICE_BACKEND_UNAVAILABLE', 'the body store is overloaded or failing; retry later');
      default:
        if (status === 403) return make('SLUICE_BACKEND_UNAVAILABLE', 'the body store refused the request');
        if (status === 404) return make('SLUICE_NOT_FOUND', 'the body does not exist in the body store');
        if (status >= 500) return make('SLUICE_BACKEND_UNAVAILABLE', `the body store failed with HTTP ${status}`);
        return make('SLUICE_INTERNAL', `unexpected body store error ${err.name} (HTTP ${status})`);
    }
  }
  if (err instanceof Error) {
    if (err.name === 'AbortError') return make('SLUICE_ABORTED', 'aborted');
    if (err.name === 'TimeoutError' || (err as { code?: string }).code === 'ETIMEDOUT') return make('SLUICE_TIMEOUT', 'the body store did not answer in time');
    const code = (err as { code?: string }).code;
    if (code !== undefined && UNREACHABLE.has(code)) return make('SLUICE_BACKEND_UNAVAILABLE', 'cannot reach the body store');
  }
  return make('SLUICE_INTERNAL', 'unexpected body store failure');
}
