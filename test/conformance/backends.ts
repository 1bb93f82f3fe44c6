/**
 * The backend factories the conformance suite runs against. Each suite file calls `forEachBackend`,
 * which registers its tests once per backend with the backend's name in every test name; swapping the
 * factory is the only difference between the runs.
 *
 * The NATS run starts its own nats-server (random loopback port, temp store). It never skips: when the
 * server cannot start, the suite fails (CI installs nats-server in .ci/run).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { Backend } from '../../bindings/types.ts';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.ts';

/** What a suite gets for one backend. */
export interface BackendContext {
  /** 'local' or 'nats' */
  readonly name: string;
  /** The backend opened for the suite (shared by its tests). */
  backend: Backend;
  /** Opens another, independent client of the same store (another connection / environment handle). */
  openAnother(): Promise<Backend>;
  /** How a child process opens the same store: passed to test/support/child-backend.ts. */
  childSpec(): { kind: 'local'; dir: string } | { kind: 'nats'; url: string };
  /** A fresh unique name for a bucket, table or stream. */
  uid(prefix: string): string;
}

interface Factory {
  name: string;
  setup(): Promise<{ open(): Promise<Backend>; spec(): BackendContext extends { childSpec(): infer S } ? S : never; teardown(): Promise<void> }>;
}

const factories: Factory[] = [
  {
    name: 'local',
    async setup() {
      const dir = await mkdtemp(join(tmpdir(), 'sluice-local-'));
      return {
        open: () => LocalBackend.open({ dir }),
        spec: () => ({ kind: 'local' as const, dir }),
        teardown: () => rm(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'nats',
    async setup() {
      let server: NatsServerHandle;
      try {
        server = await startNatsServer();
      } catch (cause) {
        // Fail, never skip: a missing server is a broken environment, not a reason to pass.
        throw new Error(`the nats conformance run needs nats-server: ${(cause as Error).message}`, { cause });
      }
      return {
        open: () => NatsBackend.open({ servers: server.url }),
        spec: () => ({ kind: 'nats' as const, url: server.url }),
        teardown: () => server.stop(),
      };
    },
  },
];

let counter = 0;

/** Registers `suite` once per backend inside `describe('<kind>/<backend>')`. */
export function forEachBackend(kind: string, suite: (ctx: BackendContext) => void): void {
  const only = process.env.SLUICE_BACKENDS?.split(',');
  for (const f of factories) {
    if (only && !only.includes(f.name)) continue;
    describe(`${kind}/${f.name}`, () => {
      const opened: Backend[] = [];
      let teardown: (() => Promise<void>) | undefined;
      let open: (() => Promise<Backend>) | undefined;
      let spec: (() => ReturnType<BackendContext['childSpec']>) | undefined;
      const ctx: BackendContext = {
        name: f.name,
        backend: undefined as unknown as Backend,
        async openAnother() {
          const b = await open!();
          opened.push(b);
          return b;
        },
        childSpec: () => spec!(),
        uid: (p) => `${p}-${process.pid.toString(36)}-${(counter++).toString(36)}-${Math.random().toString(36).slice(2, 6)}`,
      };
      beforeAll(async () => {
        const s = await f.setup();
        teardown = s.teardown;
        open = s.open;
        spec = s.spec as typeof spec;
        ctx.backend = await s.open();
        opened.push(ctx.backend);
      }, 60_000);
      afterAll(async () => {
        for (const b of opened) await b.close().catch(() => undefined);
        await teardown?.();
      }, 60_000);
      suite(ctx);
    });
  }
}

/** Test name helper: `name('kv', ctx, 'update with stale revision fails')` → `kv/nats - update …`. */
export function tn(kind: string, ctx: BackendContext | string, what: string): string {
  return `${kind}/${typeof ctx === 'string' ? ctx : ctx.name} - ${what}`;
}
