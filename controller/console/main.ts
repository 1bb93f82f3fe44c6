/**
 * The console as its own process (a Deployment beside the controller in Kubernetes):
 * `node --import tsx controller/console/main.ts`. It reads status and logs through the control API
 * (gRPC, with the control token) and objects and dead letters from the backend directly.
 * Configuration from the environment:
 * - SLUICE_TOKEN (required): the control token; also what users log in with;
 * - SLUICE_SERVER: control API `host:port` (default 127.0.0.1:7070);
 * - SLUICE_BACKEND: a nats:// URL, or a directory for the embedded store (default ./.sluice-data);
 * - SLUICE_CONSOLE_ADDRESS: where to listen (default 0.0.0.0:7071 in a cluster, else 127.0.0.1:7071);
 * - SLUICE_CONSOLE_SECURE_COOKIE=1 when a TLS proxy fronts it.
 * Prints `{"event":"ready","url":…}` once listening; SIGTERM stops it.
 */
import { resolve } from 'node:path';
import { openBackend } from '../../runtime/index.ts';
import { ControlClient } from '../grpc/client.ts';
import { startConsole } from './server.ts';

const inCluster = process.env.KUBERNETES_SERVICE_HOST !== undefined;
const token = process.env.SLUICE_TOKEN;
if (!token) {
  process.stderr.write('sluice console: SLUICE_TOKEN must be set (the control token)\n');
  process.exit(2);
}
const b = process.env.SLUICE_BACKEND ?? './.sluice-data';
const backend = await openBackend(b.startsWith('nats://') ? { kind: 'nats', url: b } : { kind: 'local', dir: resolve(b) });
const plane = await ControlClient.connect(process.env.SLUICE_SERVER ?? '127.0.0.1:7070', token, { connectTimeoutMs: 30_000 });
const ui = await startConsole({
  plane,
  backend,
  tokens: [token],
  address: process.env.SLUICE_CONSOLE_ADDRESS ?? (inCluster ? '0.0.0.0:7071' : '127.0.0.1:7071'),
  secureCookie: process.env.SLUICE_CONSOLE_SECURE_COOKIE === '1',
});
process.stdout.write(`${JSON.stringify({ event: 'ready', url: ui.url })}\n`);
const stop = () =>
  void ui
    .close()
    .then(() => plane.close())
    .then(() => backend.close())
    .then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
