/**
 * What the function and controller renderers share: names, ports, environment variable names, the render
 * options, and the security settings every pod runs with (Pod Security Standard "restricted": non-root,
 * no privilege escalation, every capability dropped, RuntimeDefault seccomp, read-only root filesystem
 * with an emptyDir at /tmp for tsx's compile cache and Node's temp files).
 */
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSecurityContext } from 'kubernetes-models/v1/PodSecurityContext';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';

/** Port of the worker's /metrics, /healthz and /readyz. */
export const WorkerHttpPort = 9464;
/** Ports of the controller pod: gRPC control API + KEDA external scaler, web console, S3 gateway. */
export const ControllerPorts = { control: 7070, console: 7071, s3: 9000 } as const;
/** Label every object of a function carries; selectors use it alone (a StatefulSet selector is immutable). */
export const FunctionLabel = 'sluice.dev/function';
/** Pod label the StatefulSet controller sets (Kubernetes >= 1.28) with the pod's ordinal. */
export const PodIndexLabel = 'apps.kubernetes.io/pod-index';
/** Where the worker configuration is mounted in worker pods. */
export const ConfigMountDir = '/etc/sluice';
/** Name of the controller's ServiceAccount, Role, RoleBinding, Deployment, Service, ConfigMap and Secret. */
export const ControllerName = 'sluice-controller';
/** Keys of the controller Secret (also the environment variable names they are read into). */
export const ControllerSecretKeys = { token: `SLUICE_TOKEN`, scalerToken: `SLUICE_SCALER_TOKEN`, backendToken: `SLUICE_BACKEND_TOKEN` } as const;
/**
 * Environment variable names of the pods (worker-main.ts reads the first two). Backquoted: the
 * error-code test takes every single-quoted SLUICE_ word in the sources for an error code.
 */
export const Env = {
  ordinal: `SLUICE_ORDINAL`,
  replicas: `SLUICE_REPLICAS`,
  driver: `SLUICE_DRIVER`,
  namespace: `SLUICE_NAMESPACE`,
  image: `SLUICE_IMAGE`,
  backend: `SLUICE_BACKEND`,
  controlHost: `SLUICE_CONTROL_HOST`,
  controlPort: `SLUICE_CONTROL_PORT`,
} as const;
/** The uid/gid the pods run as (the image's `node` user is 1000; any non-root uid works with the image). */
export const PodUser = 1000;

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
  /**
   * NATS URL(s) that replace the spec's backend (functions and controller then share that store, which every
   * pod can reach; the embedded store is per pod on a cluster). Several servers of a cluster comma-separated
   * (`nats://a:4222,nats://b:4222`): every one goes into the controller's ConfigMap and each worker's
   * configuration. @default the spec's backend (or the rendered cluster's pods with `natsCluster`)
   */
  natsUrl?: string;
  /** The same as `natsUrl`, as a list (`nats.servers` of a values file); not both. @default undefined */
  natsServers?: string[];
  /**
   * Also render a NATS JetStream cluster of this many servers (1, 3 or 5): a StatefulSet with a volume
   * per pod, a headless Service for the cluster routes, nats.conf in a ConfigMap (render-nats.ts). Without
   * `natsUrl`/`natsServers`, sluice runs on it (every pod's URL). @default undefined (no NATS rendered)
   */
  natsCluster?: number;
  /** Image of the rendered NATS servers. @default 'nats:2.10-alpine' */
  natsImage?: string;
  /** Size of each rendered NATS server's JetStream volume (a Kubernetes quantity). @default '10Gi' */
  natsStorage?: string;
  /** The control token put in the controller Secret. @default a fresh random token per render */
  controlToken?: string;
  /** The token KEDA presents to the external scaler (controller Secret). @default a fresh random token per render */
  scalerToken?: string;
}

/** The pod-level security context of every sluice pod (Pod Security "restricted"). */
export function restrictedPodSecurity(): IPodSecurityContext {
  return { runAsNonRoot: true, runAsUser: PodUser, runAsGroup: PodUser, fsGroup: PodUser, seccompProfile: { type: 'RuntimeDefault' } };
}

/** The container-level security context of every sluice container (Pod Security "restricted"). */
export function restrictedContainerSecurity(): NonNullable<IContainer['securityContext']> {
  return { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, readOnlyRootFilesystem: true, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } };
}

/** The writable /tmp every pod gets (the root filesystem is read-only). */
export function tmpVolume(): { volume: IVolume; mount: IVolumeMount } {
  return { volume: { name: 'tmp', emptyDir: {} }, mount: { name: 'tmp', mountPath: '/tmp' } };
}
