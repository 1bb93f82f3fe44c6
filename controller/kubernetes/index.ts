/** Running functions on Kubernetes: manifests (pure) and the driver (API calls). */
export { KubernetesDriver, toKubernetesError, type KubernetesDriverOptions } from './driver.ts';
export {
  ConfigMountDir,
  ControllerName,
  FunctionLabel,
  functionLabels,
  PodIndexLabel,
  redactedSpecYaml,
  renderController,
  renderFunction,
  renderKubernetes,
  renderNatsServers,
  WorkerHttpPort,
  workerSecretName,
  withRenderBackend,
  ControllerPorts,
  ControllerSecretKeys,
  type ContainerResources,
  type FunctionManifests,
  type Manifest,
  type RenderOptions,
} from './render.ts';
export { manifestProblems, podSecurityProblems, validateManifest } from './validate.ts';
export type { ControllerManifests } from './render-controller.ts';
export { NatsName, NatsPorts, natsClusterUrls, renderNatsCluster } from './render-nats.ts';
