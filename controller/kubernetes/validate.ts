/**
 * Checks a Kubernetes manifest before it leaves sluice: the kubernetes-models schema (types, required
 * fields, enums) and, because neither that schema nor `@kubernetes/client-node` reject unknown fields
 * (the client's serializer silently DROPS them, so a misspelled `replicaz` would vanish without a
 * word), a walk of every key against the API's field list (the client's generated attribute maps).
 */
import * as k8s from '@kubernetes/client-node';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Scale } from 'kubernetes-models/autoscaling/v1/Scale';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { z } from 'zod';
import { SluiceError } from '../../bindings/errors.ts';

interface Validatable {
  validate(): void;
}

/** Kinds sluice renders: the kubernetes-models class and the client-node model that lists the fields. */
const KINDS: Record<string, { model: new (data: never) => Validatable; fields: string | z.ZodType }> = {
  'v1/ConfigMap': { model: ConfigMap, fields: 'V1ConfigMap' },
  'v1/Secret': { model: Secret, fields: 'V1Secret' },
  'v1/Service': { model: Service, fields: 'V1Service' },
  'v1/ServiceAccount': { model: ServiceAccount, fields: 'V1ServiceAccount' },
  'apps/v1/StatefulSet': { model: StatefulSet, fields: 'V1StatefulSet' },
  'apps/v1/Deployment': { model: Deployment, fields: 'V1Deployment' },
  'autoscaling/v1/Scale': { model: Scale, fields: 'V1Scale' },
  'rbac.authorization.k8s.io/v1/Role': { model: Role, fields: 'V1Role' },
  'rbac.authorization.k8s.io/v1/RoleBinding': { model: RoleBinding, fields: 'V1RoleBinding' },
  // A CRD: client-node has no field list for it, so the subset sluice renders is a strict schema here.
  'monitoring.coreos.com/v1/ServiceMonitor': { model: ServiceMonitor, fields: serviceMonitorSchema() },
  'keda.sh/v1alpha1/ScaledObject': { model: ScaledObject, fields: scaledObjectSchema() },
};

/** The subset of KEDA's ScaledObject that sluice renders, strict (a CRD: client-node has no field list). */
function scaledObjectSchema(): z.ZodType {
  const str = z.string();
  const labels = z.record(z.string(), z.string());
  const count = z.number().int().nonnegative();
  return z.strictObject({
    apiVersion: z.literal('keda.sh/v1alpha1'),
    kind: z.literal('ScaledObject'),
    // resourceVersion: the driver's replace carries the one it read (optimistic concurrency).
    metadata: z.strictObject({ name: str, namespace: str.optional(), labels: labels.optional(), annotations: labels.optional(), resourceVersion: str.optional() }),
    spec: z.strictObject({
      scaleTargetRef: z.strictObject({ apiVersion: str.optional(), kind: str.optional(), name: str }),
      minReplicaCount: count.optional(),
      maxReplicaCount: count.optional(),
      pollingInterval: count.optional(),
      cooldownPeriod: count.optional(),
      triggers: z.array(z.strictObject({ type: z.literal('external'), metadata: z.strictObject({ scalerAddress: str, function: str, tokenFromEnv: str.optional() }) })).min(1),
    }),
  });
}

function serviceMonitorSchema(): z.ZodType {
  const str = z.string();
  const labels = z.record(z.string(), z.string());
  return z.strictObject({
    apiVersion: z.literal('monitoring.coreos.com/v1'),
    kind: z.literal('ServiceMonitor'),
    metadata: z.strictObject({ name: str, namespace: str.optional(), labels: labels.optional(), annotations: labels.optional() }),
    spec: z.strictObject({
      selector: z.strictObject({ matchLabels: labels }),
      namespaceSelector: z.strictObject({ matchNames: z.array(str) }).optional(),
      jobLabel: str.optional(),
      endpoints: z.array(z.strictObject({ port: str, path: str.optional(), interval: str.optional(), scrapeTimeout: str.optional(), scheme: z.enum(['http', 'https']).optional() })).min(1),
    }),
  });
}

interface Attribute {
  baseName: string;
  type: string;
}
type ModelClass = { getAttributeTypeMap(): Attribute[] };

function modelClass(type: string): ModelClass | undefined {
  const c = (k8s as unknown as Record<string, unknown>)[type];
  return typeof c === 'function' && typeof (c as unknown as Partial<ModelClass>).getAttributeTypeMap === 'function' ? (c as unknown as ModelClass) : undefined;
}

/** Reports every key of `value` that the API type `type` does not have, by JSON path. */
function unknownFields(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return;
  }
  const model = modelClass(type);
  if (!model || typeof value !== 'object' || Array.isArray(value)) return; // a leaf (string, number, IntOrString, any)
  const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const t = attrs.get(k);
    if (t === undefined) out.push(`${path}.${k}: unknown field`);
    else unknownFields(v, t, `${path}.${k}`, out);
  }
}

