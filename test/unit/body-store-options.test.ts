/** Body store options: one test per validation rule, the defaults, the S3 error mapping, and the function spec's `backend.bodies`. */
import { S3ServiceException } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { resolveBodyStoreOptions } from '../../bindings/body-store.ts';
import { SluiceError } from '../../bindings/errors.ts';
import { toBindingError } from '../../bindings/s3/index.ts';
import { renderFunction } from '../../controller/kubernetes/render.ts';
import { loadFunctionSpec, SpecError, toWorkerOptions } from '../../controller/spec/index.ts';

const ok = { kind: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'b', accessKeyId: 'id', secretAccessKey: 'secret' } as const;

function refused(o: unknown, fragment: string): void {
  try {
    resolveBodyStoreOptions(o);
  } catch (e) {
    expect(e).toBeInstanceOf(SluiceError);
    expect((e as SluiceError).code).toBe('SLUICE_INVALID_ARGUMENT');
    expect((e as SluiceError).message).toContain(fragment);
    return;
  }
  throw new Error(`accepted ${JSON.stringify(o)}`);
}

describe('bodies/options', () => {
  it('bodies/options - defaults', () => {
    const r = resolveBodyStoreOptions(ok);
    expect(r).toMatchObject({ region: 'us-east-1', forcePathStyle: true, prefix: '', inlineMaxBytes: 65536, gcGraceMs: 3_600_000, gcIntervalMs: 900_000, gcMaxBodiesPerRun: 10_000, maxAttempts: 3, requestTimeoutMs: 30_000 });
    expect(Object.isFrozen(r)).toBe(true);
  });
  it('bodies/options - must be an object', () => refused('s3', 'must be an object'));
  it("bodies/options - kind must be 's3'", () => refused({ ...ok, kind: 'gcs' }, "kind must be 's3'"));
  it('bodies/options - endpoint must be an http(s) URL', () => refused({ ...ok, endpoint: 'ftp://x' }, 'endpoint must be an http(s) URL'));
  it('bodies/options - bucket must be a non-empty string', () => refused({ ...ok, bucket: '' }, 'bucket must be a non-empty string'));
  it('bodies/options - credentials are required', () => {
    refused({ ...ok, accessKeyId: undefined }, 'accessKeyId');
    refused({ ...ok, secretAccessKey: 3 }, 'secretAccessKey');
  });
  it('bodies/options - forcePathStyle must be a boolean', () => refused({ ...ok, forcePathStyle: 'yes' }, 'forcePathStyle must be a boolean'));
  it('bodies/options - inlineMaxBytes is an integer from 0 to 512 KiB', () => {
    refused({ ...ok, inlineMaxBytes: -1 }, 'inlineMaxBytes must be an integer from 0 to 524288');
    refused({ ...ok, inlineMaxBytes: 524289 }, 'inlineMaxBytes');
    expect(resolveBodyStoreOptions({ ...ok, inlineMaxBytes: 0 }).inlineMaxBytes).toBe(0);
  });
  it('bodies/options - collector bounds are integers', () => {
    refused({ ...ok, gcGraceMs: 1.5 }, 'gcGraceMs');
    refused({ ...ok, gcGraceMs: 0 }, 'gcGraceMs must be an integer from 1');
    refused({ ...ok, gcIntervalMs: -1 }, 'gcIntervalMs');
    refused({ ...ok, gcMaxBodiesPerRun: 0 }, 'gcMaxBodiesPerRun');
  });
  it('bodies/options - prefix is at most 256 characters', () => refused({ ...ok, prefix: 'p'.repeat(257) }, 'prefix'));
});

