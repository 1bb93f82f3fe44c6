/**
 * The Kubernetes objects a function runs as, and those the controller runs as. Pure: a spec in,
 * plain manifests out (typed with kubernetes-models, so a misspelled field fails to compile; the
 * tests also validate every object and walk it for unknown fields).
 *
 * A function is a ConfigMap (its spec, handler path and worker.json), a headless Service (stable pod
 * DNS and the metrics port), a StatefulSet (one pod per ordinal, created in parallel) and a
 * ServiceMonitor. When the worker configuration holds a credential (a NATS token, S3 body store keys), worker.json goes
 * into a Secret instead of the ConfigMap: credentials never sit in a ConfigMap.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';
import { stringify } from 'yaml';
import { SluiceError } from '../../bindings/errors.ts';
import { toWorkerOptions, type FunctionSpec } from '../spec/index.ts';

/** Port of the worker's /metrics, /healthz and /readyz. */
export const WorkerHttpPort = 9464;
/** Label every object of a function carries; selectors use it alone (a StatefulSet selector is immutable). */
export const FunctionLabel = 'sluice.dev/function';
/** Pod label the StatefulSet controller sets (Kubernetes >= 1.28) with the pod's ordinal. */
export const PodIndexLabel = 'apps.kubernetes.io/pod-index';
/** Where the worker configuration is mounted in worker pods. */
export const ConfigMountDir = '/etc/sluice';
/** Name of the controller's ServiceAccount, Role, RoleBinding and Deployment. */
export const ControllerName = 'sluice-controller';
/**
 * Environment variable names of the pods (worker-main.ts reads the first two). Backquoted: the
 * error-code test takes every single-quoted SLUICE_ word in the sources for an error code.
 */
const Env = { ordinal: `SLUICE_ORDINAL`, replicas: `SLUICE_REPLICAS`, driver: `SLUICE_DRIVER`, namespace: `SLUICE_NAMESPACE`, image: `SLUICE_IMAGE` } as const;
/** The worker's default shutdown grace (runtime/worker-options.ts); the pod's grace period exceeds it. */
const WorkerShutdownGraceMs = 25_000;

/** Resource requests and limits of a container, Kubernetes quantities ('250m', '256Mi'). */
export interface ContainerResources {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

/** Options of {@link renderFunction} and {@link renderKubernetes}. */
export interface RenderOptions {
  /** Image holding the sluice sources, tsx and the function code. @default 'sluice:latest' */
  image?: string;
  /** @default 'default' */
  namespace?: string;
  /** Replicas of the controller Deployment. @default 1 */
  controllerReplicas?: number;
  /** Replicas the StatefulSet starts with. @default scaling.minReplicas, or 1 when that is 0 */
  replicas?: number;
  /** Directory of the spec inside the image; the handler and a local data dir resolve against it. @default `<appDir>/functions/<name>` */
  specDir?: string;
  /** Working directory of the containers: the sluice checkout in the image. @default '/app' */
  appDir?: string;
  /** Environment that `fromEnv` secrets are read from when they are rendered. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
  /** Worker container resources. @default requests {cpu: '250m', memory: '256Mi'} */
  workerResources?: ContainerResources;
  /** Controller container command. @default node --import tsx controller/main.ts */
  controllerCommand?: string[];
}

/** A manifest sluice renders: every object has apiVersion, kind and metadata.name. */
export type Manifest = IConfigMap | ISecret | IService | IStatefulSet | IServiceMonitor | IServiceAccount | IRole | IRoleBinding | IDeployment;

/** The objects a function runs as, by role (the driver applies the first four). */
export interface FunctionManifests {
  configMap: IConfigMap;
  /** Present when worker.json holds a credential. */
  secret?: ISecret;
  service: IService;
  statefulSet: IStatefulSet;
  serviceMonitor: IServiceMonitor;
}

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_INVALID_ARGUMENT', message);
}

/** Labels of every object of function `name` (the spec's own labels first; sluice's win). */
export function functionLabels(spec: FunctionSpec): Record<string, string> {
  return {
    ...spec.metadata.labels,
    'app.kubernetes.io/name': 'sluice-worker',
    'app.kubernetes.io/instance': spec.metadata.name,
    'app.kubernetes.io/component': 'worker',
    'app.kubernetes.io/part-of': 'sluice',
    'app.kubernetes.io/managed-by': ControllerName,
    [FunctionLabel]: spec.metadata.name,
  };
}

