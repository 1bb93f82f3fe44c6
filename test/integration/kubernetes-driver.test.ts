/**
 * The Kubernetes driver against a loopback fake API server that checks every request (method, path,
 * content type, bearer token, body validated with kubernetes-models plus an unknown-field walk) and
 * keeps state in memory: StatefulSets with a scale subresource and pods, ConfigMaps, Services,
 * Secrets, KEDA ScaledObjects (a custom resource), resourceVersions with 409 on a stale one.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { LogLine } from '../../controller/control-plane.ts';
import { KubernetesDriver, manifestProblems } from '../../controller/kubernetes/index.ts';
import { loadFunctionSpec } from '../../controller/spec/index.ts';

type Obj = Record<string, any>;
interface Logged {
  method: string;
  path: string;
  query: URLSearchParams;
  contentType: string | undefined;
  body: Obj | undefined;
}

const KINDS: Record<string, { apiVersion: string; kind: string }> = {
  configmaps: { apiVersion: 'v1', kind: 'ConfigMap' },
  services: { apiVersion: 'v1', kind: 'Service' },
  secrets: { apiVersion: 'v1', kind: 'Secret' },
  statefulsets: { apiVersion: 'apps/v1', kind: 'StatefulSet' },
  scaledobjects: { apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject' },
};

/** A tiny in-memory Kubernetes API for the driver: strict about what it accepts. */
class FakeKubeApi {
  readonly requests: Logged[] = [];
  readonly store = new Map<string, Obj>(); // `${resource}/${ns}/${name}`
  readonly pods = new Map<string, Obj>(); // `${ns}/${name}`
  /** Runs before a write is applied (tests simulate a concurrent writer here). */
  beforeWrite: ((r: Logged) => void) | undefined;
  /** Runs first on every authorised request; a status code returned refuses it (tests simulate RBAC here). */
  beforeRead: ((r: Logged) => number | undefined) | undefined;
  /** Container log lines per pod (`${ns}/${pod}`), served by GET …/pods/<pod>/log; `appendLog` reaches followers. */
  readonly podLogs = new Map<string, string[]>();
  readonly #logFollowers = new Map<string, Set<(line: string) => void>>();
  #rv = 100;
  #server: Server;

  private constructor(
    server: Server,
    readonly token: string,
  ) {
    this.#server = server;
  }

