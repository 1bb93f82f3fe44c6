/** Function specs: one test per validation rule (path + line:column), defaults, and the step to worker options. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveWorkerOptions } from '../../runtime/worker-options.ts';
import { loadFunctionSpec, loadFunctionSpecFile, resolveSecrets, SpecError, toWorkerOptions, type FunctionSpec } from '../../controller/spec/index.ts';

// Lines 1-9; whatever a test appends under `spec:` starts at line 10, indented by two spaces.
const BASE = `apiVersion: sluice.dev/v1
kind: Function
metadata:
  name: scan
spec:
  handler: ./index.ts
  triggers:
    - object:
        bucket: uploads
`;
const withSpec = (extra: string) => BASE + extra;

function problemsOf(text: string): SpecError {
  try {
    loadFunctionSpec(text, 'scan.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    expect((e as SpecError).code).toBe('SLUICE_SPEC_INVALID');
    return e as SpecError;
  }
  throw new Error('spec validated but should not have');
}

/** [rule, text, path, line, column, message (substring)] */
const rules: [string, string, string, number, number, string][] = [
  ['apiVersion must be sluice.dev/v1', BASE.replace('sluice.dev/v1', 'sluice.dev/v2'), 'apiVersion', 1, 1, `must be 'sluice.dev/v1' (got "sluice.dev/v2")`],
  ['kind must be Function', BASE.replace('kind: Function', 'kind: Job'), 'kind', 2, 1, `must be 'Function' (got "Job")`],
  ['metadata is required', BASE.replace('metadata:\n  name: scan\n', ''), 'metadata', 1, 1, 'is required'],
  ['metadata.name is lowercase letters, digits and -', BASE.replace('name: scan', 'name: Scan_1'), 'metadata.name', 4, 3, "must be 1-63 lowercase letters, digits or '-'"],
  ['metadata.name is at most 63 characters', BASE.replace('name: scan', `name: ${'a'.repeat(64)}`), 'metadata.name', 4, 3, 'must be 1-63'],
  ['metadata.name does not end with -', BASE.replace('name: scan', 'name: scan-'), 'metadata.name', 4, 3, 'starting and ending with a letter or digit (got "scan-")'],
  ['metadata.labels keys are label keys', BASE.replace('name: scan', 'name: scan\n  labels:\n    "bad key": x'), 'metadata.labels.bad key', 6, 5, 'is not a label key'],
  ['metadata.labels values are label values', BASE.replace('name: scan', 'name: scan\n  labels:\n    team: "a b"'), 'metadata.labels.team', 6, 5, 'must be a label value (up to 63 letters, digits, -, _, .) (got "a b")'],
  ['unknown top-level keys are rejected', BASE + 'status: {}\n', 'status', 10, 1, 'unknown key'],
  ['unknown metadata keys are rejected', BASE.replace('name: scan', 'name: scan\n  namespace: x'), 'metadata.namespace', 5, 3, 'unknown key'],
  ['spec.handler is required', BASE.replace('  handler: ./index.ts\n', ''), 'spec.handler', 5, 1, 'is required'],
  ['spec.handler is not empty', BASE.replace('handler: ./index.ts', 'handler: ""'), 'spec.handler', 6, 3, 'must be the path of the function module'],
  ['spec.backend.kind is local or nats', withSpec('  backend:\n    kind: s3\n'), 'spec.backend.kind', 11, 5, `must be one of 'local', 'nats' (got "s3")`],
  ['spec.backend of kind nats needs url', withSpec('  backend:\n    kind: nats\n'), 'spec.backend.url', 10, 3, 'is required'],
  ['spec.backend local takes no url', withSpec('  backend:\n    kind: local\n    url: nats://x\n'), 'spec.backend.url', 12, 5, 'unknown key'],
  ['spec.backend.prefix holds letters, digits, _ and -', withSpec('  backend: {kind: nats, url: "nats://n:4222", prefix: "a.b"}\n'), 'spec.backend.prefix', 10, 47, "must hold only letters, digits, '_' and '-'"],
  ['spec.backend.tokenSecret names a secret', withSpec('  backend: {kind: nats, url: "nats://n:4222", tokenSecret: tok}\n'), 'spec.backend.tokenSecret', 10, 47, 'must name an entry of spec.secrets (got "tok")'],
  ['spec.triggers is required', BASE.replace(/  triggers:[^]*$/, ''), 'spec.triggers', 5, 1, 'is required'],
  ['spec.triggers has exactly one entry', withSpec('    - stream:\n        stream: s\n'), 'spec.triggers', 7, 3, 'must have exactly one entry'],
  ['a trigger has exactly one kind', BASE.replace('        bucket: uploads\n', '        bucket: uploads\n      stream:\n        stream: s\n'), 'spec.triggers[0]', 8, 7, 'must have exactly one of object, stream, http, cron, query (got object, stream)'],
  ['a trigger of no kind is refused', BASE.replace('    - object:\n        bucket: uploads\n', '    - {}\n'), 'spec.triggers[0]', 8, 7, '(got none)'],
  ['unknown trigger kinds are rejected', BASE.replace('- object:', '- webhook:'), 'spec.triggers[0].webhook', 8, 7, 'unknown key'],
  ['unknown keys in a trigger are rejected', withSpec('        colour: red\n'), 'spec.triggers[0].object.colour', 10, 9, 'unknown key'],
  ['object.bucket is required', BASE.replace('        bucket: uploads\n', '        prefix: a/\n'), 'spec.triggers[0].object.bucket', 8, 7, 'is required'],
  ['object.bucket is a name', BASE.replace('bucket: uploads', 'bucket: "up loads"'), 'spec.triggers[0].object.bucket', 9, 9, 'must be a name'],
  ['object.events are put, delete or attrs', withSpec('        events: [put, create]\n'), 'spec.triggers[0].object.events[1]', 10, 23, `must be one of 'put', 'delete', 'attrs' (got "create")`],
  ['object.events is not empty', withSpec('        events: []\n'), 'spec.triggers[0].object.events', 10, 9, 'must name at least one event type'],
  ['object.events does not repeat', withSpec('        events: [put, put]\n'), 'spec.triggers[0].object.events', 10, 9, 'must not repeat an event type'],
  ['object.inlineBodyMaxBytes is at most 4 MiB', withSpec('        inlineBodyMaxBytes: 99999999\n'), 'spec.triggers[0].object.inlineBodyMaxBytes', 10, 9, 'must be at most 4194304 (got 99999999)'],
  ['object.replicas is at most 5', withSpec('        replicas: 6\n'), 'spec.triggers[0].object.replicas', 10, 9, 'must be at most 5 (got 6)'],
  ['bindings[].replicas only on object and kv bindings', withSpec('  bindings:\n    - {name: f, kind: stream, resource: s, access: read, replicas: 3}\n'), 'spec.bindings[0].replicas', 11, 58, "applies to object and kv bindings only, not 'stream'"],
  ['stream.stream is a name', BASE.replace('- object:\n        bucket: uploads', '- stream:\n        stream: "a b"'), 'spec.triggers[0].stream.stream', 9, 9, 'must be a name'],
  ['http.path starts with /', BASE.replace('- object:\n        bucket: uploads', '- http:\n        path: hook'), 'spec.triggers[0].http.path', 9, 9, "must be a URL path starting with '/' (got \"hook\")"],
  ['http.methods are HTTP methods', BASE.replace('- object:\n        bucket: uploads', '- http:\n        path: /hook\n        methods: [FETCH]'), 'spec.triggers[0].http.methods[0]', 10, 19, 'must be one of GET, HEAD, POST, PUT, PATCH, DELETE'],
  ['cron.schedule is required', BASE.replace('- object:\n        bucket: uploads', '- cron:\n        timezone: UTC'), 'spec.triggers[0].cron.schedule', 8, 7, 'is required'],
  ['query.every is a duration', BASE.replace('- object:\n        bucket: uploads', '- query:\n        bucket: b\n        filter: "size > 1"\n        every: often'), 'spec.triggers[0].query.every', 11, 9, 'must be a duration'],
  ['batch.maxRecords is a positive integer', withSpec('  batch:\n    maxRecords: 0\n'), 'spec.batch.maxRecords', 11, 5, 'must be a positive integer (got 0)'],
  ['batch.maxRecords is an integer', withSpec('  batch:\n    maxRecords: 1.5\n'), 'spec.batch.maxRecords', 11, 5, 'must be a positive integer (got 1.5)'],
  ['batch.maxRecords is at most 10000', withSpec('  batch:\n    maxRecords: 20000\n'), 'spec.batch.maxRecords', 11, 5, 'must be at most 10000 (got 20000)'],
  ['batch.maxRecords is a number', withSpec('  batch:\n    maxRecords: lots\n'), 'spec.batch.maxRecords', 11, 5, 'must be a positive integer (got "lots")'],
  ['batch.maxBytes is at least 1024', withSpec('  batch:\n    maxBytes: 10\n'), 'spec.batch.maxBytes', 11, 5, 'must be an integer of at least 1024 (got 10)'],
  ['batch.maxWait is a duration', withSpec('  batch:\n    maxWait: 5 minutes\n'), 'spec.batch.maxWait', 11, 5, `must be a duration (a number of ms, or like '250ms', '30s', '5m', '1h') (got "5 minutes")`],
  ['batch takes no unknown keys', withSpec('  batch:\n    maxWaitMs: 50\n'), 'spec.batch.maxWaitMs', 11, 5, 'unknown key'],
  ['concurrency.threads is at most 64', withSpec('  concurrency:\n    threads: 65\n'), 'spec.concurrency.threads', 11, 5, 'must be at most 64 (got 65)'],
  ['concurrency.batchesInFlight is positive', withSpec('  concurrency:\n    batchesInFlight: 0\n'), 'spec.concurrency.batchesInFlight', 11, 5, 'must be a positive integer (got 0)'],
  ['retries.maxAttempts is positive', withSpec('  retries:\n    maxAttempts: 0\n'), 'spec.retries.maxAttempts', 11, 5, 'must be a positive integer (got 0)'],
  ['retries.initialBackoff does not exceed maxBackoff', withSpec('  retries:\n    maxBackoff: 1s\n    initialBackoff: 2s\n'), 'spec.retries.initialBackoff', 12, 5, 'must not exceed maxBackoff ("1s") (got "2s")'],
  ['retries.maxRecordAge is a duration', withSpec('  retries:\n    maxRecordAge: -5\n'), 'spec.retries.maxRecordAge', 11, 5, 'must be a duration'],
  ['retries.deadLetter.stream is required', withSpec('  retries:\n    deadLetter: {}\n'), 'spec.retries.deadLetter.stream', 11, 5, 'is required'],
  ['timeout is a duration', withSpec('  timeout: 10d\n'), 'spec.timeout', 10, 3, 'must be a duration'],
  ['scaling.minReplicas does not exceed maxReplicas', withSpec('  scaling:\n    minReplicas: 6\n'), 'spec.scaling.minReplicas', 11, 5, 'must not exceed maxReplicas (4) (got 6)'],
  ['scaling.maxReplicas is at least 1', withSpec('  scaling:\n    minReplicas: 0\n    maxReplicas: 0\n'), 'spec.scaling.maxReplicas', 12, 5, 'must be a positive integer (got 0)'],
  ['scaling.minReplicas is not negative', withSpec('  scaling:\n    minReplicas: -1\n'), 'spec.scaling.minReplicas', 11, 5, 'must be a non-negative integer (got -1)'],
  ['scaling.targetLagPerReplica is positive', withSpec('  scaling:\n    targetLagPerReplica: 0\n'), 'spec.scaling.targetLagPerReplica', 11, 5, 'must be a positive integer (got 0)'],
  ['scaling.scaleToZeroAfter is a duration', withSpec('  scaling:\n    scaleToZeroAfter: soon\n'), 'spec.scaling.scaleToZeroAfter', 11, 5, 'must be a duration'],
  ['scaling.maxBatchesInFlight is positive', withSpec('  scaling:\n    maxBatchesInFlight: 0\n'), 'spec.scaling.maxBatchesInFlight', 11, 5, 'must be a positive integer (got 0)'],
  ['scaling.stabilization takes only scaleUp and scaleDown', withSpec('  scaling:\n    stabilization:\n      scaleDown: 1m\n      window: 5m\n'), 'spec.scaling.stabilization.window', 13, 7, 'unknown key'],
  ['bindings[].name is an identifier', withSpec('  bindings:\n    - {name: 2fast, kind: kv, resource: t, access: read}\n'), 'spec.bindings[0].name', 11, 8, 'must be an identifier'],
  ['bindings[].kind is object, kv, stream, file or object-files', withSpec('  bindings:\n    - {name: t, kind: table, resource: t, access: read}\n'), 'spec.bindings[0].kind', 11, 17, `must be one of 'object', 'kv', 'stream', 'file', 'object-files' (got "table")`],
  ['bindings[].access is read or read-write', withSpec('  bindings:\n    - {name: t, kind: kv, resource: t, access: write}\n'), 'spec.bindings[0].access', 11, 40, `must be one of 'read', 'read-write' (got "write")`],
  ['bindings[].access of an object-files binding is read', withSpec('  bindings:\n    - {name: t, kind: object-files, resource: b, access: read-write}\n'), 'spec.bindings[0].access', 11, 50, "must be 'read' for an object-files binding"],
  ['bindings[].resource is required', withSpec('  bindings:\n    - name: t\n      kind: kv\n      access: read\n'), 'spec.bindings[0].resource', 11, 7, 'is required'],
  ['bindings names are unique', withSpec('  bindings:\n    - {name: t, kind: kv, resource: a, access: read}\n    - {name: t, kind: kv, resource: b, access: read}\n'), 'spec.bindings[1].name', 12, 8, `repeats an earlier entry's name (got "t")`],
  ['secrets[] has exactly one of fromEnv and value', withSpec('  secrets:\n    - name: tok\n'), 'spec.secrets[0]', 11, 7, 'must have exactly one of fromEnv, value'],
  ['secrets[].fromEnv is an environment variable name', withSpec('  secrets:\n    - {name: tok, fromEnv: "NATS-TOKEN"}\n'), 'spec.secrets[0].fromEnv', 11, 19, 'must be an environment variable name'],
  ['secrets names are unique', withSpec('  secrets:\n    - {name: tok, value: a}\n    - {name: tok, fromEnv: T}\n'), 'spec.secrets[1].name', 12, 8, "repeats an earlier entry's name"],
  ['a YAML syntax error carries line and column', withSpec('  batch: {maxRecords: 1\n'), '', 11, 1, 'YAML'],
  ['a duplicate YAML key is an error at its line', withSpec('  handler: ./other.ts\n'), '', 10, 3, 'YAML DUPLICATE_KEY'],
  ['an empty document is refused', '', '', 1, 1, 'must be a map'],
];

