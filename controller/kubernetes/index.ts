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
  WorkerHttpPort,
  workerSecretName,
  type ContainerResources,
  type FunctionManifests,
  type Manifest,
  type RenderOptions,
} from './render.ts';
export { manifestProblems, validateManifest } from './validate.ts';
