/** Kubernetes manifests of a function and of the controller: validated with kubernetes-models, unknown fields refused. */
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadFunctionSpec, type FunctionSpec } from '../../controller/spec/index.ts';
import { manifestProblems, renderController, renderFunction, renderKubernetes, type Manifest } from '../../controller/kubernetes/index.ts';
import { resolveWorkerOptions, type WorkerOptions } from '../../runtime/worker-options.ts';

const LOCAL = `apiVersion: sluice.dev/v1
kind: Function
metadata:
  name: scan
  labels: {team: data}
spec:
  handler: ./index.ts
  triggers:
    - object: {bucket: uploads, events: [put]}
  batch: {maxRecords: 100, maxWait: 50ms}
  scaling: {minReplicas: 2, maxReplicas: 6}
`;
const NATS = `apiVersion: sluice.dev/v1
kind: Function
metadata:
  name: clicks
spec:
  handler: ./clicks.ts
  backend: {kind: nats, url: "nats://nats.sluice:4222", prefix: prod, tokenSecret: nats-token}
  triggers:
    - stream: {stream: clicks}
  scaling: {minReplicas: 0}
  secrets:
    - {name: nats-token, fromEnv: NATS_TOKEN}
`;
const env = { NATS_TOKEN: 's3cr3t-t0ken' };
const local = (): FunctionSpec => loadFunctionSpec(LOCAL);
const nats = (): FunctionSpec => loadFunctionSpec(NATS);

// Tests poke into manifests freely; the shapes are checked by manifestProblems.
type Any = Record<string, any>;
const byKind = (objs: Manifest[], kind: string): Any => objs.find((o) => o.kind === kind) as Any;

