/**
 * The Kubernetes driver: a function is a ConfigMap + headless Service + StatefulSet (rendered by
 * `render.ts`), plus a KEDA ScaledObject when its spec says `autoscaler: keda`; its replica count is
 * the StatefulSet's scale subresource (written by KEDA's HPA instead for a KEDA function). Writes are plain GET then
 * create (POST) or replace (PUT, carrying the resourceVersion read), so a concurrent writer makes the
 * replace fail with 409 instead of being overwritten; the controller's next reconcile retries.
 *
 * `close()` releases nothing on the cluster on purpose: workers keep running while the controller
 * restarts, which is the point of running them as StatefulSets.
 */
import { ApiException, AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, type V1ConfigMap, type V1Pod, type V1Secret, type V1Service, type V1StatefulSet } from '@kubernetes/client-node';
import { SluiceError } from '../../bindings/errors.ts';
import type { LogLine } from '../control-plane.ts';
import type { Driver, WorkloadStatus } from '../driver.ts';
import { podLogs } from './pod-logs.ts';
import type { FunctionSpec } from '../spec/types.ts';
import { FunctionLabel, PodIndexLabel, renderFunction, workerSecretName, type Manifest, type RenderOptions } from './render.ts';
import { validateManifest } from './validate.ts';

/** Options of {@link KubernetesDriver}. */
export interface KubernetesDriverOptions {
  /** A ready KubeConfig. @default server + token when given, else `loadFromDefault()` (in-cluster or ~/.kube/config) */
  kubeConfig?: KubeConfig;
  /** API server URL, e.g. 'https://10.0.0.1:6443' (with `token`; tests and out-of-cluster use). */
  server?: string;
  /** Bearer token for `server`. Never logged. */
  token?: string;
  /** Accept any server certificate (test servers only). @default false */
  skipTlsVerify?: boolean;
  /** Namespace of every workload. @default the kubeconfig context's namespace, else 'default' */
  namespace?: string;
  /** How workloads are rendered (image, resources, app dir). */
  render?: Omit<RenderOptions, 'namespace' | 'replicas' | 'specDir' | 'env'>;
  /** The spec's directory inside the image, from the controller's. @default the same path (controller runs from the image) */
  specDirInImage?: (spec: FunctionSpec, specDir: string) => string;
  /** Environment that `fromEnv` secrets are read from. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
  /** Recorded as the field manager of every write. @default 'sluice-controller' */
  fieldManager?: string;
}

/** Status and reason of a Kubernetes `Status` body, when the body is one. */
function statusOf(body: unknown): { message?: string; reason?: string } {
  try {
    const s = (typeof body === 'string' ? JSON.parse(body) : body) as { kind?: unknown; message?: unknown; reason?: unknown } | undefined;
    if (s && typeof s === 'object') return { ...(typeof s.message === 'string' ? { message: s.message } : {}), ...(typeof s.reason === 'string' ? { reason: s.reason } : {}) };
  } catch {
    // not JSON: the status code says enough
  }
  return {};
}

/** HTTP status of a failed API call, or undefined when it never got an answer. */
function httpStatus(err: unknown): number | undefined {
  return err instanceof ApiException ? (err as ApiException<unknown>).code : undefined;
}

/**
 * The one place API failures become sluice errors: `SLUICE_KUBERNETES` naming the action and the
 * resource, with the HTTP status and reason in `details` (never the request, which holds the token).
 */
