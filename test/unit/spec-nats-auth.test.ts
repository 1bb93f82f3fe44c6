/**
 * spec.backend for NATS identities and TLS: `user` + `passwordSecret` (a per-function NATS user,
 * controller/nats-users.ts) and `tls` files resolved against the spec's folder; one test per rule.
 */
import { expect, it } from 'vitest';
import { loadFunctionSpec, toWorkerOptions } from '../../controller/spec/index.ts';

const spec = (backend: string, secrets = '[{name: pw, fromEnv: FN_PW}]') => `apiVersion: sluice.dev/v1
kind: Function
metadata: {name: f}
spec:
  handler: ./h.ts
  backend: ${backend}
  secrets: ${secrets}
  triggers: [{object: {bucket: b}}]
`;

it('spec/nats - user + passwordSecret and tls files reach the worker options (paths against the spec folder, password from the env)', () => {
  const s = loadFunctionSpec(spec('{kind: nats, url: "nats://a:4222,nats://b:4222", user: sluice-fn-f, passwordSecret: pw, replicas: 3, tls: {caFile: ca.pem, certFile: c.pem, keyFile: c.key}}'));
  const o = toWorkerOptions(s, { specDir: '/srv/fns/f', ordinal: 0, replicas: 1, env: { FN_PW: 'hunter2' } });
  expect(o.backend).toEqual({
    kind: 'nats',
    url: 'nats://a:4222,nats://b:4222',
    replicas: 3,
    user: 'sluice-fn-f',
    pass: 'hunter2',
    tls: { caFile: '/srv/fns/f/ca.pem', certFile: '/srv/fns/f/c.pem', keyFile: '/srv/fns/f/c.key' },
  });
});

it('spec/nats - passwordSecret must name a secret', () => {
  expect(() => loadFunctionSpec(spec('{kind: nats, url: "nats://a", user: u, passwordSecret: nope}'))).toThrow(/spec\.backend\.passwordSecret: must name an entry of spec\.secrets/);
});

it('spec/nats - user without passwordSecret is refused', () => {
  expect(() => loadFunctionSpec(spec('{kind: nats, url: "nats://a", user: u}'))).toThrow(/spec\.backend\.passwordSecret: user and passwordSecret go together/);
});

it('spec/nats - tls certFile without keyFile is refused', () => {
  expect(() => loadFunctionSpec(spec('{kind: nats, url: "nats://a", tls: {certFile: c.pem}}'))).toThrow(/spec\.backend\.tls: certFile and keyFile go together/);
});

it("spec/nats - replicas must be 'auto' or 1-5", () => {
  expect(() => loadFunctionSpec(spec('{kind: nats, url: "nats://a", replicas: 7}'))).toThrow(/spec\.backend\.replicas/);
  expect(loadFunctionSpec(spec('{kind: nats, url: "nats://a", replicas: auto}')).spec.backend).toMatchObject({ replicas: 'auto' });
});
