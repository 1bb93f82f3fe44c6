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
import type { IScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { stringify } from 'yaml';
import { SluiceError } from '../../bindings/errors.ts';
import { parseDurationMs, type BackendSpec } from '../../runtime/index.ts';
import { toWorkerOptions, type FunctionSpec } from '../spec/index.ts';
import {
  ConfigMountDir,
  ControllerName,
  ControllerPorts,
  ControllerSecretKeys,
  Env,
  FunctionLabel,
  PodIndexLabel,
  restrictedContainerSecurity,
  restrictedPodSecurity,
  tmpVolume,
  WorkerHttpPort,
  type RenderOptions,
} from './render-common.ts';
import { renderController } from './render-controller.ts';
import { natsClusterUrls, renderNatsCluster } from './render-nats.ts';

export * from './render-common.ts';
export { renderController } from './render-controller.ts';

/** The worker's default shutdown grace (runtime/worker-options.ts); the pod's grace period exceeds it. */
const WorkerShutdownGraceMs = 25_000;
/** How often KEDA asks the external scaler (seconds). */
const KedaPollingIntervalSeconds = 15;

/** A manifest sluice renders: every object has apiVersion, kind and metadata.name. */
export type Manifest = IConfigMap | ISecret | IService | IStatefulSet | IServiceMonitor | IServiceAccount | IRole | IRoleBinding | IDeployment | IScaledObject;

/** The objects a function runs as, by role (the driver applies the first four). */
export interface FunctionManifests {
  configMap: IConfigMap;
  /** Present when worker.json holds a credential. */
  secret?: ISecret;
  service: IService;
  statefulSet: IStatefulSet;
  serviceMonitor: IServiceMonitor;
  /** Present when `spec.scaling.autoscaler` is `keda`: KEDA scales the StatefulSet through the controller's external scaler. */
  scaledObject?: IScaledObject;
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

/** The backend the controller shares with the function's workers (token resolved like the worker's). */
function controllerBackend(spec: FunctionSpec, options: RenderOptions): BackendSpec {
  const b = toWorkerOptions(withRenderBackend(spec, options), { specDir: '/', ordinal: 0, replicas: 1, ...(options.env ? { env: options.env } : {}) }).backend;
  return b.kind === 'nats' ? b : { kind: 'local', dir: '/data' };
}

/**
 * The NATS server list the render puts in place of the spec's backend: `natsServers`, else `natsUrl`
 * split at commas, else the rendered cluster's pods (`natsCluster`); undefined keeps the spec's backend.
 */
export function renderNatsServers(options: RenderOptions): string[] | undefined {
  if (options.natsUrl !== undefined && options.natsServers !== undefined) throw bad('give natsUrl or natsServers, not both');
  let servers: string[] | undefined;
  if (options.natsServers !== undefined) {
    if (!Array.isArray(options.natsServers) || options.natsServers.length === 0) throw bad('natsServers must be a non-empty list of nats:// or tls:// URLs');
    servers = options.natsServers;
  } else if (options.natsUrl !== undefined) servers = String(options.natsUrl).split(',').map((u) => u.trim());
  else if (options.natsCluster !== undefined) return natsClusterUrls(options.natsCluster, options.namespace ?? 'default');
  servers?.forEach((u, i) => {
    if (typeof u !== 'string' || !/^(nats|tls):\/\/[^\s,/]+$/.test(u))
      throw bad(`${options.natsServers !== undefined ? `natsServers[${i}]` : 'natsUrl'} must be a nats:// or tls:// URL (several comma-separated), got ${JSON.stringify(u)}`);
  });
  return servers;
}

/** `spec` with its backend replaced by the render's NATS servers (kept as it is when none are given). */
export function withRenderBackend(spec: FunctionSpec, options: RenderOptions): FunctionSpec {
  const servers = renderNatsServers(options);
  if (servers === undefined) return spec;
  const url = servers.join(',');
  const prev = spec.spec.backend;
  const backend = prev.kind === 'nats' ? { ...prev, url } : { kind: 'nats' as const, url };
  return { ...spec, spec: { ...spec.spec, backend } };
}

/** The objects function `spec` runs as. */
export function renderFunction(spec0: FunctionSpec, options: RenderOptions = {}): FunctionManifests {
  const spec = withRenderBackend(spec0, options);
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
  const keda = spec.spec.scaling.autoscaler === 'keda';
  const metadata = { name, namespace, labels };

  // The worker overrides ordinal and replicas from SLUICE_ORDINAL / SLUICE_REPLICAS; these are placeholders.
  const worker = { ...toWorkerOptions(spec, { specDir, ordinal: 0, replicas: Math.max(1, replicas), ...(options.env ? { env: options.env } : {}) }), httpPort: WorkerHttpPort, httpHost: '0.0.0.0' };
  const workerJson = `${JSON.stringify(worker, null, 2)}\n`;
  // A NATS token, the body store's S3 keys (backend.bodies) or handler secrets make worker.json a credential.
  const credential = (worker.backend.kind === 'nats' && 'token' in worker.backend && worker.backend.token !== undefined) || worker.backend.bodies !== undefined || Object.keys(worker.secrets ?? {}).length > 0;
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
  const tmp = tmpVolume();
  volumes.push(tmp.volume);
  mounts.push(tmp.mount);
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
      // KEDA resolves the trigger's `tokenFromEnv` from the scale target's environment (the worker does not read it).
      ...(keda ? [{ name: ControllerSecretKeys.scalerToken, valueFrom: { secretKeyRef: { name: ControllerName, key: ControllerSecretKeys.scalerToken } } }] : []),
    ],
    ports: [{ name: 'metrics', containerPort: WorkerHttpPort, protocol: 'TCP' }],
    livenessProbe: { httpGet: { path: '/healthz', port: 'metrics' }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/readyz', port: 'metrics' }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 2 },
    resources: options.workerResources ?? { requests: { cpu: '250m', memory: '256Mi' } },
    securityContext: restrictedContainerSecurity(),
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
          securityContext: restrictedPodSecurity(),
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
  const out: FunctionManifests = { configMap, service, statefulSet, serviceMonitor };
  if (secret) out.secret = secret;
  if (keda) out.scaledObject = renderScaledObject(spec, namespace, labels);
  return out;
}

/**
 * The KEDA ScaledObject of a function whose spec says `autoscaler: keda`: an `external` trigger on the
 * controller's scaler service (metric `sluice-lag-<fn>`, target = targetLagPerReplica), authenticated by
 * the scaler token that KEDA reads from the worker container's environment (`tokenFromEnv`; KEDA passes
 * the trigger metadata, not TriggerAuthentication parameters, to an external scaler).
 */
function renderScaledObject(spec: FunctionSpec, namespace: string, labels: Record<string, string>): IScaledObject {
  const s = spec.spec.scaling;
  const name = spec.metadata.name;
  return {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledObject',
    metadata: { name, namespace, labels },
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'StatefulSet', name },
      minReplicaCount: s.minReplicas,
      maxReplicaCount: s.maxReplicas,
      pollingInterval: KedaPollingIntervalSeconds,
      cooldownPeriod: Math.max(1, Math.round(parseDurationMs(s.scaleToZeroAfter, 'scaling.scaleToZeroAfter') / 1000)),
      triggers: [
        {
          type: 'external',
          metadata: {
            scalerAddress: `${ControllerName}.${namespace}.svc:${ControllerPorts.control}`,
            function: name,
            tokenFromEnv: ControllerSecretKeys.scalerToken,
          },
        },
      ],
    },
  };
}

/** Everything to run function `spec` and the controller, in apply order. */
export function renderKubernetes(spec: FunctionSpec, options: RenderOptions = {}): Manifest[] {
  const f = renderFunction(spec, options);
  return [
    // NATS first: the controller and workers connect to it as they start.
    ...(options.natsCluster !== undefined ? renderNatsCluster(options.natsCluster, options) : []),
    ...renderController(controllerBackend(spec, options), options),
    f.configMap,
    ...(f.secret ? [f.secret] : []),
    f.service,
    f.statefulSet,
    f.serviceMonitor,
    ...(f.scaledObject ? [f.scaledObject] : []),
  ];
}