/** The spec as YAML with every secret value replaced: the ConfigMap copy is for reading, not for credentials. */
export function redactedSpecYaml(spec: FunctionSpec): string {
  const secrets = spec.spec.secrets.map((s) => (s.value === undefined ? s : { ...s, value: '<redacted>' }));
  return stringify({ ...spec, spec: { ...spec.spec, secrets } });
}

/** Name of the Secret that holds worker.json when it carries a credential. */
export function workerSecretName(name: string): string {
  return `${name}-worker`;
}

/** The objects function `spec` runs as. */
export function renderFunction(spec: FunctionSpec, options: RenderOptions = {}): FunctionManifests {
  const name = spec.metadata.name;
  // A StatefulSet's pods carry `controller-revision-hash: <name>-<10 chars>` (63 at most), and a
  // Service name must start with a letter (DNS-1035): both are narrower than a function name.
  if (name.length > 52) throw bad(`function ${name}: a name run on Kubernetes has at most 52 characters (the StatefulSet revision label needs the rest)`);
  if (!/^[a-z]/.test(name)) throw bad(`function ${name}: a name run on Kubernetes starts with a letter (Service names are DNS-1035 labels)`);
  const namespace = options.namespace ?? 'default';
  const image = options.image ?? 'sluice:latest';
  const appDir = options.appDir ?? '/app';
  const specDir = options.specDir ?? posix.join(appDir, 'functions', name);
  const replicas = options.replicas ?? Math.max(1, spec.spec.scaling.minReplicas);
  if (!Number.isInteger(replicas) || replicas < 0) throw bad(`replicas must be a non-negative integer, got ${replicas}`);
  const labels = functionLabels(spec);
  const selector = { [FunctionLabel]: name };
  const metadata = { name, namespace, labels };

  // The worker overrides ordinal and replicas from SLUICE_ORDINAL / SLUICE_REPLICAS; these are placeholders.
  const worker = { ...toWorkerOptions(spec, { specDir, ordinal: 0, replicas: Math.max(1, replicas), ...(options.env ? { env: options.env } : {}) }), httpPort: WorkerHttpPort, httpHost: '0.0.0.0' };
  const workerJson = `${JSON.stringify(worker, null, 2)}\n`;
  // A NATS token, or the body store's S3 keys (backend.bodies), make worker.json a credential.
  const credential = (worker.backend.kind === 'nats' && 'token' in worker.backend && worker.backend.token !== undefined) || worker.backend.bodies !== undefined;
  const specYaml = redactedSpecYaml(spec);

  const configMap: IConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata,
    data: { 'function.yaml': specYaml, handler: worker.module, ...(credential ? {} : { 'worker.json': workerJson }) },
  };
  const secret: ISecret | undefined = credential ? { apiVersion: 'v1', kind: 'Secret', metadata: { name: workerSecretName(name), namespace, labels }, type: 'Opaque', stringData: { 'worker.json': workerJson } } : undefined;

  const service: IService = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: { clusterIP: 'None', selector, ports: [{ name: 'metrics', port: WorkerHttpPort, targetPort: 'metrics', protocol: 'TCP' }] },
  };

  const volumes: IVolume[] = [credential ? { name: 'config', secret: { secretName: workerSecretName(name) } } : { name: 'config', configMap: { name } }];
  const mounts: IVolumeMount[] = [{ name: 'config', mountPath: ConfigMountDir, readOnly: true }];
  if (worker.backend.kind === 'local') {
    // The embedded store on a cluster is per pod and lost with it: fine to try a function, not for
    // data that must outlive the pod (use the nats backend there).
    volumes.push({ name: 'data', emptyDir: {} });
    mounts.push({ name: 'data', mountPath: worker.backend.dir });
  }
  const container: IContainer = {
    name: 'worker',
    image,
    imagePullPolicy: 'IfNotPresent',
    workingDir: appDir,
    // node is PID 1 and handles SIGTERM itself (drain, commit, exit): no shell in between, no preStop.
    command: ['node', '--import', 'tsx', 'runtime/worker-main.ts', `${ConfigMountDir}/worker.json`],
    env: [
      { name: Env.ordinal, valueFrom: { fieldRef: { fieldPath: `metadata.labels['${PodIndexLabel}']` } } },
      { name: Env.replicas, value: String(Math.max(1, replicas)) },
    ],
    ports: [{ name: 'metrics', containerPort: WorkerHttpPort, protocol: 'TCP' }],
    livenessProbe: { httpGet: { path: '/healthz', port: 'metrics' }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/readyz', port: 'metrics' }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 2 },
    resources: options.workerResources ?? { requests: { cpu: '250m', memory: '256Mi' } },
    securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
    volumeMounts: mounts,
  };
  // A config change must roll the pods (a mounted ConfigMap updates in place, the worker reads it once).
  const configHash = createHash('sha256').update(workerJson).update(specYaml).digest('hex').slice(0, 16);
  const statefulSet: IStatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata,
    spec: {
      serviceName: name,
      replicas,
      podManagementPolicy: 'Parallel',
      updateStrategy: { type: 'RollingUpdate' },
      selector: { matchLabels: selector },
      template: {
        metadata: {
          labels,
          annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(WorkerHttpPort), 'prometheus.io/path': '/metrics', 'sluice.dev/config-hash': configHash },
        },
        spec: {
          // Longer than the worker's own grace, so the worker, not the kubelet's SIGKILL, ends the drain.
          terminationGracePeriodSeconds: Math.ceil(WorkerShutdownGraceMs / 1000) + 5,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          containers: [container],
          volumes,
        },
      },
    },
  };

  const serviceMonitor: IServiceMonitor = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'ServiceMonitor',
    metadata,
    spec: { selector: { matchLabels: selector }, namespaceSelector: { matchNames: [namespace] }, endpoints: [{ port: 'metrics', path: '/metrics', interval: '15s' }] },
  };
  return secret ? { configMap, secret, service, statefulSet, serviceMonitor } : { configMap, service, statefulSet, serviceMonitor };
}

