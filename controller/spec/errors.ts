/** The error a malformed function spec raises: every problem, each with its path and position. */
import { SluiceError, type SluiceErrorOptions } from '../../bindings/errors.ts';
import type { SpecProblem } from './types.ts';

/** Formats one problem as `file:line:col path: message`. */
export function formatProblem(p: SpecProblem, file: string | undefined): string {
  const where = p.line === undefined ? (file ?? '') : `${file ?? '<spec>'}:${p.line}:${p.column ?? 1}`;
  return `${where}${where ? ' ' : ''}${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/**
 * A function spec that does not validate (code `SLUICE_SPEC_INVALID`). The message lists every
 * problem on its own line, e.g. `scan.yaml:7:5 spec.batch.maxRecords: must be a positive integer (got 0)`;
 * `problems` holds them as data. Messages never quote a secret's value.
 */
export class SpecError extends SluiceError {
  readonly problems: readonly SpecProblem[];
  readonly file: string | undefined;

  constructor(problems: SpecProblem[], file?: string, options: SluiceErrorOptions = {}) {
    const lines = problems.map((p) => formatProblem(p, file));
    const head = problems.length === 1 ? 'invalid function spec: ' : `invalid function spec (${problems.length} problems):\n  `;
    super('SLUICE_SPEC_INVALID', head + lines.join('\n  '), options);
    this.name = 'SpecError';
    this.problems = Object.freeze(problems.map((p) => Object.freeze({ ...p })));
    this.file = file;
  }
}
