/** `sluice render k8s -f spec.yaml`: Kubernetes manifests of a function (and the controller). */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { out, type GlobalOptions } from '../context.ts';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('render')
    .description('render deployment manifests')
    .command('k8s')
    .description('StatefulSet, headless Service, ConfigMap, RBAC, ServiceMonitor, KEDA ScaledObject (autoscaler: keda), and the controller (Deployment, Service, ConfigMap, Secret with fresh tokens), as YAML')
    .requiredOption('-f, --file <spec.yaml>', 'function spec')
    .option('--image <image>', 'container image', 'sluice:latest')
    .option('--namespace <ns>', 'namespace', 'default')
    .option('--nats-url <url>', "run on this NATS store instead of the spec's backend (workers and controller share it)")
    .action(async (o: { file: string; image: string; namespace: string; natsUrl?: string }) => {
      // Loaded on use: the Kubernetes models are the heaviest import of the CLI.
      const [{ renderKubernetes, validateManifest }, { loadFunctionSpecFile }] = await Promise.all([import('../../kubernetes/index.ts'), import('../../spec/index.ts')]);
      const spec = loadFunctionSpecFile(o.file);
      // Tokens of the controller Secret: $SLUICE_TOKEN / $SLUICE_SCALER_TOKEN when set, else fresh random ones.
      const tokens = { ...(process.env.SLUICE_TOKEN ? { controlToken: process.env.SLUICE_TOKEN } : {}), ...(process.env.SLUICE_SCALER_TOKEN ? { scalerToken: process.env.SLUICE_SCALER_TOKEN } : {}) };
      const manifests = renderKubernetes(spec, { image: o.image, namespace: o.namespace, ...tokens, ...(o.natsUrl !== undefined ? { natsUrl: o.natsUrl } : {}) });
      for (const m of manifests) validateManifest(m);
      out(g(), manifests, () => manifests.map((m) => stringify(m)).join('---\n'));
    });
}