describe('spec', () => {
  it.each(rules)('spec - %s', (_rule, text, path, line, column, message) => {
    const e = problemsOf(text);
    const p = e.problems.find((q) => q.path === path);
    expect(p, `no problem at ${path}: ${e.message}`).toBeDefined();
    expect(p?.message).toContain(message);
    expect({ line: p?.line, column: p?.column }).toEqual({ line, column });
    expect(e.message).toContain(`scan.yaml:${line}:${column} ${path ? `${path}: ` : ''}`);
  });

  it('spec - messages read "file:line:col path: problem" and list every problem in file order', () => {
    const e = problemsOf(withSpec('        colour: red\n  batch:\n    maxRecords: 0\n'));
    expect(e.message).toBe(
      'invalid function spec (2 problems):\n' +
        '  scan.yaml:10:9 spec.triggers[0].object.colour: unknown key\n' +
        '  scan.yaml:12:5 spec.batch.maxRecords: must be a positive integer (got 0)',
    );
    expect(e.problems).toEqual([
      { path: 'spec.triggers[0].object.colour', line: 10, column: 9, message: 'unknown key' },
      { path: 'spec.batch.maxRecords', line: 12, column: 5, message: 'must be a positive integer (got 0)' },
    ]);
  });

  it('spec - a secret value never appears in an error', () => {
    const e = problemsOf(withSpec('  secrets:\n    - {name: tok, value: hunter2-secret, fromEnv: T}\n    - {name: "bad name", value: hunter2-secret}\n'));
    expect(e.problems.length).toBeGreaterThanOrEqual(2);
    expect(e.message).not.toContain('hunter2');
  });

  it('spec - defaults are applied by the schema', () => {
    const s = loadFunctionSpec(BASE);
    expect(s.metadata.labels).toEqual({});
    expect(s.spec.backend).toEqual({ kind: 'local', dir: './.sluice-data' });
    expect(s.spec.triggers[0]?.object).toEqual({ bucket: 'uploads', events: ['put'] });
    expect(s.spec.scaling).toEqual({ minReplicas: 1, maxReplicas: 4, targetLagPerReplica: 1000, scaleToZeroAfter: '5m', autoscaler: 'sluice', stabilization: { scaleUp: '0s', scaleDown: '60s' } });
    expect(s.spec.bindings).toEqual([]);
    expect(s.spec.secrets).toEqual([]);
    // Partly given blocks keep their own values and get the rest.
    const t = loadFunctionSpec(withSpec('  backend: {kind: local}\n  scaling:\n    maxReplicas: 8\n    stabilization: {scaleDown: 5m}\n'));
    expect(t.spec.backend).toEqual({ kind: 'local', dir: './.sluice-data' });
    expect(t.spec.scaling).toMatchObject({ minReplicas: 1, maxReplicas: 8, stabilization: { scaleUp: '0s', scaleDown: '5m' } });
  });

  it('spec - numbers are durations in milliseconds, strings carry a unit', () => {
    const s = loadFunctionSpec(withSpec('  timeout: 1500\n  batch: {maxWait: 250ms}\n  retries: {initialBackoff: 0.5s, maxBackoff: 1h}\n'));
    expect(s.spec.timeout).toBe(1500);
    const o = resolveWorkerOptions(toWorkerOptions(s, { specDir: '/fn', ordinal: 0, replicas: 1 }));
    expect([o.timeoutMs, o.batch.maxWaitMs, o.retries.initialBackoffMs, o.retries.maxBackoffMs]).toEqual([1500, 250, 500, 3_600_000]);
  });

  it('spec - an http trigger becomes the worker http trigger with its limits; a bad path names the path', () => {
    const s = loadFunctionSpec(BASE.replace('- object:\n        bucket: uploads', '- http:\n        path: /hook\n        methods: [POST]\n        maxBodyBytes: 1024\n        maxQueue: 2'));
    expect(toWorkerOptions(s, { specDir: '/fn', ordinal: 0, replicas: 1 }).trigger).toEqual({ type: 'http', path: '/hook', methods: ['POST'], maxBodyBytes: 1024, maxQueue: 2 });
    expect(() => loadFunctionSpec(BASE.replace('- object:\n        bucket: uploads', '- http:\n        path: hook'))).toThrow(/spec\.triggers\[0\]\.http\.path: must be a URL path/);
  });

  it('spec - secrets resolve from their value or from the environment, and a missing variable names the variable only', () => {
    const s = loadFunctionSpec(withSpec('  secrets:\n    - {name: a, value: "v-a"}\n    - {name: b, fromEnv: SECRET_B}\n'));
    expect(resolveSecrets(s, { SECRET_B: 'v-b' })).toEqual({ a: 'v-a', b: 'v-b' });
    expect(() => resolveSecrets(s, {})).toThrow(/spec\.secrets\[1\]\.fromEnv: environment variable SECRET_B \(secret "b"\) is not set/);
    try {
      resolveSecrets(s, {});
    } catch (e) {
      expect((e as SpecError).code).toBe('SLUICE_SPEC_INVALID');
      expect((e as Error).message).not.toContain('v-a');
    }
  });

  it('spec - toWorkerOptions for the local backend: absolute module and data dir, every block carried over', () => {
    const s = loadFunctionSpec(
      withSpec(
        '        events: [put, delete]\n        prefix: in/\n        suffix: .txt\n        inlineBodyMaxBytes: 1024\n' +
          '  backend: {kind: local, dir: ../data}\n  batch: {maxRecords: 50, maxBytes: 2048, maxWait: 10ms}\n  concurrency: {threads: 2, batchesInFlight: 3}\n' +
          '  retries: {maxAttempts: 3, initialBackoff: 100ms, maxBackoff: 5s, maxRecordAge: 10m, deadLetter: {stream: scan-dead}}\n  timeout: 20s\n' +
          '  bindings:\n    - {name: results, kind: kv, resource: results, access: read-write}\n',
      ),
    );
    const o = toWorkerOptions(s, { specDir: '/srv/fns/scan', ordinal: 1, replicas: 3 });
    expect(o).toEqual({
      function: 'scan',
      module: '/srv/fns/scan/index.ts',
      trigger: { type: 'object', bucket: 'uploads', events: ['put', 'delete'], prefix: 'in/', suffix: '.txt', inlineBodyMaxBytes: 1024 },
      backend: { kind: 'local', dir: '/srv/fns/data' },
      ordinal: 1,
      replicas: 3,
      batch: { maxRecords: 50, maxBytes: 2048, maxWait: '10ms' },
      retries: { maxAttempts: 3, initialBackoff: '100ms', maxBackoff: '5s', maxRecordAge: '10m', deadLetterStream: 'scan-dead' },
      threads: 2,
      batchesInFlight: 3,
      timeout: '20s',
      bindings: [{ name: 'results', kind: 'kv', resource: 'results', access: 'read-write' }],
    });
    expect(resolveWorkerOptions(o).retries.deadLetterStream).toBe('scan-dead');
  });

  it('spec - toWorkerOptions for the nats backend: url, prefix and the token from tokenSecret', () => {
    const s = loadFunctionSpec(
      BASE.replace('- object:\n        bucket: uploads', '- stream:\n        stream: clicks') +
        '  backend: {kind: nats, url: "nats://nats.sluice:4222", prefix: prod, tokenSecret: nats-token}\n  secrets:\n    - {name: nats-token, fromEnv: NATS_TOKEN}\n',
    );
    const o = toWorkerOptions(s, { specDir: '/srv/fns/scan', ordinal: 0, replicas: 2, env: { NATS_TOKEN: 't0ken' } });
    expect(o.backend).toEqual({ kind: 'nats', url: 'nats://nats.sluice:4222', prefix: 'prod', token: 't0ken' });
    expect(o.trigger).toEqual({ type: 'stream', stream: 'clicks' });
    expect(o.replicas).toBe(2);
    expect(() => toWorkerOptions(s, { specDir: '/srv', ordinal: 0, replicas: 1, env: {} })).toThrow(/NATS_TOKEN/);
    // Only the backend block differs from the local spec.
    const local: FunctionSpec = { ...s, spec: { ...s.spec, backend: { kind: 'local', dir: './.sluice-data' } } };
    // (Its secret is now a handler secret, resolved at deploy like every declared secret.)
    expect(toWorkerOptions(local, { specDir: '/srv/fns/scan', ordinal: 0, replicas: 2, env: { NATS_TOKEN: 't0ken' } }).backend).toEqual({ kind: 'local', dir: '/srv/fns/scan/.sluice-data' });
  });

  it('spec - toWorkerOptions refuses what the worker would refuse (ordinal past replicas)', () => {
    const s = loadFunctionSpec(BASE);
    expect(() => toWorkerOptions(s, { specDir: '/fn', ordinal: 2, replicas: 2 })).toThrow(expect.objectContaining({ code: 'SLUICE_INVALID_ARGUMENT' }));
  });

  it('spec - loadFunctionSpecFile names the file in messages; a missing file is SLUICE_FILE_NOT_FOUND', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-spec-'));
    const f = join(dir, 'fn.yaml');
    writeFileSync(f, withSpec('  timeout: never\n'));
    expect(() => loadFunctionSpecFile(f)).toThrow(`${f}:10:3 spec.timeout: must be a duration`);
    expect(() => loadFunctionSpecFile(join(dir, 'nope.yaml'))).toThrow(expect.objectContaining({ code: 'SLUICE_FILE_NOT_FOUND' }));
  });

  it('spec - functions/scan-sensitive/function.yaml validates and becomes worker options', () => {
    const file = new URL('../../functions/scan-sensitive/function.yaml', import.meta.url).pathname;
    const s = loadFunctionSpecFile(file);
    expect(s.metadata.name).toBe('scan-sensitive');
    const o = toWorkerOptions(s, { specDir: join(file, '..'), ordinal: 0, replicas: 1 });
    expect(o.module.endsWith('functions/scan-sensitive/index.ts')).toBe(true);
    expect(o.trigger).toEqual({ type: 'object', bucket: 'uploads', events: ['put'] });
    expect(o.bindings).toEqual([]);
  });

  it('spec - functions/backup/function.yaml validates; its secrets reach the worker options resolved from the environment', () => {
    const file = new URL('../../functions/backup/function.yaml', import.meta.url).pathname;
    const s = loadFunctionSpecFile(file);
    const env = { BACKUP_ENDPOINT: 'http://127.0.0.1:9000', BACKUP_BUCKET: 'b', BACKUP_REGION: 'r', BACKUP_ACCESS_KEY_ID: 'AK', BACKUP_SECRET_ACCESS_KEY: 'SK' };
    const o = toWorkerOptions(s, { specDir: join(file, '..'), ordinal: 0, replicas: 1, env });
    expect(o.trigger).toMatchObject({ type: 'object', bucket: 'uploads', feed: 'query-backup', query: { where: 'attribute_not_exists(backed_up_etag) OR backed_up_etag <> etag', everyMs: 300_000, pageSize: 500 } });
    expect(o.secrets).toEqual({ 'backup-endpoint': 'http://127.0.0.1:9000', 'backup-bucket': 'b', 'backup-region': 'r', 'backup-access-key-id': 'AK', 'backup-secret-access-key': 'SK' });
    expect(() => toWorkerOptions(s, { specDir: '/', ordinal: 0, replicas: 1, env: { ...env, BACKUP_SECRET_ACCESS_KEY: '' } })).toThrow(/BACKUP_SECRET_ACCESS_KEY \(secret "backup-secret-access-key"\) is not set/);
  });

  it('spec - the handler secrets never include the NATS backend token (least privilege)', () => {
    const s = loadFunctionSpec(
      withSpec('  backend: {kind: nats, url: "nats://n:4222", tokenSecret: tok}\n  secrets:\n    - {name: tok, value: nats-token-value}\n    - {name: api-key, fromEnv: API_KEY}\n'),
    );
    const o = toWorkerOptions(s, { specDir: '/', ordinal: 0, replicas: 1, env: { API_KEY: 'k' } });
    expect(o.secrets).toEqual({ 'api-key': 'k' });
    expect((o.backend as { token?: string }).token).toBe('nats-token-value');
  });
});

