/** `sluice render k8s -f spec.yaml`: Kubernetes manifests of a function (and the controller). */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { out, type GlobalOptions } from '../context.ts';

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('render')
    .description('render deployment manifests')
    .command('k8s')
    .description('StatefulSet, headless Service, ConfigMap, RBAC, ServiceMonitor and the controller Deployment, as YAML')
    .requiredOption('-f, --file <spec.yaml>', 'function spec')
    .option('--image <image>', 'container image', 'sluice:latest')
    .option('--namespace <ns>', 'namespace', 'default')
    .action(async (o: { file: string; image: string; namespace: string }) => {
      // Loaded on use: the Kubernetes models are the heaviest import of the CLI.
      const [{ renderKubernetes, validateManifest }, { loadFunctionSpecFile }] = await Promise.all([import('../../kubernetes/index.ts'), import('../../spec/index.ts')]);
      const spec = loadFunctionSpecFile(o.file);
      const manifests = renderKubernetes(spec, { image: o.image, namespace: o.namespace });
      for (const m of manifests) validateManifest(m);
      out(g(), manifests, () => manifests.map((m) => stringify(m)).join('---\n'));
    });
}
