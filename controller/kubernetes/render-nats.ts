/**
 * A NATS JetStream cluster for sluice to run on (`sluice render k8s --nats-cluster 3`): a ConfigMap with
 * nats.conf, a headless Service (stable pod DNS names for the cluster routes and the clients), and a
 * StatefulSet of N nats-server pods, each with its own PersistentVolumeClaim for the JetStream store.
 *
 * Why a StatefulSet and a headless Service: the routes of a NATS cluster are the other servers' addresses,
 * fixed in the config; pod `sluice-nats-<i>.sluice-nats.<ns>.svc` keeps its name and its volume across
 * restarts and reschedules, which is what JetStream's RAFT groups need (a server coming back with its
 * store catches up instead of rejoining empty). `publishNotReadyAddresses` lets the routes resolve before
 * a pod is ready — the servers must meet to elect a meta leader before any of them is "ready".
 *
 * Not rendered: authorization (the per-function users of controller/nats-users.ts are a config include
 * the operator adds), TLS, and a PodDisruptionBudget. The pods run under Pod Security "restricted" like
 * every sluice pod (nats-server needs no root: it writes only to its store volume).
 */
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IService } from 'kubernetes-models/v1/Service';
import { SluiceError } from '../../bindings/errors.ts';
import { restrictedContainerSecurity, restrictedPodSecurity, type RenderOptions } from './render-common.ts';

/** Name of the NATS ConfigMap, Service and StatefulSet. */
export const NatsName = 'sluice-nats';
/** Ports of a nats-server pod: clients, cluster routes, HTTP monitoring (health probes). */
export const NatsPorts = { client: 4222, cluster: 6222, monitor: 8222 } as const;
/** Largest cluster rendered: JetStream streams have at most 5 replicas, and RAFT wants an odd count. */
const MAX_NODES = 5;
const StoreDir = '/data';

function checkNodes(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODES || (n > 1 && n % 2 === 0))
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `natsCluster must be 1, 3 or 5 (an odd number of servers up to ${MAX_NODES}, for a JetStream quorum), got ${JSON.stringify(n)}`);
}

/** DNS name of NATS pod `i` through the headless Service. */
function podHost(i: number, namespace: string): string {
  return `${NatsName}-${i}.${NatsName}.${namespace}.svc`;
}

/** The client URLs of an `n`-node rendered cluster, every pod by name (what the backend URL list holds). */
export function natsClusterUrls(n: number, namespace: string): string[] {
  checkNodes(n);
  return Array.from({ length: n }, (_, i) => `nats://${podHost(i, namespace)}:${NatsPorts.client}`);
}

/** nats.conf of every pod; `$SERVER_NAME` is the pod name, from the environment (nats.conf variables). */
function natsConf(n: number, namespace: string): string {
  const lines = [
    `port: ${NatsPorts.client}`,
    `http_port: ${NatsPorts.monitor}`,
    'server_name: $SERVER_NAME',
    // Lets in-flight work finish and clients move to the other servers on SIGTERM.
    'lame_duck_duration: 30s',
    'lame_duck_grace_period: 10s',
    'jetstream {',
    `  store_dir: ${StoreDir}`,
    '}',
  ];
  if (n > 1) {
    lines.push('cluster {', `  name: ${NatsName}`, `  port: ${NatsPorts.cluster}`, '  routes: [');
    for (let i = 0; i < n; i++) lines.push(`    nats://${podHost(i, namespace)}:${NatsPorts.cluster}`);
    // The other pods may not resolve yet while the StatefulSet starts them: keep trying.
    lines.push('  ]', '  connect_retries: 120', '}');
  }
  return `${lines.join('\n')}\n`;
}

/** The NATS cluster's objects in apply order: ConfigMap, headless Service, StatefulSet. */
export function renderNatsCluster(n: number, options: RenderOptions = {}): [IConfigMap, IService, IStatefulSet] {
  checkNodes(n);
  const namespace = options.namespace ?? 'default';
  const labels = { 'app.kubernetes.io/name': NatsName, 'app.kubernetes.io/component': 'nats', 'app.kubernetes.io/part-of': 'sluice' };
  const selector = { 'app.kubernetes.io/name': NatsName };
  const metadata = { name: NatsName, namespace, labels };
  const health = (q: string) => ({ httpGet: { path: `/healthz?${q}`, port: 'monitor' } });
  return [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata, data: { 'nats.conf': natsConf(n, namespace) } },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata,
      spec: {
        clusterIP: 'None',
        publishNotReadyAddresses: true,
        selector,
        ports: [
          { name: 'client', port: NatsPorts.client, targetPort: 'client', protocol: 'TCP' },
          { name: 'cluster', port: NatsPorts.cluster, targetPort: 'cluster', protocol: 'TCP' },
          { name: 'monitor', port: NatsPorts.monitor, targetPort: 'monitor', protocol: 'TCP' },
        ],
      },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata,
      spec: {
        serviceName: NatsName,
        replicas: n,
        // All servers at once: they must meet to elect a JetStream meta leader before any is ready.
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: selector },
        template: {
          metadata: { labels },
          spec: {
            enableServiceLinks: false,
            securityContext: restrictedPodSecurity(),
            // Above lame_duck_duration + grace, so SIGTERM's lame-duck mode can finish.
            terminationGracePeriodSeconds: 60,
            containers: [
              {
                name: 'nats',
                image: options.natsImage ?? 'nats:2.10-alpine',
                imagePullPolicy: 'IfNotPresent',
                args: ['--config', '/etc/nats/nats.conf'],
                env: [{ name: 'SERVER_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
                ports: [
                  { name: 'client', containerPort: NatsPorts.client, protocol: 'TCP' },
                  { name: 'cluster', containerPort: NatsPorts.cluster, protocol: 'TCP' },
                  { name: 'monitor', containerPort: NatsPorts.monitor, protocol: 'TCP' },
                ],
                // As the NATS Helm chart: started once JetStream is up; ready once this server's streams caught up.
                startupProbe: { ...health('js-enabled-only=true'), periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 90 },
                livenessProbe: { ...health('js-enabled-only=true'), periodSeconds: 30, timeoutSeconds: 5, failureThreshold: 3 },
                readinessProbe: { ...health('js-server-only=true'), periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3 },
                resources: { requests: { cpu: '250m', memory: '256Mi' } },
                securityContext: restrictedContainerSecurity(),
                volumeMounts: [
                  { name: 'config', mountPath: '/etc/nats' },
                  { name: 'data', mountPath: StoreDir },
                ],
              },
            ],
            volumes: [{ name: 'config', configMap: { name: NatsName } }],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: 'data', labels },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: options.natsStorage ?? '10Gi' } } },
          },
        ],
      },
    },
  ];
}
