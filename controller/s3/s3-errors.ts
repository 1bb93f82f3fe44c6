/**
 * S3 errors as the gateway answers them. A sluice error is mapped through the ONE error table
 * (`bindings/error-table.ts`, `mappingOf(code)` → HTTP status and S3 code); the errors below exist only
 * at the S3 protocol layer (signatures, digests, multipart bookkeeping) and so live here, not in
 * `bindings/errors.ts`.
 */
import { mappingOf } from '../../bindings/error-table.ts';
import { SluiceError } from '../../bindings/errors.ts';

/** Errors only the S3 protocol layer raises: S3 code → HTTP status. */
export const S3OnlyErrors = {
  AccessDenied: 403,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  BadDigest: 400,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  EntityTooSmall: 400,
  EntityTooLarge: 400,
  IncompleteBody: 400,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidBucketName: 400,
  InvalidDigest: 400,
  InvalidPart: 400,
  InvalidPartOrder: 400,
  InvalidRange: 416,
  InvalidRequest: 400,
  MalformedXML: 400,
  MethodNotAllowed: 405,
  MissingContentLength: 411,
  NoSuchBucket: 404,
  NoSuchKey: 404,
  NoSuchUpload: 404,
  NotImplemented: 501,
  PreconditionFailed: 412,
  RequestTimeTooSkewed: 403,
  SignatureDoesNotMatch: 403,
  SlowDown: 503,
  XAmzContentSHA256Mismatch: 400,
  InternalError: 500,
} as const;
/** One of {@link S3OnlyErrors}. */
export type S3ErrorCode = keyof typeof S3OnlyErrors;

/** An error answered as S3 XML: `code` is the S3 `Code` element, `status` the HTTP status. */
export class S3Error extends Error {
  readonly code: string;
  readonly status: number;
  /** Extra response headers (e.g. `Content-Range` of an InvalidRange). */
  readonly headers: Record<string, string>;

  constructor(code: S3ErrorCode, message: string, options: { cause?: unknown; headers?: Record<string, string>; status?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'S3Error';
    this.code = code;
    this.status = options.status ?? S3OnlyErrors[code];
    this.headers = options.headers ?? {};
  }
}

/** The S3 answer for any thrown value: S3 errors as they are, sluice errors through the error table. */
export function toS3Answer(err: unknown): { status: number; code: string; message: string; headers: Record<string, string> } {
  if (err instanceof S3Error) return { status: err.status, code: err.code, message: err.message, headers: err.headers };
  if (err instanceof SluiceError) {
    const m = mappingOf(err.code);
    return { status: m.http, code: m.s3, message: err.message, headers: {} };
  }
  const code = (err as { code?: unknown } | undefined)?.code;
  const m = mappingOf(typeof code === 'string' ? code : 'SLUICE_INTERNAL');
  return { status: m.http, code: m.s3, message: err instanceof Error ? err.message : String(err), headers: {} };
}
