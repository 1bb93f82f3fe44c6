/**
 * The controller process (the controller Deployment in Kubernetes):
 * `node --import tsx controller/main.ts`. Configuration from the environment:
 * SLUICE_BACKEND (a nats:// URL, or a directory for the embedded store; default ./.sluice-data),
 * SLUICE_DRIVER ('kubernetes' or 'local'; default 'kubernetes' inside a cluster, else 'local'),
 * SLUICE_CONTROL_HOST (default 0.0.0.0 in a cluster, else 127.0.0.1), SLUICE_CONTROL_PORT (default 7070),
 * SLUICE_TOKEN (required in a cluster), SLUICE_SCALER_TOKEN (the token KEDA presents to the external scaler),
 * SLUICE_BACKEND_TOKEN (the NATS token). `sluice render k8s` puts the first three in the controller's
 * ConfigMap and the tokens in its Secret. SIGTERM stops it gracefully.
 */
import { resolve } from 'node:path';
import { startPlatform } from './platform.ts';

const inCluster = process.env.KUBERNETES_SERVICE_HOST !== undefined;
const b = process.env.SLUICE_BACKEND ?? './.sluice-data';
if (inCluster && !process.env.SLUICE_TOKEN) {
  process.stderr.write('sluice controller: SLUICE_TOKEN must be set in a cluster\n');
  process.exit(2);
}
// The committed example manifests carry placeholders, never usable tokens: refuse to run with one.
for (const v of [`SLUICE_TOKEN`, `SLUICE_SCALER_TOKEN`]) {
  if ((process.env[v] ?? '').startsWith('replace-')) {
    process.stderr.write(`sluice controller: ${v} is still the example placeholder; put a real token in the sluice-controller Secret\n`);
    process.exit(2);
  }
}
const platform = await startPlatform({
  backend: /^(nats|tls):\/\//.test(b) ? { kind: 'nats', url: b, ...(process.env.SLUICE_BACKEND_TOKEN ? { token: process.env.SLUICE_BACKEND_TOKEN } : {}) } : { kind: 'local', dir: resolve(b) },
  driver: (process.env.SLUICE_DRIVER as 'local' | 'kubernetes' | undefined) ?? (inCluster ? 'kubernetes' : 'local'),
  host: process.env.SLUICE_CONTROL_HOST ?? (inCluster ? '0.0.0.0' : '127.0.0.1'),
  port: Number(process.env.SLUICE_CONTROL_PORT ?? 7070),
  onEvent: (e) => process.stderr.write(`${JSON.stringify({ time: Date.now(), ...e })}\n`),
});
process.stdout.write(`${JSON.stringify({ event: 'ready', port: platform.server.port })}\n`);
const stop = () => void platform.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
