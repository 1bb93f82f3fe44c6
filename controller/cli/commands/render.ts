/** `sluice render k8s -f spec.yaml`: Kubernetes manifests of a function (and the controller). */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { intArg, out, type GlobalOptions } from '../context.ts';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('render')
    .description('render deployment manifests')
    .command('k8s')
    .description('StatefulSet, headless Service, ConfigMap, RBAC, ServiceMonitor, KEDA ScaledObject (autoscaler: keda), the controller (Deployment, Service, ConfigMap, Secret with fresh tokens) and, with --nats-cluster, a NATS JetStream cluster, as YAML')
    .requiredOption('-f, --file <spec.yaml>', 'function spec')
    .option('--image <image>', 'container image', 'sluice:latest')
    .option('--namespace <ns>', 'namespace', 'default')
    .option('--nats-url <urls>', "run on this NATS store instead of the spec's backend (workers and controller share it); a cluster's servers comma-separated")
    .option('--nats-cluster <n>', 'also render a NATS JetStream cluster of n servers (1, 3 or 5: StatefulSet, headless Service, nats.conf); sluice runs on it unless --nats-url is given', intArg(0))
    .option('--nats-image <image>', 'image of the rendered NATS servers', 'nats:2.10-alpine')
    .action(async (o: { file: string; image: string; namespace: string; natsUrl?: string; natsCluster?: number; natsImage: string }) => {
      // Loaded on use: the Kubernetes models are the heaviest import of the CLI.
      const [{ renderKubernetes, validateManifest }, { loadFunctionSpecFile }] = await Promise.all([import('../../kubernetes/index.ts'), import('../../spec/index.ts')]);
      const spec = loadFunctionSpecFile(o.file);
      // Tokens of the controller Secret: $SLUICE_TOKEN / $SLUICE_SCALER_TOKEN when set, else fresh random ones.
      const tokens = { ...(process.env.SLUICE_TOKEN ? { controlToken: process.env.SLUICE_TOKEN } : {}), ...(process.env.SLUICE_SCALER_TOKEN ? { scalerToken: process.env.SLUICE_SCALER_TOKEN } : {}) };
      const manifests = renderKubernetes(spec, {
        image: o.image,
        namespace: o.namespace,
        ...tokens,
        ...(o.natsUrl !== undefined ? { natsUrl: o.natsUrl } : {}),
        ...(o.natsCluster !== undefined ? { natsCluster: o.natsCluster, natsImage: o.natsImage } : {}),
      });
      for (const m of manifests) validateManifest(m);
      out(g(), manifests, () => manifests.map((m) => stringify(m)).join('---\n'));
    });
}