describe('spec - scaling.autoscaler', () => {
  it("spec - scaling.autoscaler accepts 'sluice' and 'keda' and refuses anything else, naming the path", async () => {
    const { loadFunctionSpec } = await import('../../controller/spec/index.ts');
    const base = `apiVersion: sluice.dev/v1\nkind: Function\nmetadata: {name: f}\nspec:\n  handler: ./h.ts\n  triggers: [{stream: {stream: s}}]\n`;
    expect(loadFunctionSpec(`${base}  scaling: {autoscaler: keda}\n`).spec.scaling.autoscaler).toBe('keda');
    expect(() => loadFunctionSpec(`${base}  scaling: {autoscaler: hpa}\n`)).toThrow(/spec\.scaling\.autoscaler/);
  });
});

describe('spec - cron triggers', () => {
  const base = (cron: string) => `apiVersion: sluice.dev/v1\nkind: Function\nmetadata: {name: tick}\nspec:\n  handler: ./h.ts\n  triggers:\n    - cron: ${cron}\n`;

  it('spec - a cron trigger becomes a stream trigger on the tick stream with its schedule and policies (defaults one / skip)', async () => {
    const { loadFunctionSpec, toWorkerOptions } = await import('../../controller/spec/index.ts');
    const o = toWorkerOptions(loadFunctionSpec(base('{schedule: "*/5 * * * * *", timezone: Europe/Paris}')), { specDir: '/fn', ordinal: 0, replicas: 1 });
    expect(o.trigger).toEqual({ type: 'stream', stream: 'cron-tick', cron: { schedule: '*/5 * * * * *', timezone: 'Europe/Paris', catchUp: 'one', overlap: 'skip' } });
    const q = toWorkerOptions(loadFunctionSpec(base('{schedule: "0 * * * *", catchUp: all, overlap: queue}')), { specDir: '/fn', ordinal: 0, replicas: 1 });
    expect(q.trigger).toMatchObject({ cron: { catchUp: 'all', overlap: 'queue' } });
  });

  it('spec - a bad cron expression, time zone or policy is SLUICE_SPEC_INVALID naming the path and line', async () => {
    const { loadFunctionSpec } = await import('../../controller/spec/index.ts');
    const cases: [string, RegExp][] = [
      ['{schedule: "61 * * * *"}', /spec\.triggers\[0\]\.cron\.schedule/],
      ['{schedule: "every monday"}', /spec\.triggers\[0\]\.cron\.schedule/],
      ['{schedule: "* * * * *", timezone: Mars/Olympus}', /spec\.triggers\[0\]\.cron\.(timezone|schedule)/],
      ['{schedule: "* * * * *", catchUp: some}', /spec\.triggers\[0\]\.cron\.catchUp/],
      ['{schedule: "* * * * *", overlap: wait}', /spec\.triggers\[0\]\.cron\.overlap/],
    ];
    for (const [cron, path] of cases) {
      let err: unknown;
      try {
        loadFunctionSpec(base(cron), 'tick.yaml');
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string })?.code, cron).toBe('SLUICE_SPEC_INVALID');
      expect((err as Error).message, cron).toMatch(path);
      expect((err as Error).message, cron).toMatch(/tick\.yaml:7:/);
    }
  });
});

