/**
 * Opens a backend in a child process from a spec passed on the command line, so process-level tests
 * (SIGKILL, concurrent writers) run real separate processes against the same store.
 */
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { BodyStoreOptions } from '../../bindings/body-store.ts';
import type { Backend } from '../../bindings/types.ts';

/** How a child process reaches the store under test (with the external body store, when the run has one). */
export type ChildSpec = { kind: 'local'; dir: string; bodies?: BodyStoreOptions } | { kind: 'nats'; url: string; bodies?: BodyStoreOptions };

export async function openChildBackend(spec: ChildSpec): Promise<Backend> {
  const bodies = spec.bodies !== undefined ? { bodies: spec.bodies } : {};
  return spec.kind === 'local' ? LocalBackend.open({ dir: spec.dir, ...bodies }) : NatsBackend.open({ servers: spec.url, ...bodies });
}
