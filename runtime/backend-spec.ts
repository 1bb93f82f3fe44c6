/** How a process or thread reaches a backend: plain data, passed across threads and processes. */
import { LocalBackend } from '../bindings/local/index.ts';
import { NatsBackend } from '../bindings/nats/index.ts';
import type { Backend } from '../bindings/types.ts';

/** The backend of a function: the embedded store in a directory, or a NATS JetStream server. */
export type BackendSpec =
  | { kind: 'local'; dir: string }
  | {
      kind: 'nats';
      /** One URL or several, comma-separated (a cluster): every one is used. */
      url: string;
      prefix?: string;
      token?: string;
      /** User/password authentication (e.g. the function's own NATS user, see controller/nats-users.ts). */
      user?: string;
      pass?: string;
      /** TLS / mTLS files of the NATS connection. */
      tls?: { caFile?: string; certFile?: string; keyFile?: string };
      /** JetStream replicas of created resources. @default 'auto' (3 on a cluster, else 1) */
      replicas?: number | 'auto';
    };

/** Opens the backend a spec names. */
export async function openBackend(spec: BackendSpec): Promise<Backend> {
  if (spec.kind === 'local') return LocalBackend.open({ dir: spec.dir });
  return NatsBackend.open({
    servers: spec.url,
    ...(spec.prefix !== undefined ? { prefix: spec.prefix } : {}),
    ...(spec.token !== undefined ? { token: spec.token } : {}),
    ...(spec.user !== undefined ? { user: spec.user } : {}),
    ...(spec.pass !== undefined ? { pass: spec.pass } : {}),
    ...(spec.tls !== undefined ? { tls: spec.tls } : {}),
    ...(spec.replicas !== undefined ? { replicas: spec.replicas } : {}),
  });
}