describe('spec - query triggers', () => {
  const base = (q: string) => `apiVersion: sluice.dev/v1\nkind: Function\nmetadata: {name: backup}\nspec:\n  handler: ./h.ts\n  triggers:\n    - query: ${q}\n`;
  const opts = { specDir: '/fn', ordinal: 0, replicas: 1 };

  it('spec - scheduled (every / schedule) and continuous query triggers become object triggers with where, feed and query', async () => {
    const { loadFunctionSpec, toWorkerOptions } = await import('../../controller/spec/index.ts');
    expect(toWorkerOptions(loadFunctionSpec(base('{bucket: docs, where: "size > 10", every: 5m, pageSize: 100}')), opts).trigger).toEqual({
      type: 'object', bucket: 'docs', events: ['put'], where: 'size > 10', feed: 'query-backup', query: { where: 'size > 10', everyMs: 300_000, pageSize: 100 },
    });
    expect(toWorkerOptions(loadFunctionSpec(base('{bucket: docs, where: "size > 10", schedule: "0 */5 * * * *", prefix: a/}')), opts).trigger).toMatchObject({ feed: 'query-backup', prefix: 'a/', query: { schedule: '0 */5 * * * *', prefix: 'a/' } });
    expect(toWorkerOptions(loadFunctionSpec(base('{bucket: docs, where: "exists(x)", continuous: true, events: [put, attrs]}')), opts).trigger).toEqual({ type: 'object', bucket: 'docs', events: ['put', 'attrs'], where: 'exists(x)' });
  });

  it('spec - a query trigger needs exactly one mode and a where that parses; errors name the path', async () => {
    const { loadFunctionSpec } = await import('../../controller/spec/index.ts');
    const cases: [string, RegExp][] = [
      ['{bucket: docs, where: "size > 1"}', /spec\.triggers\[0\]\.query: must give exactly one of schedule, every, continuous/],
      ['{bucket: docs, where: "size > 1", every: 1m, continuous: true}', /exactly one of/],
      ['{bucket: docs, where: "size >", every: 1m}', /spec\.triggers\[0\]\.query\.where: does not parse/],
      ['{bucket: docs, where: "size > 1", schedule: "99 * * * *"}', /spec\.triggers\[0\]\.query\.schedule/],
      ['{bucket: docs, where: "size > 1", every: 1m, events: [put]}', /spec\.triggers\[0\]\.query\.events: only applies to continuous/],
    ];
    for (const [q, re] of cases) expect(() => loadFunctionSpec(base(q), 'backup.yaml'), q).toThrow(re);
  });
});