describe('bodies/errors', () => {
  const s3err = (name: string, status: number) => new S3ServiceException({ name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status }, message: name });
  const cases: [string, unknown, string][] = [
    ['NoSuchKey', s3err('NoSuchKey', 404), 'SLUICE_NOT_FOUND'],
    ['NoSuchBucket', s3err('NoSuchBucket', 404), 'SLUICE_BACKEND_UNAVAILABLE'],
    ['SignatureDoesNotMatch', s3err('SignatureDoesNotMatch', 403), 'SLUICE_BACKEND_UNAVAILABLE'],
    ['EntityTooLarge', s3err('EntityTooLarge', 400), 'SLUICE_VALUE_TOO_LARGE'],
    ['InvalidRange', s3err('InvalidRange', 416), 'SLUICE_RANGE_INVALID'],
    ['SlowDown', s3err('SlowDown', 503), 'SLUICE_BACKEND_UNAVAILABLE'],
    ['an unknown 500', s3err('Weird', 500), 'SLUICE_BACKEND_UNAVAILABLE'],
    ['an unknown 400', s3err('Weird', 400), 'SLUICE_INTERNAL'],
    ['ECONNREFUSED', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'SLUICE_BACKEND_UNAVAILABLE'],
    ['a timeout', Object.assign(new Error('timed out'), { name: 'TimeoutError' }), 'SLUICE_TIMEOUT'],
    ['an abort', Object.assign(new Error('aborted'), { name: 'AbortError' }), 'SLUICE_ABORTED'],
  ];
  for (const [what, err, code] of cases)
    it(`bodies/errors - ${what} maps to ${code}, naming the call and keeping the cause`, () => {
      const e = toBindingError(err, "get body b/x/1 from s3 body store");
      expect(e.code).toBe(code);
      expect(e.message).toContain('get body b/x/1');
      expect(e.cause).toBe(err);
    });
});

describe('bodies/spec', () => {
  const spec = (bodies: string, secrets = '  secrets:\n    - {name: s3-id, value: AKID}\n    - {name: s3-key, value: SECRET}\n') =>
    `apiVersion: sluice.dev/v1\nkind: Function\nmetadata:\n  name: scan\nspec:\n  handler: ./index.ts\n  triggers:\n    - object:\n        bucket: uploads\n  backend:\n    kind: local\n    bodies:\n${bodies}${secrets}`;
  const good = '      kind: s3\n      endpoint: http://127.0.0.1:9000\n      bucket: bodies\n      accessKeyIdSecret: s3-id\n      secretAccessKeySecret: s3-key\n      inlineMaxBytes: 0\n';

  it('bodies/spec - backend.bodies reaches the worker with credentials resolved from the secrets', () => {
    const w = toWorkerOptions(loadFunctionSpec(spec(good), 'scan.yaml'), { specDir: '/srv', ordinal: 0, replicas: 1 });
    expect(w.backend).toEqual({
      kind: 'local',
      dir: '/srv/.sluice-data',
      bodies: { kind: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'bodies', accessKeyId: 'AKID', secretAccessKey: 'SECRET', inlineMaxBytes: 0 },
    });
  });
  it('bodies/spec - rendered for Kubernetes, the S3 keys go into the Secret, never a ConfigMap', () => {
    const m = renderFunction(loadFunctionSpec(spec(good), 'scan.yaml'));
    expect(m.secret).toBeDefined();
    expect(JSON.stringify(m.secret)).toContain('SECRET');
    expect(JSON.stringify(m.configMap)).not.toContain('SECRET');
    expect(JSON.stringify(m.configMap)).not.toContain('AKID');
  });
  it('bodies/spec - the credential secrets must exist', () => {
    try {
      loadFunctionSpec(spec(good, '  secrets:\n    - {name: s3-id, value: AKID}\n'), 'scan.yaml');
      throw new Error('validated');
    } catch (e) {
      expect(e).toBeInstanceOf(SpecError);
      expect((e as Error).message).toContain('spec.backend.bodies.secretAccessKeySecret');
    }
  });
  it('bodies/spec - unknown keys and plain credentials are refused', () => {
    expect(() => loadFunctionSpec(spec(`${good}      secretAccessKey: inline\n`), 'scan.yaml')).toThrow(/secretAccessKey/);
  });
  it('bodies/spec - endpoint must be an http(s) URL', () => {
    expect(() => loadFunctionSpec(spec(good.replace('http://127.0.0.1:9000', 'not a url')), 'scan.yaml')).toThrow(/spec\.backend\.bodies\.endpoint/);
  });
});