describe('render', () => {
  it('render - every object validates with kubernetes-models and has no unknown field', () => {
    const all = [...renderKubernetes(local(), { namespace: 'sluice' }), ...renderKubernetes(nats(), { env })];
    expect(all.map((o) => o.kind).sort()).toEqual(
      ['ConfigMap', 'ConfigMap', 'Deployment', 'Deployment', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Secret', 'Service', 'Service', 'ServiceAccount', 'ServiceAccount', 'ServiceMonitor', 'ServiceMonitor', 'StatefulSet', 'StatefulSet'].sort(),
    );
    for (const o of all) expect(manifestProblems(o), `${o.kind} ${o.metadata?.name}`).toEqual([]);
  });

  it('render - the check catches misspelled fields (core kinds and the ServiceMonitor CRD) and wrong types', () => {
    const objs = renderKubernetes(local());
    const sts = structuredClone(byKind(objs, 'StatefulSet'));
    sts.spec.replicaz = 2;
    sts.spec.template.spec.containers[0].livenesProbe = { httpGet: { path: '/healthz', port: 9464 } };
    sts.spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldpath = 'metadata.name';
    expect(manifestProblems(sts)).toEqual(
      expect.arrayContaining(['spec.replicaz: unknown field', 'spec.template.spec.containers[0].livenesProbe: unknown field', 'spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldpath: unknown field']),
    );
    const sm = structuredClone(byKind(objs, 'ServiceMonitor'));
    sm.spec.endpoints[0].intervall = '15s';
    expect(manifestProblems(sm)).toEqual(['spec.endpoints[0].intervall: unknown field']);
    const cm = structuredClone(byKind(objs, 'ConfigMap'));
    cm.metadata.lables = { a: 'b' };
    expect(manifestProblems(cm)).toEqual(['metadata.lables: unknown field']);
    const typed = structuredClone(byKind(objs, 'StatefulSet'));
    typed.spec.replicas = 'two';
    expect(manifestProblems(typed)).toEqual(['spec.replicas: must be integer']);
  });

  it('render - StatefulSet: parallel pods, ordinal from the pod-index label, worker command, probes and metrics on 9464, grace above the worker shutdown', () => {
    const sts = byKind(renderKubernetes(local(), { image: 'registry.example/sluice:1.2', namespace: 'sluice' }), 'StatefulSet');
    expect(sts.metadata).toMatchObject({ name: 'scan', namespace: 'sluice', labels: { team: 'data', 'sluice.dev/function': 'scan' } });
    expect(sts.spec).toMatchObject({ serviceName: 'scan', replicas: 2, podManagementPolicy: 'Parallel', selector: { matchLabels: { 'sluice.dev/function': 'scan' } } });
    const pod = sts.spec.template.spec;
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    const c = pod.containers[0];
    expect(c.image).toBe('registry.example/sluice:1.2');
    expect(c.command).toEqual(['node', '--import', 'tsx', 'runtime/worker-main.ts', '/etc/sluice/worker.json']);
    expect(c.lifecycle).toBeUndefined(); // SIGTERM reaches node directly: no preStop
    expect(c.env).toEqual([
      { name: 'SLUICE_ORDINAL', valueFrom: { fieldRef: { fieldPath: "metadata.labels['apps.kubernetes.io/pod-index']" } } },
      { name: 'SLUICE_REPLICAS', value: '2' },
    ]);
    expect(c.ports).toEqual([{ name: 'metrics', containerPort: 9464, protocol: 'TCP' }]);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c.resources.requests).toEqual({ cpu: '250m', memory: '256Mi' });
    expect(sts.spec.template.metadata.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9464', 'prometheus.io/path': '/metrics' });
    expect(c.volumeMounts).toContainEqual({ name: 'config', mountPath: '/etc/sluice', readOnly: true });
    expect(pod.volumes).toContainEqual({ name: 'config', configMap: { name: 'scan' } });
    // minReplicas 0 still starts one pod; the autoscaler takes it to zero.
    expect(renderFunction(nats(), { env }).statefulSet.spec?.replicas).toBe(1);
  });

  it('render - the ConfigMap holds the spec (which loads back), the handler path and a worker.json the worker accepts', () => {
    const { configMap } = renderFunction(local(), { appDir: '/srv/sluice' });
    const data = configMap.data ?? {};
    expect(loadFunctionSpec(data['function.yaml'] ?? '')).toEqual(local());
    expect(data.handler).toBe('/srv/sluice/functions/scan/index.ts');
    const w = JSON.parse(data['worker.json'] ?? '') as WorkerOptions;
    expect(w).toMatchObject({ function: 'scan', module: '/srv/sluice/functions/scan/index.ts', httpPort: 9464, httpHost: '0.0.0.0', ordinal: 0, replicas: 2 });
    expect(w.backend).toEqual({ kind: 'local', dir: '/srv/sluice/functions/scan/.sluice-data' });
    const r = resolveWorkerOptions(w);
    expect([r.httpPort, r.httpHost, r.batch.maxRecords, r.batch.maxWaitMs]).toEqual([9464, '0.0.0.0', 100, 50]);
  });

  it('render - a local backend gets an emptyDir at its data dir', () => {
    const pod = renderFunction(local()).statefulSet.spec?.template.spec;
    expect(pod?.volumes).toContainEqual({ name: 'data', emptyDir: {} });
    expect(pod?.containers[0]?.volumeMounts).toContainEqual({ name: 'data', mountPath: '/app/functions/scan/.sluice-data' });
    expect(renderFunction(nats(), { env }).statefulSet.spec?.template.spec?.volumes?.map((v) => v.name)).toEqual(['config']);
  });

  it('render - a credential (the nats token) goes into a Secret; no ConfigMap holds a secret value', () => {
    const objs = renderKubernetes(nats(), { env });
    const cm = byKind(objs, 'ConfigMap');
    const secret = byKind(objs, 'Secret');
    expect(JSON.stringify(objs.filter((o) => o.kind !== 'Secret'))).not.toContain('s3cr3t');
    expect(cm.data['worker.json']).toBeUndefined();
    expect(secret.metadata.name).toBe('clicks-worker');
    expect(JSON.parse(secret.stringData['worker.json']).backend).toEqual({ kind: 'nats', url: 'nats://nats.sluice:4222', prefix: 'prod', token: 's3cr3t-t0ken' });
    expect(byKind(objs, 'StatefulSet').spec.template.spec.volumes).toEqual([{ name: 'config', secret: { secretName: 'clicks-worker' } }]);
    // A `value` secret is redacted in the ConfigMap copy of the spec.
    const withValue = loadFunctionSpec(NATS.replace('{name: nats-token, fromEnv: NATS_TOKEN}', '{name: nats-token, value: inline-t0ken}'));
    const f = renderFunction(withValue);
    expect(JSON.stringify([f.configMap, f.statefulSet, f.service])).not.toContain('inline-t0ken');
    expect(parse(f.configMap.data?.['function.yaml'] ?? '').spec.secrets).toEqual([{ name: 'nats-token', value: '<redacted>' }]);
  });

  it('render - a spec change changes the pod template config hash (rolling restart); the same spec renders the same', () => {
    const hash = (s: FunctionSpec) => renderFunction(s).statefulSet.spec?.template.metadata?.annotations?.['sluice.dev/config-hash'];
    expect(hash(local())).toMatch(/^[0-9a-f]{16}$/);
    expect(hash(local())).toBe(hash(local()));
    expect(hash(loadFunctionSpec(LOCAL.replace('maxRecords: 100', 'maxRecords: 200')))).not.toBe(hash(local()));
  });

  it('render - the headless Service and the ServiceMonitor select the function pods on the metrics port', () => {
    const objs = renderKubernetes(local(), { namespace: 'sluice' });
    const svc = byKind(objs, 'Service');
    expect(svc.spec).toEqual({ clusterIP: 'None', selector: { 'sluice.dev/function': 'scan' }, ports: [{ name: 'metrics', port: 9464, targetPort: 'metrics', protocol: 'TCP' }] });
    const sm = byKind(objs, 'ServiceMonitor');
    expect(sm.spec).toEqual({ selector: { matchLabels: { 'sluice.dev/function': 'scan' } }, namespaceSelector: { matchNames: ['sluice'] }, endpoints: [{ port: 'metrics', path: '/metrics', interval: '15s' }] });
    expect(svc.metadata.labels['sluice.dev/function']).toBe('scan');
  });

  it('render - controller: a Role with what the driver calls, bound to the ServiceAccount its Deployment runs as', () => {
    const [sa, role, binding, deploy] = renderController({ namespace: 'sluice', controllerReplicas: 1, image: 'sluice:2' });
    const rules = role.rules ?? [];
    const verbs = (group: string, resource: string) => rules.find((r) => r.apiGroups?.includes(group) && r.resources?.includes(resource))?.verbs ?? [];
    for (const v of ['get', 'list', 'watch', 'update', 'patch', 'create', 'delete']) expect(verbs('apps', 'statefulsets')).toContain(v);
    expect(verbs('apps', 'statefulsets/scale')).toEqual(expect.arrayContaining(['get', 'update', 'patch']));
    expect(verbs('', 'pods')).toEqual(['get', 'list', 'watch']);
    for (const v of ['get', 'list', 'create', 'update', 'delete']) expect(verbs('', 'configmaps')).toContain(v);
    expect(verbs('', 'services')).toContain('create');
    expect(rules.flatMap((r) => r.resources ?? [])).not.toContain('*');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata?.name });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata?.name, namespace: 'sluice' }]);
    expect(deploy.spec?.template.spec?.serviceAccountName).toBe(sa.metadata?.name);
    expect(deploy.spec?.replicas).toBe(1);
    expect(deploy.spec?.template.spec?.containers[0]?.image).toBe('sluice:2');
    // Workers never talk to the API: no token mounted in their pods.
    expect(renderFunction(local()).statefulSet.spec?.template.spec?.automountServiceAccountToken).toBe(false);
  });

  it('render - defaults: image sluice:latest, namespace default, one controller', () => {
    const objs = renderKubernetes(local());
    for (const o of objs) expect(o.metadata?.namespace).toBe('default');
    expect(byKind(objs, 'StatefulSet').spec.template.spec.containers[0].image).toBe('sluice:latest');
    expect(byKind(objs, 'Deployment').spec.replicas).toBe(1);
  });

  it('render - names Kubernetes cannot run are refused with SLUICE_INVALID_ARGUMENT', () => {
    const long = loadFunctionSpec(LOCAL.replace('name: scan', `name: ${'s'.repeat(53)}`));
    expect(() => renderFunction(long)).toThrow(expect.objectContaining({ code: 'SLUICE_INVALID_ARGUMENT', message: expect.stringContaining('at most 52') }));
    const digit = loadFunctionSpec(LOCAL.replace('name: scan', 'name: 1scan'));
    expect(() => renderFunction(digit)).toThrow(expect.objectContaining({ code: 'SLUICE_INVALID_ARGUMENT', message: expect.stringContaining('starts with a letter') }));
    expect(() => renderController({ controllerReplicas: 0 })).toThrow(expect.objectContaining({ code: 'SLUICE_INVALID_ARGUMENT' }));
  });
});