/** The controller: ServiceAccount, Role (what the Kubernetes driver calls, nothing more), RoleBinding, Deployment. */
export function renderController(options: RenderOptions = {}): [IServiceAccount, IRole, IRoleBinding, IDeployment] {
  const namespace = options.namespace ?? 'default';
  const replicas = options.controllerReplicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1) throw bad(`controllerReplicas must be a positive integer, got ${replicas}`);
  const labels = { 'app.kubernetes.io/name': ControllerName, 'app.kubernetes.io/component': 'controller', 'app.kubernetes.io/part-of': 'sluice' };
  const metadata = { name: ControllerName, namespace, labels };
  const write = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata,
      rules: [
        // create/delete too: apply creates a function's workload and remove deletes it.
        { apiGroups: ['apps'], resources: ['statefulsets'], verbs: write },
        { apiGroups: ['apps'], resources: ['statefulsets/scale'], verbs: ['get', 'update', 'patch'] },
        { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['configmaps', 'services'], verbs: write },
        // Only for worker.json of functions whose backend needs a token.
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create', 'update', 'delete'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: ControllerName },
      subjects: [{ kind: 'ServiceAccount', name: ControllerName, namespace }],
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata,
      spec: {
        // Two controllers would scale the same StatefulSets against each other: Recreate, never overlap.
        replicas,
        strategy: { type: 'Recreate' },
        selector: { matchLabels: { 'app.kubernetes.io/name': ControllerName } },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: ControllerName,
            containers: [
              {
                name: 'controller',
                image: options.image ?? 'sluice:latest',
                imagePullPolicy: 'IfNotPresent',
                workingDir: options.appDir ?? '/app',
                command: options.controllerCommand ?? ['node', '--import', 'tsx', 'controller/main.ts'],
                env: [
                  { name: Env.driver, value: 'kubernetes' },
                  { name: Env.namespace, valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                  { name: Env.image, value: options.image ?? 'sluice:latest' },
                ],
                resources: { requests: { cpu: '100m', memory: '128Mi' } },
                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              },
            ],
          },
        },
      },
    },
  ];
}

/** Everything to run function `spec` and the controller, in apply order. */
export function renderKubernetes(spec: FunctionSpec, options: RenderOptions = {}): Manifest[] {
  const f = renderFunction(spec, options);
  return [...renderController(options), f.configMap, ...(f.secret ? [f.secret] : []), f.service, f.statefulSet, f.serviceMonitor];
}

