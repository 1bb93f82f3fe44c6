/** Kubernetes manifests of a function and of the controller: validated with kubernetes-models, unknown fields refused. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ExitCodes } from '../../bindings/error-table.ts';
import { run } from '../support/sluice-process.ts';
import { loadFunctionSpec, type FunctionSpec } from '../../controller/spec/index.ts';
import { manifestProblems, podSecurityProblems, validateManifest, renderController, renderFunction, renderKubernetes, workerSecretName, type Manifest, type RenderOptions } from '../../controller/kubernetes/index.ts';
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
const byKind = (objs: Manifest[], kind: string, name?: string): Any => objs.find((o) => o.kind === kind && (name === undefined || o.metadata?.name === name)) as Any;

describe('render', () => {
  it('render - every object validates with kubernetes-models and has no unknown field', () => {
    const all = [...renderKubernetes(local(), { namespace: 'sluice' }), ...renderKubernetes(nats(), { env })];
    expect(all.map((o) => o.kind).sort()).toEqual(
      // Per render: the controller's 7 objects and the function's 4 (+ the worker Secret for the nats token).
      ['ConfigMap', 'ConfigMap', 'ConfigMap', 'ConfigMap', 'Deployment', 'Deployment', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Secret', 'Secret', 'Secret', 'Service', 'Service', 'Service', 'Service', 'ServiceAccount', 'ServiceAccount', 'ServiceMonitor', 'ServiceMonitor', 'StatefulSet', 'StatefulSet'].sort(),
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
    expect(renderFunction(nats(), { env }).statefulSet.spec?.template.spec?.volumes?.map((v) => v.name)).toEqual(['config', 'tmp']);
  });

  it('render - handler secrets (a local backend, no token) put worker.json into a Secret, never a ConfigMap', () => {
    const spec = loadFunctionSpec(`${LOCAL}  secrets:\n    - {name: api-key, fromEnv: API_KEY}\n`);
    const objs = renderKubernetes(spec, { env: { API_KEY: 'h4ndler-s3cret' } });
    expect(JSON.stringify(objs.filter((o) => o.kind !== 'Secret'))).not.toContain('h4ndler-s3cret');
    expect(byKind(objs, 'ConfigMap', 'scan').data['worker.json']).toBeUndefined();
    expect(JSON.parse(byKind(objs, 'Secret', 'scan-worker').stringData['worker.json']).secrets).toEqual({ 'api-key': 'h4ndler-s3cret' });
  });

  it('render - a credential (the nats token) goes into a Secret; no ConfigMap holds a secret value', () => {
    const objs = renderKubernetes(nats(), { env });
    const cm = byKind(objs, 'ConfigMap', 'clicks');
    const secret = byKind(objs, 'Secret', 'clicks-worker');
    expect(JSON.stringify(objs.filter((o) => o.kind !== 'Secret'))).not.toContain('s3cr3t');
    // The controller shares the store: its Secret carries the backend token, its Deployment only a reference.
    expect(byKind(objs, 'Secret', 'sluice-controller').stringData.SLUICE_BACKEND_TOKEN).toBe('s3cr3t-t0ken');
    expect(cm.data['worker.json']).toBeUndefined();
    expect(secret.metadata.name).toBe('clicks-worker');
    expect(JSON.parse(secret.stringData['worker.json']).backend).toEqual({ kind: 'nats', url: 'nats://nats.sluice:4222', prefix: 'prod', token: 's3cr3t-t0ken' });
    expect(byKind(objs, 'StatefulSet').spec.template.spec.volumes).toEqual([{ name: 'config', secret: { secretName: 'clicks-worker' } }, { name: 'tmp', emptyDir: {} }]);
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
    const svc = byKind(objs, 'Service', 'scan');
    expect(svc.spec).toEqual({ clusterIP: 'None', selector: { 'sluice.dev/function': 'scan' }, ports: [{ name: 'metrics', port: 9464, targetPort: 'metrics', protocol: 'TCP' }] });
    const sm = byKind(objs, 'ServiceMonitor');
    expect(sm.spec).toEqual({ selector: { matchLabels: { 'sluice.dev/function': 'scan' } }, namespaceSelector: { matchNames: ['sluice'] }, endpoints: [{ port: 'metrics', path: '/metrics', interval: '15s' }] });
    expect(svc.metadata.labels['sluice.dev/function']).toBe('scan');
  });

  it('render - controller: a Role with what the driver calls, bound to the ServiceAccount its Deployment runs as', () => {
    const [sa, role, binding, deploy] = renderController(undefined, { namespace: "sluice", controllerReplicas: 1, image: "sluice:2" });
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
    expect(() => renderController(undefined, { controllerReplicas: 0 })).toThrow(expect.objectContaining({ code: 'SLUICE_INVALID_ARGUMENT' }));
  });
});

describe('render - apply-ready cluster objects', () => {
  const KEDA = NATS.replace('scaling: {minReplicas: 0}', 'scaling: {minReplicas: 0, maxReplicas: 8, autoscaler: keda, scaleToZeroAfter: 2m}');
  const workloads = (objs: Manifest[]) => objs.filter((o) => o.kind === 'StatefulSet' || o.kind === 'Deployment');

  it('render - every workload passes Pod Security "restricted": non-root, seccomp, no escalation, caps dropped, read-only root with a /tmp emptyDir', () => {
    for (const objs of [renderKubernetes(local()), renderKubernetes(nats(), { env }), renderKubernetes(loadFunctionSpec(KEDA), { env })]) {
      for (const w of workloads(objs)) {
        expect(podSecurityProblems(w), `${w.kind} ${w.metadata?.name}`).toEqual([]);
        const pod = (w as Any).spec.template.spec;
        expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
        expect(pod.containers[0].securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
        expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
      }
    }
  });

  it('render - the restricted check names each broken rule by path (it would refuse the old manifests)', () => {
    const sts = structuredClone(byKind(renderKubernetes(local()), 'StatefulSet')) as Any;
    delete sts.spec.template.spec.securityContext;
    sts.spec.template.spec.containers[0].securityContext = { capabilities: { add: ['SYS_ADMIN'] } };
    sts.spec.template.spec.volumes.push({ name: 'host', hostPath: { path: '/' } });
    sts.spec.template.spec.containers[0].ports[0].hostPort = 9464;
    const problems = podSecurityProblems(sts);
    for (const p of ['allowPrivilegeEscalation', 'capabilities.drop', 'capabilities.add', 'runAsNonRoot', 'seccompProfile.type', 'volumes[3]: volume type hostPath', 'hostPort']) {
      expect(problems.some((m) => m.includes(p)), `${p} in ${problems.join(' | ')}`).toBe(true);
    }
    expect(() => validateManifest(sts)).toThrow(/allowPrivilegeEscalation: must be false/);
  });

  it('render - controller: backend and ports in a ConfigMap, tokens in a Secret read by reference, a Service for control/console/s3, TCP probes', () => {
    const objs = renderKubernetes(nats(), { env, controlToken: 'ctl-t0ken', scalerToken: 'sc-t0ken' });
    const cm = byKind(objs, 'ConfigMap', 'sluice-controller');
    expect(cm.data).toEqual({ SLUICE_BACKEND: 'nats://nats.sluice:4222', SLUICE_CONTROL_HOST: '0.0.0.0', SLUICE_CONTROL_PORT: '7070', SLUICE_DRIVER: 'kubernetes' });
    const secret = byKind(objs, 'Secret', 'sluice-controller');
    expect(secret.stringData).toMatchObject({ SLUICE_TOKEN: 'ctl-t0ken', SLUICE_SCALER_TOKEN: 'sc-t0ken' });
    const deploy = byKind(objs, 'Deployment', 'sluice-controller');
    expect(JSON.stringify(deploy)).not.toMatch(/ctl-t0ken|sc-t0ken|s3cr3t/);
    const c = deploy.spec.template.spec.containers[0];
    expect(c.envFrom).toEqual([{ configMapRef: { name: 'sluice-controller' } }]);
    expect(c.env).toContainEqual({ name: 'SLUICE_TOKEN', valueFrom: { secretKeyRef: { name: 'sluice-controller', key: 'SLUICE_TOKEN' } } });
    expect(c.readinessProbe.tcpSocket).toEqual({ port: 'control' });
    expect(c.livenessProbe.tcpSocket).toEqual({ port: 'control' });
    const svc = byKind(objs, 'Service', 'sluice-controller');
    expect(svc.spec.ports.map((p: Any) => [p.name, p.port])).toEqual([['control', 7070], ['console', 7071], ['s3', 9000]]);
    expect(svc.spec.selector).toEqual({ 'app.kubernetes.io/name': 'sluice-controller' });
    // Without given tokens each render makes fresh ones (nothing guessable is ever applied).
    const a = byKind(renderKubernetes(nats(), { env }), 'Secret', 'sluice-controller').stringData.SLUICE_TOKEN;
    const b = byKind(renderKubernetes(nats(), { env }), 'Secret', 'sluice-controller').stringData.SLUICE_TOKEN;
    expect(a).toMatch(/^[\w-]{32}$/);
    expect(a).not.toBe(b);
  });

  it('render - natsUrl replaces an embedded backend: workers and controller share the NATS store, no per-pod data dir', () => {
    const objs = renderKubernetes(local(), { natsUrl: 'nats://nats.sluice:4222' });
    const cm = byKind(objs, 'ConfigMap', 'scan');
    expect(JSON.parse(cm.data['worker.json']).backend).toEqual({ kind: 'nats', url: 'nats://nats.sluice:4222' });
    expect(byKind(objs, 'StatefulSet').spec.template.spec.volumes.map((v: Any) => v.name)).toEqual(['config', 'tmp']);
    expect(byKind(objs, 'ConfigMap', 'sluice-controller').data.SLUICE_BACKEND).toBe('nats://nats.sluice:4222');
    expect(byKind(objs, 'Deployment').spec.template.spec.volumes.map((v: Any) => v.name)).toEqual(['tmp']);
    expect(() => renderKubernetes(local(), { natsUrl: 'http://x' })).toThrow(expect.objectContaining({ code: 'SLUICE_INVALID_ARGUMENT' }));
  });

  it('render - autoscaler: keda renders a ScaledObject on the external scaler with its token from the scale target env; validated', () => {
    const objs = renderKubernetes(loadFunctionSpec(KEDA), { env, namespace: 'prod' });
    const so = byKind(objs, 'ScaledObject');
    expect(manifestProblems(so)).toEqual([]);
    expect(so.spec).toEqual({
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'clicks' },
      minReplicaCount: 0,
      maxReplicaCount: 8,
      pollingInterval: 15,
      cooldownPeriod: 120,
      triggers: [{ type: 'external', metadata: { scalerAddress: 'sluice-controller.prod.svc:7070', function: 'clicks', tokenFromEnv: 'SLUICE_SCALER_TOKEN' } }],
    });
    const worker = byKind(objs, 'StatefulSet').spec.template.spec.containers[0];
    expect(worker.env).toContainEqual({ name: 'SLUICE_SCALER_TOKEN', valueFrom: { secretKeyRef: { name: 'sluice-controller', key: 'SLUICE_SCALER_TOKEN' } } });
    // Without keda there is no ScaledObject and no scaler token in the worker env.
    const plain = renderKubernetes(nats(), { env });
    expect(plain.some((o) => o.kind === 'ScaledObject')).toBe(false);
    expect(JSON.stringify(byKind(plain, 'StatefulSet'))).not.toContain('SLUICE_SCALER_TOKEN');
    const typo = structuredClone(so) as Any;
    typo.spec.triggers[0].metadata.scalerAdress = 'x';
    typo.spec.pollingIntervall = 3;
    expect(manifestProblems(typo)).toEqual(expect.arrayContaining(['spec.pollingIntervall: unknown field', 'spec.triggers[0].metadata.scalerAdress: unknown field']));
  });
});

describe('render - the committed example deploy/k8s/scan-sensitive.yaml', () => {
  it('render - the example is apply-ready: every object validates, it runs on NATS, tokens are placeholders the controller refuses', async () => {
    const { readFileSync } = await import('node:fs');
    const { parseAllDocuments } = await import('yaml');
    const docs = parseAllDocuments(readFileSync(new URL('../../deploy/k8s/scan-sensitive.yaml', import.meta.url), 'utf8')).map((d) => d.toJS() as Manifest);
    expect(docs.length).toBeGreaterThanOrEqual(11);
    for (const d of docs) expect(manifestProblems(d), `${d.kind} ${d.metadata?.name}`).toEqual([]);
    const cm = byKind(docs, 'ConfigMap', 'scan-sensitive');
    expect(JSON.parse(cm.data['worker.json']).backend.kind).toBe('nats');
    expect(byKind(docs, 'ConfigMap', 'sluice-controller').data.SLUICE_BACKEND).toMatch(/^nats:\/\//);
    expect(Object.values(byKind(docs, 'Secret', 'sluice-controller').stringData as Record<string, string>).every((v) => v.startsWith('replace-'))).toBe(true);
    // The controller refuses to start with a placeholder token.
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'controller/main.ts'], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: { ...process.env, SLUICE_TOKEN: 'replace-with-a-random-token', SLUICE_BACKEND: '/nonexistent-not-used' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('SLUICE_TOKEN is still the example placeholder');
  });
});

describe('render - NATS cluster', () => {
  const URLS = 'nats://n0.example:4222,nats://n1.example:4222,nats://n2.example:4222';

  it('render - a comma-separated natsUrl or a natsServers list goes whole into the controller ConfigMap and worker.json', () => {
    for (const o of [{ natsUrl: URLS }, { natsServers: URLS.split(',') }]) {
      const objs = renderKubernetes(local(), o);
      for (const m of objs) validateManifest(m);
      expect(byKind(objs, 'ConfigMap', 'sluice-controller').data.SLUICE_BACKEND).toBe(URLS);
      expect(JSON.parse(byKind(objs, 'ConfigMap', 'scan').data['worker.json']).backend).toEqual({ kind: 'nats', url: URLS });
    }
    // A nats spec keeps its other backend fields (prefix, token) with the new server list.
    const objs = renderKubernetes(nats(), { env, natsUrl: URLS });
    expect(JSON.parse(byKind(objs, 'Secret', workerSecretName('clicks')).stringData['worker.json']).backend).toMatchObject({ url: URLS, prefix: 'prod' });
  });

  it('render - natsCluster 3: a NATS StatefulSet with JetStream, cluster routes over a headless Service, a volume per pod; sluice runs on its pods', () => {
    const objs = renderKubernetes(local(), { natsCluster: 3, namespace: 'data' });
    for (const m of objs) {
      expect(manifestProblems(m), `${m.kind} ${m.metadata?.name}`).toEqual([]);
      expect(podSecurityProblems(m), `${m.kind} ${m.metadata?.name}`).toEqual([]);
    }
    // NATS is applied first.
    expect(objs.slice(0, 3).map((o) => `${o.kind}/${o.metadata?.name}`)).toEqual(['ConfigMap/sluice-nats', 'Service/sluice-nats', 'StatefulSet/sluice-nats']);
    const svc = byKind(objs, 'Service', 'sluice-nats');
    expect(svc.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true, selector: { 'app.kubernetes.io/name': 'sluice-nats' } });
    expect(svc.spec.ports.map((p: Any) => [p.name, p.port])).toEqual([['client', 4222], ['cluster', 6222], ['monitor', 8222]]);
    const sts = byKind(objs, 'StatefulSet', 'sluice-nats');
    expect(sts.spec).toMatchObject({ serviceName: 'sluice-nats', replicas: 3, podManagementPolicy: 'Parallel' });
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('10Gi');
    const c = sts.spec.template.spec.containers[0];
    expect(c.args).toEqual(['--config', '/etc/nats/nats.conf']);
    expect(c.env).toContainEqual({ name: 'SERVER_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
    expect(c.volumeMounts).toEqual([{ name: 'config', mountPath: '/etc/nats' }, { name: 'data', mountPath: '/data' }]);
    const conf: string = byKind(objs, 'ConfigMap', 'sluice-nats').data['nats.conf'];
    expect(conf).toMatch(/jetstream \{\n {2}store_dir: \/data\n\}/);
    expect(conf).toContain('server_name: $SERVER_NAME');
    for (let i = 0; i < 3; i++) expect(conf).toContain(`nats://sluice-nats-${i}.sluice-nats.data.svc:6222`);
    const urls = [0, 1, 2].map((i) => `nats://sluice-nats-${i}.sluice-nats.data.svc:4222`).join(',');
    expect(byKind(objs, 'ConfigMap', 'sluice-controller').data.SLUICE_BACKEND).toBe(urls);
    expect(JSON.parse(byKind(objs, 'ConfigMap', 'scan').data['worker.json']).backend.url).toBe(urls);
    // A single server has no cluster block; an explicit natsUrl wins over the rendered pods.
    expect(byKind(renderKubernetes(local(), { natsCluster: 1 }), 'ConfigMap', 'sluice-nats').data['nats.conf']).not.toContain('cluster {');
    expect(byKind(renderKubernetes(local(), { natsCluster: 3, natsUrl: URLS }), 'ConfigMap', 'sluice-controller').data.SLUICE_BACKEND).toBe(URLS);
  });

  it('render - bad NATS render options are SLUICE_INVALID_ARGUMENT naming the option', () => {
    const cases: [RenderOptions, RegExp][] = [
      [{ natsCluster: 2 }, /natsCluster must be 1, 3 or 5/],
      [{ natsCluster: 0 }, /natsCluster must be 1, 3 or 5/],
      [{ natsCluster: 7 }, /natsCluster must be 1, 3 or 5/],
      [{ natsUrl: 'nats://a:4222,http://b' }, /natsUrl must be a nats:\/\/ or tls:\/\/ URL .*"http:\/\/b"/],
      [{ natsUrl: 'nats://a:4222,' }, /natsUrl must be/],
      [{ natsServers: [] }, /natsServers must be a non-empty list/],
      [{ natsServers: ['nats://a:4222', 'b:4222'] }, /natsServers\[1\] must be/],
      [{ natsUrl: URLS, natsServers: [URLS] }, /natsUrl or natsServers, not both/],
    ];
    for (const [o, re] of cases) expect(() => renderKubernetes(local(), o), JSON.stringify(o)).toThrow(expect.objectContaining({ code: 'SLUICE_INVALID_ARGUMENT', message: expect.stringMatching(re) }));
  });

  it('render - the CLI: sluice render k8s --nats-cluster 3 prints the NATS objects and wires sluice to them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-render-'));
    try {
      const file = join(dir, 'function.yaml');
      writeFileSync(file, LOCAL);
      const r = await run(['render', 'k8s', '-f', file, '--namespace', 'data', '--nats-cluster', '3']);
      expect(r.code, r.stderr).toBe(0);
      const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Any);
      expect(docs.filter((d) => d.metadata.name === 'sluice-nats').map((d) => d.kind)).toEqual(['ConfigMap', 'Service', 'StatefulSet']);
      expect(docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'sluice-controller')?.data.SLUICE_BACKEND).toContain('nats://sluice-nats-2.sluice-nats.data.svc:4222');
      const bad = await run(['render', 'k8s', '-f', file, '--nats-cluster', '4']);
      expect(bad.code).toBe(ExitCodes.invalid);
      expect(bad.stderr).toContain('natsCluster must be 1, 3 or 5');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
