/** The exit-code table of docs/CLI.md agrees with `ExitCodes`, their meanings, and `exitCodeOf`. */
import { readFileSync } from 'node:fs';
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../bindings/errors.ts';
import { ExitCodeMeanings, ExitCodes, exitCodeOf } from '../../controller/cli/context.ts';

describe('cli exit codes', () => {
  const doc = readFileSync(new URL('../../docs/CLI.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('## Exit codes'), doc.indexOf('\n## ', doc.indexOf('## Exit codes') + 1));
  // | 3 | `notFound` | meaning | `SLUICE_NOT_FOUND`, ... |
  const rows = [...section.matchAll(/^\| (\d+) \| `(\w+)` \| ([^|]+) \|([^|]*)\|$/gm)].map((m) => ({
    code: Number(m[1]),
    name: m[2]!,
    meaning: m[3]!.trim(),
    errors: m[4]!.trim(),
  }));

  it('cli - every exit code is documented with its number and name, in order, and nothing else is', () => {
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.map((r) => [r.name, r.code])).toEqual(Object.entries(ExitCodes));
  });

  it('cli - the documented meanings are the ones `sluice --help` prints (ExitCodeMeanings)', () => {
    expect(Object.fromEntries(rows.map((r) => [r.name, r.meaning]))).toEqual(ExitCodeMeanings);
  });

  it('cli - the error codes listed per exit code are exactly the ones exitCodeOf maps there; the rest exit 1', () => {
    const listed = new Map<string, number>();
    for (const r of rows) {
      if (r.code === ExitCodes.failed) continue; // "every code not listed below, e.g. ..."
      for (const m of r.errors.matchAll(/`(SLUICE_[A-Z_]+)`/g)) {
        expect(listed.has(m[1]!), `${m[1]} listed twice`).toBe(false);
        listed.set(m[1]!, r.code);
      }
    }
    for (const code of Object.keys(ErrorCodes)) {
      expect(exitCodeOf({ code }), code).toBe(listed.get(code) ?? ExitCodes.failed);
    }
    for (const c of listed.keys()) expect(Object.keys(ErrorCodes), `${c} is listed but is not an error code`).toContain(c);
    // The examples of exit 1 are real codes that do exit 1.
    const failedRow = rows.find((r) => r.code === ExitCodes.failed)!;
    for (const m of failedRow.errors.matchAll(/`(SLUICE_[A-Z_]+)`/g)) expect(exitCodeOf({ code: m[1] }), m[1]).toBe(ExitCodes.failed);
  });

  it('cli - usage errors of the argument parser exit 2; an error without a code exits 1', () => {
    expect(exitCodeOf(new CommanderError(1, 'commander.unknownCommand', "error: unknown command 'x'"))).toBe(ExitCodes.usage);
    expect(exitCodeOf(new Error('boom'))).toBe(ExitCodes.failed);
  });
});
