/** How a process or thread reaches a backend: plain data, passed across threads and processes. */
import type { BodyStoreOptions } from '../bindings/body-store.ts';
import { LocalBackend } from '../bindings/local/index.ts';
import { NatsBackend } from '../bindings/nats/index.ts';
import type { Backend } from '../bindings/types.ts';

/**
 * The backend of a function: the embedded store in a directory, or a NATS JetStream server; either
 * optionally with `bodies`, an external S3-compatible store for object bodies (see bindings/body-store.ts).
 */
export type BackendSpec =
  | { kind: 'local'; dir: string; bodies?: BodyStoreOptions }
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
      bodies?: BodyStoreOptions;
    };

/** Opens the backend a spec names. */
export async function openBackend(spec: BackendSpec): Promise<Backend> {
  const bodies = spec.bodies !== undefined ? { bodies: spec.bodies } : {};
  if (spec.kind === 'local') return LocalBackend.open({ dir: spec.dir, ...bodies });
  return NatsBackend.open({
    servers: spec.url,
    ...(spec.prefix !== undefined ? { prefix: spec.prefix } : {}),
    ...(spec.token !== undefined ? { token: spec.token } : {}),
    ...bodies,
    ...(spec.user !== undefined ? { user: spec.user } : {}),
    ...(spec.pass !== undefined ? { pass: spec.pass } : {}),
    ...(spec.tls !== undefined ? { tls: spec.tls } : {}),
    ...(spec.replicas !== undefined ? { replicas: spec.replicas } : {}),
  });
}