  static async start(token: string): Promise<FakeKubeApi> {
    const server = createServer();
    const api = new FakeKubeApi(server, token);
    server.on('request', (req, res) => void api.#handle(req, res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return api;
  }

  /** Appends a line to a pod's container log (and sends it to every follower). */
  appendLog(ns: string, pod: string, line: string): void {
    const k = `${ns}/${pod}`;
    const l = this.podLogs.get(k) ?? [];
    l.push(line);
    this.podLogs.set(k, l);
    for (const f of this.#logFollowers.get(k) ?? []) f(line);
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  get(resource: string, ns: string, name: string): Obj | undefined {
    return this.store.get(`${resource}/${ns}/${name}`);
  }

  writes(): Logged[] {
    return this.requests.filter((r) => r.method !== 'GET');
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  #status(res: ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
  }

  #send(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  /** Pods follow the StatefulSet's replicas, Ready unless a test says otherwise. */
  #reconcile(ns: string, sts: Obj): void {
    const n = sts.spec.replicas ?? 1;
    for (const [k, p] of this.pods) if (p.metadata.ownerName === sts.metadata.name && k.startsWith(`${ns}/`) && Number(p.metadata.labels['apps.kubernetes.io/pod-index']) >= n) this.pods.delete(k);
    for (let i = 0; i < n; i++) {
      const name = `${sts.metadata.name}-${i}`;
      if (this.pods.has(`${ns}/${name}`)) continue;
      const labels = { ...sts.spec.template.metadata.labels, 'apps.kubernetes.io/pod-index': String(i), 'statefulset.kubernetes.io/pod-name': name };
      this.pods.set(`${ns}/${name}`, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: ns, labels, ownerName: sts.metadata.name },
        status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }], containerStatuses: [{ name: 'worker', ready: true, restartCount: 0, image: 'x', imageID: 'x' }] },
      });
    }
    const ready = [...this.pods.values()].filter((p) => p.metadata.ownerName === sts.metadata.name && p.status.conditions[0].status === 'True').length;
    sts.status = { replicas: n, readyReplicas: ready, availableReplicas: ready, currentReplicas: n, updatedReplicas: n, observedGeneration: sts.metadata.generation };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://x');
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const entry: Logged = { method: req.method ?? '', path: u.pathname, query: u.searchParams, contentType: req.headers['content-type'], body: undefined };
    this.requests.push(entry);
    if (req.headers.authorization !== `Bearer ${this.token}`) return this.#status(res, 401, 'Unauthorized', 'Unauthorized');
    const refused = this.beforeRead?.(entry);
    if (refused !== undefined) return this.#status(res, refused, 'Forbidden', `${req.method} ${u.pathname} is forbidden`);

    const logOf = /^\/api\/v1\/namespaces\/([a-z0-9-]+)\/pods\/([a-z0-9-]+)\/log$/.exec(u.pathname);
    if (logOf) {
      const k = `${logOf[1]}/${logOf[2]}`;
      if (req.method !== 'GET') return this.#status(res, 405, 'MethodNotAllowed', req.method ?? '');
      if (!this.pods.has(k)) return this.#status(res, 404, 'NotFound', `pods "${logOf[2]}" not found`);
      if (u.searchParams.get('container') !== 'worker') return this.#status(res, 400, 'BadRequest', `container ${u.searchParams.get('container')} is not valid for pod ${logOf[2]}`);
      const stamp = (l: string) => (u.searchParams.get('timestamps') === 'true' ? `${new Date().toISOString().replace('Z', '123456Z')} ${l}\n` : `${l}\n`);
      res.writeHead(200, { 'content-type': 'text/plain' });
      const tail = Number(u.searchParams.get('tailLines') ?? Infinity);
      for (const l of (this.podLogs.get(k) ?? []).slice(-tail)) res.write(stamp(l));
      if (u.searchParams.get('follow') !== 'true') return void res.end();
      const f = (l: string) => res.write(stamp(l));
      if (!this.#logFollowers.has(k)) this.#logFollowers.set(k, new Set());
      this.#logFollowers.get(k)!.add(f);
      req.socket.once('close', () => this.#logFollowers.get(k)?.delete(f));
      return;
    }
    const core = /^\/api\/v1\/namespaces\/([a-z0-9-]+)\/(configmaps|services|secrets|pods)(?:\/([a-z0-9-]+))?$/.exec(u.pathname);
    const apps = /^\/apis\/apps\/v1\/namespaces\/([a-z0-9-]+)\/(statefulsets)(?:\/([a-z0-9-]+)(\/scale)?)?$/.exec(u.pathname);
    const keda = /^\/apis\/keda\.sh\/v1alpha1\/namespaces\/([a-z0-9-]+)\/(scaledobjects)(?:\/([a-z0-9-]+))?$/.exec(u.pathname);
    const m = core ?? apps ?? keda;
    if (!m) return this.#status(res, 404, 'NotFound', `no route ${u.pathname}`);
    const [, ns = '', resource = '', name, scale] = m;

    if (req.method === 'POST' || req.method === 'PUT') {
      if (!entry.contentType?.startsWith('application/json')) return this.#status(res, 415, 'UnsupportedMediaType', `content-type ${entry.contentType}`);
      try {
        entry.body = JSON.parse(raw) as Obj;
      } catch {
        return this.#status(res, 400, 'BadRequest', 'body is not JSON');
      }
      const body = entry.body;
      const want = scale ? { apiVersion: 'autoscaling/v1', kind: 'Scale' } : KINDS[resource];
      if (!want || body.apiVersion !== want.apiVersion || body.kind !== want.kind) return this.#status(res, 400, 'BadRequest', `expected ${want?.kind}, got ${body.kind}`);
      const problems = manifestProblems(body);
      if (problems.length > 0) return this.#status(res, 422, 'Invalid', problems.join('; '));
      if (body.metadata?.namespace !== undefined && body.metadata.namespace !== ns) return this.#status(res, 400, 'BadRequest', 'namespace of body and URL differ');
      if (req.method === 'PUT' && body.metadata?.name !== name) return this.#status(res, 400, 'BadRequest', 'name of body and URL differ');
      this.beforeWrite?.(entry);
    }

    if (resource === 'pods') {
      if (req.method !== 'GET' || name) return this.#status(res, 405, 'MethodNotAllowed', 'pods are read-only here');
      const sel = (u.searchParams.get('labelSelector') ?? '').split(',').filter(Boolean).map((s) => s.split('='));
      const items = [...this.pods.values()].filter((p) => p.metadata.namespace === ns && sel.every(([k, v]) => p.metadata.labels[k ?? ''] === v));
      return this.#send(res, 200, { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: String(this.#rv) }, items: items.map(({ metadata: { ownerName: _o, ...md }, ...p }) => ({ ...p, metadata: md })) });
    }

    const key = `${resource}/${ns}/${name}`;
    const cur = name ? this.store.get(key) : undefined;
    const notFound = () => this.#status(res, 404, 'NotFound', `${resource} "${name}" not found`);

    if (scale) {
      if (!cur) return notFound();
      const asScale = () => ({ apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name, namespace: ns, resourceVersion: cur.metadata.resourceVersion }, spec: { replicas: cur.spec.replicas }, status: { replicas: cur.status?.replicas ?? 0, selector: `sluice.dev/function=${name}` } });
      if (req.method === 'GET') return this.#send(res, 200, asScale());
      if (req.method !== 'PUT') return this.#status(res, 405, 'MethodNotAllowed', req.method ?? '');
      const rv = entry.body?.metadata?.resourceVersion;
      if (rv !== undefined && rv !== cur.metadata.resourceVersion) return this.#status(res, 409, 'Conflict', 'the object has been modified');
      cur.spec.replicas = entry.body?.spec?.replicas;
      cur.metadata.resourceVersion = String(++this.#rv);
      this.#reconcile(ns, cur);
      return this.#send(res, 200, asScale());
    }

    switch (req.method) {
      case 'GET':
        return cur ? this.#send(res, 200, cur) : notFound();
      case 'POST': {
        const body = entry.body as Obj;
        const k = `${resource}/${ns}/${body.metadata.name}`;
        if (this.store.has(k)) return this.#status(res, 409, 'AlreadyExists', `${resource} "${body.metadata.name}" already exists`);
        if (body.metadata.resourceVersion !== undefined) return this.#status(res, 400, 'BadRequest', 'resourceVersion should not be set on objects to be created');
        const obj = this.#stored(body, ns, 1);
        this.store.set(k, obj);
        if (resource === 'statefulsets') this.#reconcile(ns, obj);
        return this.#send(res, 201, obj);
      }
      case 'PUT': {
        if (!cur) return notFound();
        const body = entry.body as Obj;
        if (body.metadata.resourceVersion === undefined) return this.#status(res, 422, 'Invalid', 'metadata.resourceVersion: Invalid value: 0x0: must be specified for an update');
        if (body.metadata.resourceVersion !== cur.metadata.resourceVersion) return this.#status(res, 409, 'Conflict', `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
        if (resource === 'statefulsets' && JSON.stringify(body.spec.selector) !== JSON.stringify(cur.spec.selector)) return this.#status(res, 422, 'Invalid', 'spec.selector is immutable');
        const changed = JSON.stringify(body.spec) !== JSON.stringify(cur.spec);
        const obj = this.#stored(body, ns, cur.metadata.generation + (changed ? 1 : 0), cur.metadata.uid);
        this.store.set(key, obj);
        if (resource === 'statefulsets') this.#reconcile(ns, obj);
        return this.#send(res, 200, obj);
      }
      case 'DELETE':
        if (!cur) return notFound();
        this.store.delete(key);
        if (resource === 'statefulsets') for (const [k, p] of this.pods) if (p.metadata.ownerName === name) this.pods.delete(k);
        return this.#send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success' });
      default:
        return this.#status(res, 405, 'MethodNotAllowed', req.method ?? '');
    }
  }

  #stored(body: Obj, ns: string, generation: number, uid = `uid-${this.#rv}`): Obj {
    const obj: Obj = structuredClone(body);
    obj.metadata = { ...obj.metadata, namespace: ns, uid, generation, resourceVersion: String(++this.#rv), creationTimestamp: '2025-01-01T00:00:00Z' };
    if (obj.kind === 'Secret' && obj.stringData) {
      obj.data = Object.fromEntries(Object.entries(obj.stringData as Record<string, string>).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
      delete obj.stringData;
    }
    return obj;
  }
}

const SPEC = `apiVersion: sluice.dev/v1
kind: Function
metadata:
  name: scan
spec:
  handler: ./index.ts
  triggers:
    - object: {bucket: uploads}
  batch: {maxRecords: 100}
`;
const NS = 'sluice-test';
const TOKEN = 'test-token-0123';
// client-node speaks plain HTTP only with skipTLSVerify: the fake server is loopback HTTP.

describe('kubernetes driver', () => {
  let api: FakeKubeApi;
  let driver: KubernetesDriver;
  beforeEach(async () => {
    api = await FakeKubeApi.start(TOKEN);
    driver = new KubernetesDriver({ server: api.url, token: TOKEN, namespace: NS, skipTlsVerify: true });
  });
  afterEach(async () => {
    await driver.close();
    await api.close();
  });

  it('kubernetes - apply creates the ConfigMap, Service and StatefulSet (checked requests, valid bodies)', async () => {
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    const writes = api.writes().filter((r) => r.method === 'POST');
    expect(writes.map((r) => r.path)).toEqual([`/api/v1/namespaces/${NS}/configmaps`, `/api/v1/namespaces/${NS}/services`, `/apis/apps/v1/namespaces/${NS}/statefulsets`]);
    for (const w of writes) {
      expect(w.contentType).toMatch(/^application\/json/);
      expect(w.query.get('fieldManager')).toBe('sluice-controller');
      expect(manifestProblems(w.body)).toEqual([]);
    }
    const cm = api.get('configmaps', NS, 'scan');
    expect(JSON.parse(cm?.data['worker.json']).module).toBe('/app/functions/scan/index.ts');
    expect(api.get('services', NS, 'scan')?.spec.clusterIP).toBe('None');
    const sts = api.get('statefulsets', NS, 'scan');
    expect(sts?.spec).toMatchObject({ replicas: 1, podManagementPolicy: 'Parallel', serviceName: 'scan' });
    expect(api.pods.size).toBe(1);
  });

  it('kubernetes - apply again replaces each object with the resourceVersion it read, keeping the replica count', async () => {
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    await driver.scale('scan', 3);
    const before = Object.fromEntries(['configmaps', 'services', 'statefulsets'].map((r) => [r, api.get(r, NS, 'scan')?.metadata.resourceVersion]));
    const hashBefore = api.get('statefulsets', NS, 'scan')?.spec.template.metadata.annotations['sluice.dev/config-hash'];
    api.requests.length = 0;
    await driver.apply(loadFunctionSpec(SPEC.replace('maxRecords: 100', 'maxRecords: 200')), '/app/functions/scan');
    const puts = api.requests.filter((r) => r.method === 'PUT');
    expect(puts.map((r) => r.path)).toEqual([`/api/v1/namespaces/${NS}/configmaps/scan`, `/api/v1/namespaces/${NS}/services/scan`, `/apis/apps/v1/namespaces/${NS}/statefulsets/scan`]);
    expect(puts.map((r) => r.body?.metadata.resourceVersion)).toEqual([before.configmaps, before.services, before.statefulsets]);
    expect(api.requests.filter((r) => r.method === 'POST')).toEqual([]);
    const sts = api.get('statefulsets', NS, 'scan');
    expect(sts?.spec.replicas).toBe(3);
    expect(sts?.spec.template.metadata.annotations['sluice.dev/config-hash']).not.toBe(hashBefore);
    expect(JSON.parse(api.get('configmaps', NS, 'scan')?.data['worker.json']).batch.maxRecords).toBe(200);
  });

  it('kubernetes - scale goes through the StatefulSet scale subresource with a Scale body', async () => {
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    api.requests.length = 0;
    await driver.scale('scan', 4);
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`PUT /apis/apps/v1/namespaces/${NS}/statefulsets/scan/scale`]);
    const body = api.requests[0]?.body;
    expect(body).toMatchObject({ apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'scan', namespace: NS }, spec: { replicas: 4 } });
    expect(api.get('statefulsets', NS, 'scan')?.spec.replicas).toBe(4);
    expect(api.pods.size).toBe(4);
    await driver.scale('scan', 0);
    expect(api.pods.size).toBe(0);
    await expect(driver.scale('scan', -1)).rejects.toMatchObject({ code: 'SLUICE_INVALID_ARGUMENT' });
    await expect(driver.scale('nope', 2)).rejects.toMatchObject({ code: 'SLUICE_KUBERNETES', message: expect.stringContaining(`scale statefulset ${NS}/nope failed: HTTP 404 NotFound`) });
  });

  it('kubernetes - status reports desired and ready replicas and each pod by ordinal', async () => {
    expect(await driver.status('scan')).toBeUndefined();
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    await driver.scale('scan', 3);
    const pod1 = api.pods.get(`${NS}/scan-1`);
    if (pod1) {
      pod1.status.conditions[0].status = 'False';
      pod1.status.containerStatuses[0].restartCount = 2;
    }
    api.get('statefulsets', NS, 'scan')!.status.readyReplicas = 2;
    const s = await driver.status('scan');
    expect(s).toEqual({
      desired: 3,
      ready: 2,
      replicas: [
        { ordinal: 0, id: 'scan-0', ready: true, restarts: 0 },
        { ordinal: 1, id: 'scan-1', ready: false, restarts: 2 },
        { ordinal: 2, id: 'scan-2', ready: true, restarts: 0 },
      ],
    });
    const list = api.requests.find((r) => r.path === `/api/v1/namespaces/${NS}/pods`);
    expect(list?.query.get('labelSelector')).toBe('sluice.dev/function=scan');
  });

  it('kubernetes - logs reads the worker pods through the API; -f follows new lines until aborted', async () => {
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    await driver.scale('scan', 2);
    api.appendLog(NS, 'scan-0', JSON.stringify({ level: 30, time: Date.parse('2026-01-01T00:00:01Z'), msg: 'worker state', to: 'running' }));
    api.appendLog(NS, 'scan-1', 'plain output of a handler');
    const all: LogLine[] = [];
    for await (const l of driver.streamLogs('scan', { follow: false })) all.push(l);
    expect(all.map((l) => [l.ordinal, l.level, l.message]).sort()).toEqual([
      [0, 'info', 'worker state'],
      [1, 'output', 'plain output of a handler'],
    ]);
    expect(all.find((l) => l.ordinal === 0)).toMatchObject({ at: '2026-01-01T00:00:01.000Z', fields: { to: 'running' } });
    const logReq = api.requests.find((r) => r.path === `/api/v1/namespaces/${NS}/pods/scan-0/log`);
    expect(logReq?.query.get('container')).toBe('worker');

    // Follow: the existing lines, then a new one, then abort ends the iteration.
    const ac = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const l of driver.streamLogs('scan', { follow: true, signal: ac.signal })) {
        seen.push(l.message);
        if (l.message === 'later line') ac.abort();
      }
    })();
    await vi.waitFor(() => expect(seen).toHaveLength(2), { timeout: 10_000 });
    api.appendLog(NS, 'scan-1', JSON.stringify({ level: 50, msg: 'later line' }));
    await done;
    expect(seen).toContain('later line');
    expect(api.requests.filter((r) => r.path.endsWith('/log') && r.query.get('follow') === 'true')).toHaveLength(2);
  });

  it('kubernetes - remove deletes the workload; removing it again is false', async () => {
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    expect(await driver.remove('scan')).toBe(true);
    expect(api.store.size).toBe(0);
    expect(api.pods.size).toBe(0);
    const deletes = api.requests.filter((r) => r.method === 'DELETE').map((r) => r.path);
    expect(deletes).toContain(`/apis/apps/v1/namespaces/${NS}/statefulsets/scan`);
    expect(await driver.remove('scan')).toBe(false);
    expect(await driver.status('scan')).toBeUndefined();
  });

  it('kubernetes - a refused token is SLUICE_KUBERNETES naming the resource, and the token appears nowhere in the error', async () => {
    const bad = new KubernetesDriver({ server: api.url, token: 'wrong-token-xyz', namespace: NS, skipTlsVerify: true });
    const err = await bad.apply(loadFunctionSpec(SPEC), '/app/functions/scan').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SLUICE_KUBERNETES', message: `kubernetes: get statefulset ${NS}/scan failed: HTTP 401 Unauthorized`, details: { status: 401 } });
    expect(JSON.stringify(err) + String((err as Error).stack)).not.toContain('wrong-token-xyz');
    expect(api.requests.at(-1)?.path).toBe(`/apis/apps/v1/namespaces/${NS}/statefulsets/scan`);
    expect(api.store.size).toBe(0);
  });

  it('kubernetes - a concurrent write between GET and PUT is a 409 surfaced as SLUICE_KUBERNETES', async () => {
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    // Someone else (kubectl, another controller) updates the StatefulSet after the driver read it.
    api.beforeWrite = (r) => {
      if (r.method === 'PUT' && r.path.endsWith('/statefulsets/scan')) {
        const sts = api.get('statefulsets', NS, 'scan');
        if (sts) sts.metadata.resourceVersion = `${sts.metadata.resourceVersion}0`;
      }
    };
    const err = await driver.apply(loadFunctionSpec(SPEC.replace('maxRecords: 100', 'maxRecords: 7')), '/app/functions/scan').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SLUICE_KUBERNETES', details: { status: 409, reason: 'Conflict' } });
    expect((err as Error).message).toContain(`replace statefulset ${NS}/scan failed: HTTP 409 Conflict: Operation cannot be fulfilled`);
  });

  it('kubernetes - a nats token goes into a Secret mounted as worker.json; the ConfigMap holds none', async () => {
    const spec = loadFunctionSpec(
      SPEC.replace('  batch:', '  backend: {kind: nats, url: "nats://nats:4222", tokenSecret: tok}\n  secrets: [{name: tok, fromEnv: NATS_TOKEN}]\n  batch:'),
    );
    const d = new KubernetesDriver({ server: api.url, token: TOKEN, namespace: NS, skipTlsVerify: true, env: { NATS_TOKEN: 'nats-t0ken' } });
    await d.apply(spec, '/app/functions/scan');
    const secret = api.get('secrets', NS, 'scan-worker');
    expect(JSON.parse(Buffer.from(secret?.data['worker.json'], 'base64').toString()).backend.token).toBe('nats-t0ken');
    expect(JSON.stringify(api.get('configmaps', NS, 'scan'))).not.toContain('nats-t0ken');
    expect(api.get('statefulsets', NS, 'scan')?.spec.template.spec.volumes[0]).toEqual({ name: 'config', secret: { secretName: 'scan-worker' } });
    // Back to a spec without a credential: the stale Secret goes.
    await d.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    expect(api.get('secrets', NS, 'scan-worker')).toBeUndefined();
  });

  it('kubernetes - a KEDA spec gets its ScaledObject: created after the StatefulSet, replaced on a new spec, deleted when the spec drops KEDA and on remove', async () => {
    const kedaSpec = (max: number) => loadFunctionSpec(SPEC.replace('  batch:', `  scaling: {minReplicas: 0, maxReplicas: ${max}, autoscaler: keda}\n  batch:`));
    const path = `/apis/keda.sh/v1alpha1/namespaces/${NS}/scaledobjects`;
    await driver.apply(kedaSpec(3), '/app/functions/scan');
    const posts = api.writes().filter((r) => r.method === 'POST');
    expect(posts.map((r) => r.path).at(-1)).toBe(path);
    expect(posts.at(-2)?.path).toBe(`/apis/apps/v1/namespaces/${NS}/statefulsets`);
    expect(posts.at(-1)?.query.get('fieldManager')).toBe('sluice-controller');
    const so = api.get('scaledobjects', NS, 'scan');
    expect(so?.spec).toMatchObject({ scaleTargetRef: { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'scan' }, minReplicaCount: 0, maxReplicaCount: 3 });
    expect(so?.spec.triggers[0]).toMatchObject({ type: 'external', metadata: { function: 'scan' } });

    // A new spec: replaced with the resourceVersion read.
    const rv = so?.metadata.resourceVersion;
    api.requests.length = 0;
    await driver.apply(kedaSpec(5), '/app/functions/scan');
    const put = api.requests.find((r) => r.method === 'PUT' && r.path === `${path}/scan`);
    expect(put?.body?.metadata.resourceVersion).toBe(rv);
    expect(api.get('scaledobjects', NS, 'scan')?.spec.maxReplicaCount).toBe(5);

    // The spec drops KEDA: the ScaledObject goes (the controller scales the StatefulSet again).
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    expect(api.get('scaledobjects', NS, 'scan')).toBeUndefined();
    expect(api.get('statefulsets', NS, 'scan')).toBeDefined();

    // Back to KEDA, then remove: the ScaledObject is deleted before the StatefulSet.
    await driver.apply(kedaSpec(2), '/app/functions/scan');
    expect(api.get('scaledobjects', NS, 'scan')).toBeDefined();
    api.requests.length = 0;
    expect(await driver.remove('scan')).toBe(true);
    const deletes = api.requests.filter((r) => r.method === 'DELETE').map((r) => r.path);
    expect(deletes.slice(0, 2)).toEqual([`${path}/scan`, `/apis/apps/v1/namespaces/${NS}/statefulsets/scan`]);
    expect(api.store.size).toBe(0);
  });

  it('kubernetes - a spec without KEDA creates no ScaledObject; a cluster that refuses the resource (403) does not fail its apply', async () => {
    api.beforeRead = (r) => (r.path.includes('/keda.sh/') ? 403 : undefined);
    await driver.apply(loadFunctionSpec(SPEC), '/app/functions/scan');
    expect([...api.store.keys()].some((k) => k.startsWith('scaledobjects/'))).toBe(false);
    expect(api.requests.some((r) => r.method === 'DELETE' && r.path.includes('/keda.sh/'))).toBe(true);
    // A KEDA spec on that cluster fails loudly, naming the resource.
    const err = await driver.apply(loadFunctionSpec(SPEC.replace('  batch:', '  scaling: {autoscaler: keda}\n  batch:')), '/app/functions/scan').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SLUICE_KUBERNETES', message: expect.stringContaining(`scaledobject ${NS}/scan failed: HTTP 403`) });
  });

  it('kubernetes - the fake API server itself refuses a bad token, a wrong content type and a body with an unknown field', async () => {
    const sts = { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'x' }, spec: { serviceName: 'x', selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } } };
    const post = (body: unknown, headers: Record<string, string>) => fetch(`${api.url}/apis/apps/v1/namespaces/${NS}/statefulsets`, { method: 'POST', headers, body: JSON.stringify(body) });
    const json = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` };
    expect((await post(sts, { ...json, authorization: 'Bearer nope' })).status).toBe(401);
    expect((await post(sts, { ...json, 'content-type': 'text/plain' })).status).toBe(415);
    const misspelled = await post({ ...sts, spec: { ...sts.spec, replicaz: 2 } }, json);
    expect(misspelled.status).toBe(422);
    expect(((await misspelled.json()) as { message: string }).message).toBe('spec.replicaz: unknown field');
    expect((await post(sts, json)).status).toBe(201);
  });

  it('kubernetes - an unreachable API server is SLUICE_KUBERNETES; a closed driver refuses work', async () => {
    const url = api.url;
    await api.close();
    const d = new KubernetesDriver({ server: url, token: TOKEN, namespace: NS, skipTlsVerify: true });
    await expect(d.status('scan')).rejects.toMatchObject({ code: 'SLUICE_KUBERNETES', message: expect.stringMatching(new RegExp(`get statefulset ${NS}/scan failed: .*ECONNREFUSED`)) });
    await d.close();
    await expect(d.scale('scan', 1)).rejects.toMatchObject({ code: 'SLUICE_BACKEND_UNAVAILABLE' });
    api = await FakeKubeApi.start(TOKEN); // for afterEach
  });
});
