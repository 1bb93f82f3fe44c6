/**
 * The S3 gateway as its own process (a Deployment in Kubernetes, beside the controller):
 * `node --import tsx controller/s3/main.ts`. Configuration from the environment:
 *
 * - SLUICE_BACKEND: a nats:// URL, or a directory for the embedded store (default ./.sluice-data);
 *   SLUICE_NATS_TOKEN: the NATS token, when the server wants one.
 * - SLUICE_S3_ADDRESS: host:port (default 0.0.0.0:9000 in a cluster, else 127.0.0.1:9000).
 * - SLUICE_S3_CREDENTIALS_FILE: a YAML/JSON list of keys (a mounted Secret) — or the single pair
 *   SLUICE_S3_ACCESS_KEY_ID / SLUICE_S3_SECRET_ACCESS_KEY. One of them is required.
 * - SLUICE_S3_REGION (default us-east-1); SLUICE_S3_VIRTUAL_HOST_DOMAINS: comma-separated domains for
 *   virtual-host-style addressing (default localhost,s3.localhost).
 *
 * Prints one JSON line `{"event":"ready","url":…}` when it listens; SIGTERM stops it (open requests are
 * cut after the server closes, then the backend is closed).
 */
import { resolve } from 'node:path';
import { openBackend } from '../../runtime/index.ts';
import type { S3Credential } from './credentials.ts';
import { startS3Gateway } from './gateway.ts';

const env = process.env;
const inCluster = env.KUBERNETES_SERVICE_HOST !== undefined;
const fail = (m: string): never => {
  process.stderr.write(`sluice s3 gateway: ${m}\n`);
  process.exit(2);
};
let credentials: readonly S3Credential[] | string;
if (env.SLUICE_S3_CREDENTIALS_FILE) credentials = env.SLUICE_S3_CREDENTIALS_FILE;
else if (env.SLUICE_S3_ACCESS_KEY_ID && env.SLUICE_S3_SECRET_ACCESS_KEY) credentials = [{ accessKeyId: env.SLUICE_S3_ACCESS_KEY_ID, secretAccessKey: env.SLUICE_S3_SECRET_ACCESS_KEY }];
else credentials = fail('set SLUICE_S3_CREDENTIALS_FILE, or SLUICE_S3_ACCESS_KEY_ID and SLUICE_S3_SECRET_ACCESS_KEY');

const b = env.SLUICE_BACKEND ?? './.sluice-data';
const backend = await openBackend(b.startsWith('nats://') ? { kind: 'nats', url: b, ...(env.SLUICE_NATS_TOKEN ? { token: env.SLUICE_NATS_TOKEN } : {}) } : { kind: 'local', dir: resolve(b) });
try {
  const gw = await startS3Gateway({
    backend,
    address: env.SLUICE_S3_ADDRESS ?? (inCluster ? '0.0.0.0:9000' : '127.0.0.1:9000'),
    credentials,
    ...(env.SLUICE_S3_REGION ? { region: env.SLUICE_S3_REGION } : {}),
    ...(env.SLUICE_S3_VIRTUAL_HOST_DOMAINS ? { virtualHostDomains: env.SLUICE_S3_VIRTUAL_HOST_DOMAINS.split(',').map((s) => s.trim()).filter((s) => s !== '') } : {}),
    onError: (e) => process.stderr.write(`${JSON.stringify({ time: Date.now(), level: 'error', ...e })}\n`),
  });
  process.stdout.write(`${JSON.stringify({ event: 'ready', url: gw.url })}\n`);
  const stop = () => void gw.close().then(() => backend.close()).then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} catch (e) {
  await backend.close();
  fail((e as Error).message);
}
