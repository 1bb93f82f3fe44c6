/** The error-code table and its documentation agree; errors survive serialisation. */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorTable, ExitCodes, GrpcStatus, mappingOf } from '../../bindings/error-table.ts';
import { BindingError, ConditionFailedError, deserializeError, ErrorCodes, serializeError } from '../../bindings/errors.ts';

describe('errors', () => {
  const doc = readFileSync(new URL('../../docs/ERRORS.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `(SLUICE_[A-Z_]+)` \| (.+) \| (\d+) \| `(\w+)` \| `(\w+)` \| (\w+) \| (yes|no) \|$/gm)];
  const documented = rows.map((m) => [m[1]!, m[2]!] as const);

  it('errors - every code in the table is documented with its meaning, and nothing else is', () => {
    expect(Object.fromEntries(documented)).toEqual(ErrorCodes);
  });

  it('errors - the docs table shows every row of ErrorTable: HTTP, S3, gRPC, CLI exit, retryable', () => {
    const fromDoc = Object.fromEntries(rows.map((m) => [m[1]!, { http: Number(m[3]), s3: m[4]!, grpc: m[5]!, exit: m[6]!, retryable: m[7] === 'yes' }]));
    expect(fromDoc).toEqual(JSON.parse(JSON.stringify(ErrorTable)));
  });

  it('errors - every row maps to a real gRPC status, exit code and an HTTP error status', () => {
    for (const [code, r] of Object.entries(ErrorTable)) {
      expect(GrpcStatus[r.grpc], code).toBeGreaterThan(0);
      expect(ExitCodes[r.exit], code).toBeGreaterThan(0);
      expect(r.http, code).toBeGreaterThanOrEqual(400);
      expect(r.http, code).toBeLessThan(600);
    }
    expect(mappingOf('NOT_A_SLUICE_CODE')).toBe(ErrorTable.SLUICE_INTERNAL);
  });

  it('errors - codes are unique and follow the SLUICE_ pattern', () => {
    const codes = documented.map(([c]) => c);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of Object.keys(ErrorCodes)) expect(c).toMatch(/^SLUICE_[A-Z]+(_[A-Z]+)*$/);
  });

  it('errors - every code the sources raise is in the table', () => {
    const used = execSync("grep -rhoE \"'SLUICE_[A-Z_]+'\" bindings runtime functions controller 2>/dev/null || true", { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((s) => s.slice(1, -1));
    expect(used.length).toBeGreaterThan(10);
    for (const c of new Set(used)) expect(Object.keys(ErrorCodes), `${c} is raised but not in ErrorCodes`).toContain(c);
  });

  it('errors - serialisation keeps name, code, message, cause chain and details', () => {
    const e = new ConditionFailedError('cond failed', { a: 1 }, 3, { cause: new BindingError('SLUICE_NOT_FOUND', 'inner') });
    const s = JSON.parse(JSON.stringify(serializeError(e)));
    expect(s).toMatchObject({ name: 'ConditionFailedError', code: 'SLUICE_CONDITION_FAILED', message: 'cond failed', cause: { code: 'SLUICE_NOT_FOUND', message: 'inner' } });
    const back = deserializeError(s);
    expect(back.code).toBe('SLUICE_CONDITION_FAILED');
    expect(back.name).toBe('ConditionFailedError');
    expect((back.cause as BindingError).code).toBe('SLUICE_NOT_FOUND');
    expect(deserializeError({ name: 'X', code: 'NOT_OURS', message: 'm' }).code).toBe('SLUICE_INTERNAL');
    expect(serializeError('plain string')).toEqual({ name: 'Error', code: 'SLUICE_INTERNAL', message: 'plain string' });
  });
});