describe('spec - chaining and bisect', () => {
  const base = (trigger: string, extra = '') => `apiVersion: sluice.dev/v1\nkind: Function\nmetadata: {name: chain}\nspec:\n  handler: ./h.ts\n  triggers: [${trigger}]\n${extra}`;
  const opts = { specDir: '/fn', ordinal: 0, replicas: 1 };

  it('spec - selfTrigger, maxHops and bisectOnError reach the worker options; their defaults are false, 8 and true', () => {
    const o = resolveWorkerOptions(toWorkerOptions(loadFunctionSpec(base('{object: {bucket: b, events: [put, attrs], selfTrigger: true}}', '  maxHops: 3\n  bisectOnError: false\n')), opts));
    expect([o.trigger.type === 'object' && o.trigger.selfTrigger, o.maxHops, o.bisectOnError]).toEqual([true, 3, false]);
    const d = resolveWorkerOptions(toWorkerOptions(loadFunctionSpec(base('{object: {bucket: b}}')), opts));
    expect([d.trigger.type === 'object' && d.trigger.selfTrigger, d.maxHops, d.bisectOnError]).toEqual([false, 8, true]);
    const st = resolveWorkerOptions(toWorkerOptions(loadFunctionSpec(base('{stream: {stream: s, selfTrigger: true}}')), opts));
    expect(st.trigger.type === 'stream' && st.trigger.selfTrigger).toBe(true);
  });

  it('spec - the platform default of maxHops is the controller\'s $SLUICE_MAX_HOPS, carried in the worker options', () => {
    const env = { SLUICE_MAX_HOPS: '12' };
    expect(toWorkerOptions(loadFunctionSpec(base('{object: {bucket: b}}')), { ...opts, env }).maxHops).toBe(12);
    expect(toWorkerOptions(loadFunctionSpec(base('{object: {bucket: b}}', '  maxHops: 2\n')), { ...opts, env }).maxHops).toBe(2);
    expect(toWorkerOptions(loadFunctionSpec(base('{object: {bucket: b}}')), { ...opts, env: {} }).maxHops).toBeUndefined();
    expect(() => toWorkerOptions(loadFunctionSpec(base('{object: {bucket: b}}')), { ...opts, env: { SLUICE_MAX_HOPS: '0' } })).toThrow(/SLUICE_MAX_HOPS .* must be an integer from 1 to 1000, got "0"/);
  });

  it('spec - a worker without maxHops in its options falls back to its own $SLUICE_MAX_HOPS; a bad one names the variable', () => {
    const prev = process.env.SLUICE_MAX_HOPS;
    try {
      process.env.SLUICE_MAX_HOPS = '20';
      expect(resolveWorkerOptions(toWorkerOptions(loadFunctionSpec(base('{object: {bucket: b}}')), opts)).maxHops).toBe(20);
      expect(resolveWorkerOptions(toWorkerOptions(loadFunctionSpec(base('{object: {bucket: b}}', '  maxHops: 2\n')), opts)).maxHops).toBe(2);
      process.env.SLUICE_MAX_HOPS = 'lots';
      expect(() => resolveWorkerOptions({ function: 'f', module: '/m.ts', trigger: { type: 'object', bucket: 'b' }, backend: { kind: 'local', dir: '/d' } })).toThrow(/SLUICE_MAX_HOPS/);
    } finally {
      if (prev === undefined) delete process.env.SLUICE_MAX_HOPS;
      else process.env.SLUICE_MAX_HOPS = prev;
    }
  });

  it('spec - a bad maxHops, bisectOnError or selfTrigger is SLUICE_SPEC_INVALID naming the path', () => {
    expect(() => loadFunctionSpec(base('{object: {bucket: b}}', '  maxHops: 0\n'))).toThrow(/spec\.maxHops: must be a positive integer/);
    expect(() => loadFunctionSpec(base('{object: {bucket: b}}', '  maxHops: 5000\n'))).toThrow(/spec\.maxHops: must be at most 1000/);
    expect(() => loadFunctionSpec(base('{object: {bucket: b}}', '  bisectOnError: yes please\n'))).toThrow(/spec\.bisectOnError: must be true or false/);
    expect(() => loadFunctionSpec(base('{object: {bucket: b, selfTrigger: 1}}'))).toThrow(/spec\.triggers\[0\]\.object\.selfTrigger: must be true or false/);
  });
});
