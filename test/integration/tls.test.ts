/**
 * TLS where traffic leaves the process, with certificates this test makes with the openssl CLI (a CA,
 * a server certificate for 127.0.0.1, a client certificate):
 * - the control API (gRPC) serves TLS from certificate files and refuses plaintext clients;
 * - `loadTls` feeds an HTTPS server (the helper for the other HTTP servers) and names bad files;
 * - the NATS backend connects over mTLS to a nats-server that verifies client certificates, and fails
 *   with SLUICE_BACKEND_UNAVAILABLE without a client certificate.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, createServer as createHttpsServer } from 'node:https';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SluiceError } from '../../bindings/errors.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { ControlClient } from '../../controller/grpc/client.ts';
import { startControlServer } from '../../controller/grpc/server.ts';
import { grpcServerCredentials } from '../../controller/grpc/tls.ts';
import type { ControlPlane } from '../../controller/control-plane.ts';
import type { ScalerSource } from '../../controller/grpc/scaler.ts';
import { loadTls } from '../../runtime/tls.ts';
import { startNatsServer } from '../support/nats-server.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
const f = (n: string) => join(dir, n);
const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

beforeAll(() => {
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=sluice test CA');
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=sluice worker');
  ssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2', '-extfile', 'client.ext');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const plane = {
  list: async () => [],
} as unknown as ControlPlane;
const scaler: ScalerSource = { lag: async () => 0, targetLagPerReplica: async () => 1, activity: async function* () {} };

it('tls/grpc - the control API serves TLS from certificate files; a TLS client with the CA works, a plaintext one cannot connect', async () => {
  const server = await startControlServer({ plane, scaler, tokens: ['t'], credentials: grpcServerCredentials({ certFile: f('server.pem'), keyFile: f('server.key') }) });
  try {
    const ok = await ControlClient.connect(`127.0.0.1:${server.port}`, 't', { credentials: credentials.createSsl(readFileSync(f('ca.pem'))) });
    expect(await ok.list()).toEqual([]);
    ok.close();
    const plain = await ControlClient.connect(`127.0.0.1:${server.port}`, 't', { connectTimeoutMs: 1500 }).then(
      (c) => {
        c.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect((plain as SluiceError).code).toBe('SLUICE_BACKEND_UNAVAILABLE');
  } finally {
    await server.close();
  }
});

it('tls/http - loadTls serves HTTPS; plaintext HTTP to it fails; bad files are SLUICE_INVALID_ARGUMENT naming the file', async () => {
  const srv = createHttpsServer(loadTls({ certFile: f('server.pem'), keyFile: f('server.key') }), (_req, res) => res.end('secure'));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, ca: readFileSync(f('ca.pem')) }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      req.end();
    });
    expect(body).toBe('secure');
    const plain = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port }, (res) => resolve(`answered ${res.statusCode}`));
      req.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      req.end();
    });
    expect(plain).not.toBe('answered 200');
  } finally {
    srv.close();
  }
  expect(() => loadTls({ certFile: f('nope.pem'), keyFile: f('server.key') })).toThrow(/tls.certFile: cannot read '.*nope.pem'/);
  expect(() => loadTls({ certFile: f('server.pem'), keyFile: f('client.key') })).toThrow(/do not form a usable pair/);
  expect(() => loadTls({ certFile: f('server.pem'), keyFile: f('server.key'), requireClientCert: true })).toThrow(/needs tls.caFile/);
});

it('tls/nats - the backend connects over mTLS to a server verifying client certificates, and fails without a client certificate', async () => {
  const server = await startNatsServer(['--tls', '--tlscert', f('server.pem'), '--tlskey', f('server.key'), '--tlscacert', f('ca.pem'), '--tlsverify']);
  try {
    const b = await NatsBackend.open({ servers: server.url, tls: { caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client.key') } });
    await b.createTable('tls');
    await (await b.kv('tls')).putItem('k', { over: 'mtls' });
    expect((await (await b.kv('tls')).getItem('k'))?.item).toEqual({ over: 'mtls' });
    await b.close();
    const without = await NatsBackend.open({ servers: server.url, tls: { caFile: f('ca.pem') } }).then(
      async (x) => {
        await x.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect((without as SluiceError).code).toBe('SLUICE_BACKEND_UNAVAILABLE');
  } finally {
    await server.stop();
  }
}, 60_000);
