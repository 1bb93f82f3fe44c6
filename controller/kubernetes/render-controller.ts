/**
 * The controller's objects: ServiceAccount, Role (what the Kubernetes driver calls, nothing more), RoleBinding,
 * a ConfigMap with its backend and ports, a Secret with the control token, the KEDA scaler token and the
 * backend token, a Service for the control API / console / S3 gateway ports, and its Deployment (probes,
 * restricted pod security, configuration only from the ConfigMap and Secret).
 */
import { randomBytes } from 'node:crypto';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';
import { SluiceError } from '../../bindings/errors.ts';
import type { BackendSpec } from '../../runtime/index.ts';
import { ControllerName, ControllerPorts, ControllerSecretKeys, Env, restrictedContainerSecurity, restrictedPodSecurity, tmpVolume, type RenderOptions } from './render-common.ts';

/** Where a controller on the embedded store keeps it (per pod, lost with it: for trying sluice only). */
const ControllerDataDir = '/data';

/** The controller's objects, in apply order (ServiceAccount, Role, RoleBinding, Deployment first). */
export type ControllerManifests = [IServiceAccount, IRole, IRoleBinding, IDeployment, IConfigMap, ISecret, IService];

/**
 * The controller's objects. `backend` is the store the controller shares with the functions' workers
 * (a nats backend for a real cluster). Tokens not given in `options` are generated fresh per render.
 */
export function renderController(backend: BackendSpec = { kind: 'local', dir: ControllerDataDir }, options: RenderOptions = {}): ControllerManifests {
  const namespace = options.namespace ?? 'default';
  const replicas = options.controllerReplicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `controllerReplicas must be a positive integer, got ${replicas}`);
  const labels = { 'app.kubernetes.io/name': ControllerName, 'app.kubernetes.io/component': 'controller', 'app.kubernetes.io/part-of': 'sluice' };
  const selector = { 'app.kubernetes.io/name': ControllerName };
  const metadata = { name: ControllerName, namespace, labels };
  const write = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
  const fresh = () => randomBytes(24).toString('base64url');

  const configMap: IConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata,
    data: {
      [Env.backend]: backend.kind === 'nats' ? backend.url : ControllerDataDir,
      [Env.controlHost]: '0.0.0.0',
      [Env.controlPort]: String(ControllerPorts.control),
      [Env.driver]: 'kubernetes',
    },
  };
  const secret: ISecret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata,
    type: 'Opaque',
    stringData: {
      [ControllerSecretKeys.token]: options.controlToken ?? fresh(),
      [ControllerSecretKeys.scalerToken]: options.scalerToken ?? fresh(),
      ...(backend.kind === 'nats' && backend.token !== undefined ? { [ControllerSecretKeys.backendToken]: backend.token } : {}),
    },
  };
  const service: IService = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: {
      selector,
      ports: [
        { name: 'control', port: ControllerPorts.control, targetPort: 'control', protocol: 'TCP' },
        { name: 'console', port: ControllerPorts.console, targetPort: 'console', protocol: 'TCP' },
        { name: 's3', port: ControllerPorts.s3, targetPort: 's3', protocol: 'TCP' },
      ],
    },
  };

  const tmp = tmpVolume();
  const volumes: IVolume[] = [tmp.volume];
  const mounts: IVolumeMount[] = [tmp.mount];
  if (backend.kind === 'local') {
    volumes.push({ name: 'data', emptyDir: {} });
    mounts.push({ name: 'data', mountPath: ControllerDataDir });
  }
  // Only what the pod needs from the Secret, each key by name (envFrom would also pass keys added later).
  const fromSecret = (key: string): IEnvVar => ({ name: key, valueFrom: { secretKeyRef: { name: ControllerName, key } } });
  const deployment: IDeployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata,
    spec: {
      // Two controllers would scale the same StatefulSets against each other: Recreate, never overlap.
      replicas,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: selector },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: ControllerName,
          enableServiceLinks: false,
          securityContext: restrictedPodSecurity(),
          containers: [
            {
              name: 'controller',
              image: options.image ?? 'sluice:latest',
              imagePullPolicy: 'IfNotPresent',
              workingDir: options.appDir ?? '/app',
              command: options.controllerCommand ?? ['node', '--import', 'tsx', 'controller/main.ts'],
              envFrom: [{ configMapRef: { name: ControllerName } }],
              env: [
                fromSecret(ControllerSecretKeys.token),
                fromSecret(ControllerSecretKeys.scalerToken),
                ...(backend.kind === 'nats' && backend.token !== undefined ? [fromSecret(ControllerSecretKeys.backendToken)] : []),
                { name: Env.namespace, valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                { name: Env.image, value: options.image ?? 'sluice:latest' },
              ],
              ports: [
                { name: 'control', containerPort: ControllerPorts.control, protocol: 'TCP' },
                { name: 'console', containerPort: ControllerPorts.console, protocol: 'TCP' },
                { name: 's3', containerPort: ControllerPorts.s3, protocol: 'TCP' },
              ],
              // The control API is gRPC: a TCP probe tells "listening" without a gRPC health client in the image.
              readinessProbe: { tcpSocket: { port: 'control' }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 2 },
              livenessProbe: { tcpSocket: { port: 'control' }, initialDelaySeconds: 10, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
              resources: { requests: { cpu: '100m', memory: '128Mi' } },
              securityContext: restrictedContainerSecurity(),
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
    },
  };
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
        // `sluice logs` on the Kubernetes driver reads pod logs.
        { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
        { apiGroups: [''], resources: ['configmaps', 'services'], verbs: write },
        // Only for worker.json of functions whose backend needs a token.
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create', 'update', 'delete'] },
        // The ScaledObject of a function whose spec says `autoscaler: keda` (the driver applies it).
        { apiGroups: ['keda.sh'], resources: ['scaledobjects'], verbs: ['get', 'create', 'update', 'delete'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: ControllerName },
      subjects: [{ kind: 'ServiceAccount', name: ControllerName, namespace }],
    },
    deployment,
    configMap,
    secret,
    service,
  ];
}
