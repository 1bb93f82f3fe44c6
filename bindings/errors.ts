/**
 * sluice's error model: one base class with a stable string `code`, one table of codes.
 *
 * Codes are never reused or renamed; `docs/ERRORS.md` documents every one, and a unit test
 * checks this table against that page. Errors that cross threads or processes travel as
 * {@link SerializedError} and come back as the same class with the same code.
 */

/** Every code sluice raises, with a one-line meaning. Closed set: add, never rename or reuse. */
export const ErrorCodes = {
  SLUICE_INVALID_ARGUMENT: 'an argument has the wrong type or shape',
  SLUICE_NAME_INVALID: 'a bucket, table or stream name breaks the naming rules',
  SLUICE_KEY_INVALID: 'an object key or item key is empty, too long, or holds forbidden characters',
  SLUICE_VALUE_TOO_LARGE: 'a body, item, attribute or record exceeds its documented size bound',
  SLUICE_VALUE_INVALID: 'a value is not one of the supported types (string, number, boolean, null, bytes, timestamp, list, map)',
  SLUICE_NOT_FOUND: 'the object or item does not exist',
  SLUICE_BUCKET_NOT_FOUND: 'the bucket does not exist',
  SLUICE_TABLE_NOT_FOUND: 'the table does not exist',
  SLUICE_STREAM_NOT_FOUND: 'the stream does not exist',
  SLUICE_ALREADY_EXISTS: 'a bucket, table or stream already exists with a different configuration',
  SLUICE_CONDITION_FAILED: 'a condition (expression, ifMatch, ifNoneMatch, revision) did not hold; nothing was written',
  SLUICE_EXPRESSION_SYNTAX: 'an expression does not parse; the message gives line and column',
  SLUICE_EXPRESSION_INVALID: 'an expression parses but cannot be evaluated (unknown placeholder, wrong operand type)',
  SLUICE_RANGE_INVALID: 'a byte range lies outside the object',
  SLUICE_CURSOR_INVALID: 'a stream cursor or continuation token is malformed or belongs elsewhere',
  SLUICE_SHARD_INVALID: 'a shard number lies outside the stream or bucket',
  SLUICE_PATH_INVALID: 'a file path is malformed or escapes the binding root',
  SLUICE_FILE_NOT_FOUND: 'a file or directory does not exist',
  SLUICE_FILE_EXISTS: 'a file or directory already exists where it must not',
  SLUICE_NOT_A_DIRECTORY: 'a path component is not a directory',
  SLUICE_IS_A_DIRECTORY: 'a file operation was given a directory',
  SLUICE_DIRECTORY_NOT_EMPTY: 'a directory to remove is not empty',
  SLUICE_BACKEND_UNAVAILABLE: 'the backend cannot be reached or has been closed',
  SLUICE_TIMEOUT: 'an operation did not finish within its deadline',
  SLUICE_ABORTED: 'an operation was cancelled through its AbortSignal',
  SLUICE_CONFLICT: 'a concurrent writer won every attempt of an optimistic update',
  SLUICE_INTERNAL: 'an unexpected backend failure; the cause carries the native error',
  SLUICE_ACCESS_DENIED: 'a handler used a binding it did not declare, or wrote through a read-only binding',
  SLUICE_HANDLER_TIMEOUT: 'a handler ran past its timeout; its thread was replaced and the batch is retried',
  SLUICE_SLOT_OVERFLOW: 'a batch or its results do not fit in a shared-memory slot',
  SLUICE_HANDLER_FAILED: 'a handler threw or its thread died; the batch is retried',
  SLUICE_LEASE_LOST: 'a worker lost the lease of a shard to a newer epoch; it stops handling that shard',
  SLUICE_SPEC_INVALID: 'a function spec does not validate; the message names the path and line',
  SLUICE_KUBERNETES: 'the Kubernetes API refused or failed a request; the message names the resource',
  SLUICE_UNAUTHENTICATED: 'a control API call carried no bearer token, or one the server does not accept',
  SLUICE_STORAGE_FULL: "the backend's storage is full (disk, volume or quota); nothing was written; retry once space is freed",
  SLUICE_HANDLER_LOAD: 'a handler module does not load (syntax error, missing import, throw at import) or has no default-exported function; details give file, line, column and stack; nothing was deployed',
  SLUICE_BINDING_MISSING: "a function's binding (or trigger) names a bucket, table or stream that does not exist; nothing was deployed",
  SLUICE_WRITE_LOCK_STALLED: "a process has held the local store's write lock past the bound while stopped or stuck; every writer waits for it (logged by the platform's lock watchdog with the pid; under `sluice dev` a stopped worker holding it is killed and restarted)",
  SLUICE_HOP_LIMIT: "a record reached its function's chain depth limit (spec maxHops: function commits that led to it) and was dead-lettered instead of run, to stop a trigger loop",
  SLUICE_BUCKET_NOT_EMPTY: 'a bucket to delete still holds objects; nothing was deleted',
  SLUICE_BUCKET_IN_USE: 'a bucket to delete is bound or triggered on by a deployed function; nothing was deleted',
} as const;