/** Every problem of a manifest (empty when it is valid): schema violations and unknown fields. */
export function manifestProblems(obj: unknown): string[] {
  const o = obj as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } };
  const kind = KINDS[`${String(o?.apiVersion)}/${String(o?.kind)}`];
  if (!kind) return [`${String(o?.apiVersion)} ${String(o?.kind)}: not a kind sluice renders`];
  const out: string[] = [];
  try {
    new kind.model(obj as never).validate();
  } catch (e) {
    // ajv's text: 'data/spec/replicas must be integer, data/...' → 'spec.replicas: must be integer'.
    for (const m of (e as Error).message.split(', ')) {
      const sp = m.indexOf(' ');
      const path = (sp < 0 ? m : m.slice(0, sp)).replace(/^data\/?/, '').replace(/\//g, '.');
      out.push(`${path}: ${sp < 0 ? 'is invalid' : m.slice(sp + 1)}`);
    }
  }
  if (typeof kind.fields === 'string') unknownFields(obj, kind.fields, '', out);
  else {
    const r = kind.fields.safeParse(obj);
    if (!r.success) {
      for (const i of r.error.issues) {
        const p = i.path.map((s) => (typeof s === 'number' ? `[${s}]` : `.${String(s)}`)).join('');
        if (i.code === 'unrecognized_keys') for (const k of i.keys) out.push(`${p}.${k}: unknown field`);
        else out.push(`${p}: ${i.message}`);
      }
    }
  }
  return out.map((m) => (m.startsWith('.') ? m.slice(1) : m));
}

interface PodLike {
  spec?: { template?: { spec?: PodSpecLike } };
}
interface SecurityLike {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
  seccompProfile?: { type?: string };
}
interface PodSpecLike {
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  securityContext?: SecurityLike;
  volumes?: Record<string, unknown>[];
  containers?: { name?: string; securityContext?: SecurityLike; ports?: { hostPort?: number }[] }[];
  initContainers?: { name?: string; securityContext?: SecurityLike; ports?: { hostPort?: number }[] }[];
}

/** Volume types Pod Security "restricted" allows. */
const RESTRICTED_VOLUMES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);

/**
 * The rules of the Kubernetes Pod Security Standard "restricted" (the baseline rules it includes and its
 * own) that a workload's pod template breaks, by JSON path; empty for kinds without a pod template. What
 * the admission controller would refuse in a namespace labelled `pod-security.kubernetes.io/enforce: restricted`.
 */
export function podSecurityProblems(obj: unknown): string[] {
  const kind = (obj as { kind?: unknown })?.kind;
  if (kind !== 'StatefulSet' && kind !== 'Deployment') return [];
  const pod = (obj as PodLike).spec?.template?.spec;
  const at = 'spec.template.spec';
  if (pod === undefined) return [`${at}: missing`];
  const out: string[] = [];
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) out.push(`${at}: host namespaces are not allowed (restricted)`);
  const podSc = pod.securityContext ?? {};
  for (const [i, v] of (pod.volumes ?? []).entries()) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (type === undefined || !RESTRICTED_VOLUMES.has(type)) out.push(`${at}.volumes[${i}]: volume type ${String(type)} is not allowed (restricted)`);
  }
  const all = [...(pod.containers ?? []).map((c, i) => [c, `${at}.containers[${i}]`] as const), ...(pod.initContainers ?? []).map((c, i) => [c, `${at}.initContainers[${i}]`] as const)];
  for (const [c, path] of all) {
    const sc = c.securityContext ?? {};
    if (sc.privileged) out.push(`${path}.securityContext.privileged: must not be true (restricted)`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${path}.securityContext.allowPrivilegeEscalation: must be false (restricted)`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`${path}.securityContext.capabilities.drop: must include ALL (restricted)`);
    const added = (sc.capabilities?.add ?? []).filter((a) => a !== 'NET_BIND_SERVICE');
    if (added.length > 0) out.push(`${path}.securityContext.capabilities.add: only NET_BIND_SERVICE may be added (restricted), got ${added.join(', ')}`);
    if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) !== true) out.push(`${path}.securityContext.runAsNonRoot: must be true here or in the pod's securityContext (restricted)`);
    if ((sc.runAsUser ?? podSc.runAsUser) === 0) out.push(`${path}.securityContext.runAsUser: must not be 0 (restricted)`);
    const seccomp = sc.seccompProfile?.type ?? podSc.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`${path}.securityContext.seccompProfile.type: must be RuntimeDefault or Localhost here or in the pod's securityContext (restricted)`);
    for (const [j, p] of (c.ports ?? []).entries()) if (p.hostPort !== undefined && p.hostPort !== 0) out.push(`${path}.ports[${j}].hostPort: must not be set (baseline)`);
  }
  return out;
}

/**
 * Throws `SLUICE_INVALID_ARGUMENT` naming the object and every problem when a manifest is not valid: schema,
 * unknown fields, and (for workloads) the Pod Security "restricted" rules every sluice pod keeps.
 */
export function validateManifest(obj: unknown): void {
  const problems = [...manifestProblems(obj), ...podSecurityProblems(obj)];
  if (problems.length === 0) return;
  const o = obj as { kind?: unknown; metadata?: { name?: unknown } };
  throw new SluiceError('SLUICE_INVALID_ARGUMENT', `invalid ${String(o?.kind)} ${String(o?.metadata?.name)}: ${problems.join('; ')}`);
}
