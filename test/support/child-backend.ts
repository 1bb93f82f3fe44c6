/**
 * Opens a backend in a child process from a spec passed on the command line, so process-level tests
 * (SIGKILL, concurrent writers) run real separate processes against the same store.
 */
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { Backend } from '../../bindings/types.ts';

/** How a child process reaches the store under test. */
export type ChildSpec = { kind: 'local'; dir: string } | { kind: 'nats'; url: string };

export async function openChildBackend(spec: ChildSpec): Promise<Backend> {
  return spec.kind === 'local' ? LocalBackend.open({ dir: spec.dir }) : NatsBackend.open({ servers: spec.url });
}