/** A stable sluice error code. */
export type ErrorCode = keyof typeof ErrorCodes;

/** Options accepted by {@link SluiceError}. */
export interface SluiceErrorOptions {
  /** The native error (or another SluiceError) that led to this one. */
  cause?: unknown;
  /** Structured details for callers (e.g. the current item of a failed condition). */
  details?: Record<string, unknown>;
}

/** Base class of every error sluice raises. `code` is stable; `message` names what was wrong and where. */
export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.details = options.details;
  }
}

/** Raised by the bindings and the expression language. */
export class BindingError extends SluiceError {
  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(code, message, options);
    this.name = 'BindingError';
  }
}

/**
 * A condition did not hold. Carries the current state so callers can decide without another read:
 * `current` is the current item / attributes (undefined when absent), `revision` its revision.
 */
export class ConditionFailedError extends BindingError {
  readonly current: unknown;
  readonly revision: number | undefined;

  constructor(message: string, current: unknown, revision: number | undefined, options: SluiceErrorOptions = {}) {
    super('SLUICE_CONDITION_FAILED', message, options);
    this.name = 'ConditionFailedError';
    this.current = current;
    this.revision = revision;
  }
}

/** A malformed expression; `line`/`column` (1-based) and `offset` (0-based) point at the fault. */
export class ExpressionError extends BindingError {
  readonly line: number;
  readonly column: number;
  readonly offset: number;

  constructor(message: string, position: { line: number; column: number; offset: number }, options: SluiceErrorOptions = {}) {
    super('SLUICE_EXPRESSION_SYNTAX', message, options);
    this.name = 'ExpressionError';
    this.line = position.line;
    this.column = position.column;
    this.offset = position.offset;
  }
}

/** The shape in which errors cross threads and processes. */
export interface SerializedError {
  name: string;
  code: string;
  message: string;
  stack?: string;
  cause?: SerializedError;
  details?: Record<string, unknown>;
}

/** True when `code` is one of sluice's stable codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ErrorCodes, code);
}

/** Turns any thrown value into {@link SerializedError} (plain data, safe for structured clone or JSON). */
export function serializeError(err: unknown, depth = 0): SerializedError {
  if (err instanceof Error) {
    const out: SerializedError = {
      name: err.name,
      code: err instanceof SluiceError ? err.code : nativeCode(err),
      message: err.message,
    };
    if (err.stack !== undefined) out.stack = err.stack;
    if (err instanceof SluiceError && err.details !== undefined) out.details = err.details;
    if (err.cause !== undefined && depth < 4) out.cause = serializeError(err.cause, depth + 1);
    return out;
  }
  return { name: 'Error', code: 'SLUICE_INTERNAL', message: String(err) };
}

function nativeCode(err: Error): string {
  const c: unknown = (err as Error & { code?: unknown }).code;
  return typeof c === 'string' ? c : 'SLUICE_INTERNAL';
}

/** Rebuilds a {@link SluiceError} from its serialized form, keeping code, name, stack and cause chain. */
export function deserializeError(s: SerializedError): SluiceError {
  const code: ErrorCode = isErrorCode(s.code) ? s.code : 'SLUICE_INTERNAL';
  const opts: SluiceErrorOptions = {};
  if (s.cause !== undefined) opts.cause = deserializeError(s.cause);
  if (s.details !== undefined) opts.details = s.details;
  const e = new SluiceError(code, s.message, opts);
  e.name = s.name;
  if (s.stack !== undefined) e.stack = s.stack;
  return e;
}