export function toKubernetesError(err: unknown, action: string, resource: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = httpStatus(err);
  if (code !== undefined) {
    const s = statusOf((err as ApiException<unknown>).body);
    const reason = s.reason ?? (code === 401 ? 'Unauthorized' : code === 403 ? 'Forbidden' : undefined);
    const msg = `kubernetes: ${action} ${resource} failed: HTTP ${code}${reason ? ` ${reason}` : ''}${s.message ? `: ${s.message}` : ''}`;
    return new SluiceError('SLUICE_KUBERNETES', msg, { details: { status: code, ...(reason ? { reason } : {}) } });
  }
  return new SluiceError('SLUICE_KUBERNETES', `kubernetes: ${action} ${resource} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/**
 * A rendered manifest as the client's model type. Same JSON, two typings (kubernetes-models types
 * `Date` fields as strings, the client as Date); the manifest is checked by validateManifest first.
 */
function wire<T>(manifest: object): T {
  return manifest as unknown as T;
}

interface Resource<T> {
  kind: string;
  read(name: string): Promise<T>;
  create(body: T): Promise<T>;
  replace(name: string, body: T): Promise<T>;
  delete(name: string): Promise<unknown>;
}

type Meta = { metadata?: { name?: string; resourceVersion?: string } };

/** KEDA's ScaledObject as the API serves it (a custom resource: the client has no model for it). */
type ScaledObjectBody = Manifest & Meta;

/** Where KEDA's ScaledObjects live in the API. */
const KedaScaledObjects = { group: 'keda.sh', version: 'v1alpha1', plural: 'scaledobjects' } as const;

export class KubernetesDriver implements Driver {
  readonly kind = 'kubernetes';
  readonly namespace: string;
  readonly #o: KubernetesDriverOptions;
  readonly #apps: AppsV1Api;
  readonly #core: CoreV1Api;
  readonly #res: { configMap: Resource<V1ConfigMap>; secret: Resource<V1Secret>; service: Resource<V1Service>; statefulSet: Resource<V1StatefulSet>; scaledObject: Resource<ScaledObjectBody> };
  #closed = false;
  readonly #kc: KubeConfig;

  constructor(options: KubernetesDriverOptions = {}) {
    this.#o = options;
    let kc = options.kubeConfig;
    if (!kc) {
      kc = new KubeConfig();
      if (options.server !== undefined) {
        const cluster = { name: 'sluice', server: options.server, skipTLSVerify: options.skipTlsVerify ?? false };
        const user = { name: 'sluice', ...(options.token !== undefined ? { token: options.token } : {}) };
        kc.loadFromOptions({ clusters: [cluster], users: [user], contexts: [{ name: 'sluice', cluster: 'sluice', user: 'sluice' }], currentContext: 'sluice' });
      } else kc.loadFromDefault();
    }
    this.namespace = options.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
    this.#apps = kc.makeApiClient(AppsV1Api);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#kc = kc;
    const namespace = this.namespace;
    const w = { fieldManager: options.fieldManager ?? 'sluice-controller', fieldValidation: 'Strict' };
    const core = this.#core;
    const apps = this.#apps;
    const custom = kc.makeApiClient(CustomObjectsApi);
    const keda = { ...KedaScaledObjects, namespace };
    this.#res = {
      configMap: {
        kind: 'configmap',
        read: (name) => core.readNamespacedConfigMap({ name, namespace }),
        create: (body) => core.createNamespacedConfigMap({ namespace, body, ...w }),
        replace: (name, body) => core.replaceNamespacedConfigMap({ name, namespace, body, ...w }),
        delete: (name) => core.deleteNamespacedConfigMap({ name, namespace }),
      },
      secret: {
        kind: 'secret',
        read: (name) => core.readNamespacedSecret({ name, namespace }),
        create: (body) => core.createNamespacedSecret({ namespace, body, ...w }),
        replace: (name, body) => core.replaceNamespacedSecret({ name, namespace, body, ...w }),
        delete: (name) => core.deleteNamespacedSecret({ name, namespace }),
      },
      service: {
        kind: 'service',
        read: (name) => core.readNamespacedService({ name, namespace }),
        create: (body) => core.createNamespacedService({ namespace, body, ...w }),
        replace: (name, body) => core.replaceNamespacedService({ name, namespace, body, ...w }),
        delete: (name) => core.deleteNamespacedService({ name, namespace }),
      },
      statefulSet: {
        kind: 'statefulset',
        read: (name) => apps.readNamespacedStatefulSet({ name, namespace }),
        create: (body) => apps.createNamespacedStatefulSet({ namespace, body, ...w }),
        replace: (name, body) => apps.replaceNamespacedStatefulSet({ name, namespace, body, ...w }),
        // Background: the pods go with the StatefulSet (each still gets its SIGTERM grace).
        delete: (name) => apps.deleteNamespacedStatefulSet({ name, namespace, propagationPolicy: 'Background' }),
      },
      scaledObject: {
        kind: 'scaledobject',
        read: (name) => custom.getNamespacedCustomObject({ ...keda, name }) as Promise<ScaledObjectBody>,
        create: (body) => custom.createNamespacedCustomObject({ ...keda, body, ...w }) as Promise<ScaledObjectBody>,
        replace: (name, body) => custom.replaceNamespacedCustomObject({ ...keda, name, body, ...w }) as Promise<ScaledObjectBody>,
        delete: (name) => custom.deleteNamespacedCustomObject({ ...keda, name }),
      },
    };
  }

  #check(): void {
    if (this.#closed) throw new SluiceError('SLUICE_BACKEND_UNAVAILABLE', 'kubernetes driver is closed');
  }

  #name(r: Resource<unknown>, name: string): string {
    return `${r.kind} ${this.namespace}/${name}`;
  }

  /** The object, or undefined on 404. */
  async #get<T>(r: Resource<T>, name: string): Promise<T | undefined> {
    try {
      return await r.read(name);
    } catch (e) {
      if (httpStatus(e) === 404) return undefined;
      throw toKubernetesError(e, 'get', this.#name(r, name));
    }
  }

  /** Creates the object, or replaces it with the resourceVersion just read (409 if someone wrote in between). */
  async #upsert<T extends Meta>(r: Resource<T>, body: T): Promise<void> {
    const name = body.metadata?.name ?? '';
    validateManifest(body);
    const current = await this.#get(r, name);
    try {
      if (current === undefined) await r.create(body);
      else {
        const rv = (current as Meta).metadata?.resourceVersion;
        await r.replace(name, { ...body, metadata: { ...body.metadata, ...(rv !== undefined ? { resourceVersion: rv } : {}) } });
      }
    } catch (e) {
      throw toKubernetesError(e, current === undefined ? 'create' : 'replace', this.#name(r, name));
    }
  }

  /** Deletes the object; false when it was not there (404, or one of the statuses in `absentIf`). */
  async #delete(r: Resource<unknown>, name: string, absentIf: number[] = []): Promise<boolean> {
    try {
      await r.delete(name);
      return true;
    } catch (e) {
      const status = httpStatus(e);
      if (status === 404 || (status !== undefined && absentIf.includes(status))) return false;
      throw toKubernetesError(e, 'delete', this.#name(r, name));
    }
  }

  async apply(spec: FunctionSpec, specDir: string): Promise<void> {
    this.#check();
    const name = spec.metadata.name;
    // Keep the replica count the controller set; only a new workload starts at the spec's minimum.
    const existing = await this.#get(this.#res.statefulSet, name);
    const replicas = existing?.spec?.replicas;
    const m = renderFunction(spec, {
      ...this.#o.render,
      namespace: this.namespace,
      specDir: this.#o.specDirInImage ? this.#o.specDirInImage(spec, specDir) : specDir,
      ...(replicas !== undefined ? { replicas } : {}),
      ...(this.#o.env ? { env: this.#o.env } : {}),
    });
    // The pods mount worker.json, so config objects go first; the StatefulSet last rolls the pods.
    await this.#upsert(this.#res.configMap, wire<V1ConfigMap>(m.configMap));
    if (m.secret) await this.#upsert(this.#res.secret, wire<V1Secret>(m.secret));
    else await this.#delete(this.#res.secret, workerSecretName(name));
    await this.#upsert(this.#res.service, wire<V1Service>(m.service));
    await this.#upsert(this.#res.statefulSet, wire<V1StatefulSet>(m.statefulSet));
    // After the StatefulSet it targets. A spec that no longer asks for KEDA drops its ScaledObject;
    // a cluster without KEDA (404: no such resource) or whose Role has no rule for it (403) never had one of ours.
    if (m.scaledObject) await this.#upsert(this.#res.scaledObject, m.scaledObject as ScaledObjectBody);
    else await this.#delete(this.#res.scaledObject, name, [403]);
  }

  async scale(name: string, replicas: number): Promise<void> {
    this.#check();
    if (!Number.isInteger(replicas) || replicas < 0) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `replicas must be a non-negative integer, got ${replicas}`);
    // The scale subresource: only spec.replicas changes, no template write, no rolling restart,
    // and RBAC can grant it without granting StatefulSet writes.
    const body = { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name, namespace: this.namespace }, spec: { replicas } };
    validateManifest(body);
    try {
      await this.#apps.replaceNamespacedStatefulSetScale({ name, namespace: this.namespace, body, fieldManager: this.#o.fieldManager ?? 'sluice-controller' });
    } catch (e) {
      throw toKubernetesError(e, 'scale', `statefulset ${this.namespace}/${name}`);
    }
  }

  async remove(name: string): Promise<boolean> {
    this.#check();
    // The ScaledObject first: KEDA must stop scaling a StatefulSet that is going away.
    const keda = await this.#delete(this.#res.scaledObject, name, [403]);
    const had = await this.#delete(this.#res.statefulSet, name);
    const rest = await Promise.all([this.#delete(this.#res.service, name), this.#delete(this.#res.configMap, name), this.#delete(this.#res.secret, workerSecretName(name))]);
    return had || keda || rest.some(Boolean);
  }

  async status(name: string): Promise<WorkloadStatus | undefined> {
    this.#check();
    const sts = await this.#get(this.#res.statefulSet, name);
    if (!sts) return undefined;
    let pods: V1Pod[];
    try {
      pods = (await this.#core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${FunctionLabel}=${name}` })).items;
    } catch (e) {
      throw toKubernetesError(e, 'list', `pods ${this.namespace}/${FunctionLabel}=${name}`);
    }
    const replicas = pods
      .map((p) => {
        const podName = p.metadata?.name ?? '';
        const ordinal = Number(p.metadata?.labels?.[PodIndexLabel] ?? /-(\d+)$/.exec(podName)?.[1] ?? -1);
        const ready = p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
        const restarts = (p.status?.containerStatuses ?? []).reduce((n, c) => n + (c.restartCount ?? 0), 0);
        return { ordinal, id: podName, ready, restarts };
      })
      .sort((a, b) => a.ordinal - b.ordinal);
    return { desired: sts.spec?.replicas ?? 0, ready: sts.status?.readyReplicas ?? 0, replicas };
  }

  /** The worker pods' logs through the API server (`sluice logs [-f]`). */
  async *streamLogs(name: string, options: { follow: boolean; signal?: AbortSignal }): AsyncIterable<LogLine> {
    this.#check();
    try {
      yield* podLogs(this.#kc, this.#core, this.namespace, name, options);
    } catch (e) {
      throw toKubernetesError(e, 'read logs of', `pods ${this.namespace}/${FunctionLabel}=${name}`);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
