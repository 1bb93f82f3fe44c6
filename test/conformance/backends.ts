/**
 * The backend factories the conformance suite runs against. Each suite file calls `forEachBackend`,
 * which registers its tests once per backend with the backend's name in every test name; swapping the
 * factory is the only difference between the runs.
 *
 * The NATS run starts its own nats-server (random loopback port, temp store). It never skips: when the
 * server cannot start, the suite fails (CI installs nats-server in .ci/run).
 *
 * `local+s3` and `nats+s3` are the same backends with the `s3` body store against a real S3-protocol
 * server (s3rver in a child process) and `inlineMaxBytes: 0`, so every non-empty body travels through
 * S3. They run only for the suites named in their `kinds` (the object suites and `bodies`, the body
 * store's own suite), to keep CI time modest.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { BodyStoreOptions } from '../../bindings/body-store.ts';
import type { Backend } from '../../bindings/types.ts';
import type { ChildSpec } from '../support/child-backend.ts';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.ts';
import { S3rverCredentials, startS3rver, type S3rverHandle } from '../support/s3rver.ts';

/** What a suite gets for one backend. */
export interface BackendContext {
  /** 'local', 'nats', 'local+s3' or 'nats+s3' */
  readonly name: string;
  /** The backend opened for the suite (shared by its tests). */
  backend: Backend;
  /** Opens another, independent client of the same store (another connection / environment handle). */
  openAnother(): Promise<Backend>;
  /** How a child process opens the same store: passed to test/support/child-backend.ts. */
  childSpec(): ChildSpec;
  /** A fresh unique name for a bucket, table or stream. */
  uid(prefix: string): string;
}

interface Factory {
  name: string;
  /** Suites (the `kind` of forEachBackend) this backend runs for. @default every suite */
  kinds?: string[];
  setup(): Promise<{ open(): Promise<Backend>; spec(): BackendContext extends { childSpec(): infer S } ? S : never; teardown(): Promise<void> }>;
}

/** Starts s3rver with one bucket for bodies; fails (never skips) when it cannot start. */
async function startBodyStore(): Promise<{ server: S3rverHandle; bodies: BodyStoreOptions }> {
  let server: S3rverHandle;
  try {
    server = await startS3rver();
  } catch (cause) {
    throw new Error(`the s3 body store runs need s3rver: ${(cause as Error).message}`, { cause });
  }
  const bodies: BodyStoreOptions = {
    kind: 's3',
    endpoint: server.endpoint,
    bucket: 'sluice-bodies',
    accessKeyId: S3rverCredentials.accessKeyId,
    secretAccessKey: S3rverCredentials.secretAccessKey,
    inlineMaxBytes: 0,
    // The suites run the collector themselves.
    gcIntervalMs: 0,
  };
  const c = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3rverCredentials });
  try {
    await c.send(new CreateBucketCommand({ Bucket: bodies.bucket }));
  } finally {
    c.destroy();
  }
  return { server, bodies };
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
  {
    name: 'local+s3',
    kinds: ['object', 'bodies', 'buckets'],
    async setup() {
      const dir = await mkdtemp(join(tmpdir(), 'sluice-local-s3-'));
      const { server, bodies } = await startBodyStore();
      return {
        open: () => LocalBackend.open({ dir, bodies }),
        spec: () => ({ kind: 'local' as const, dir, bodies }),
        teardown: async () => {
          await server.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'nats+s3',
    kinds: ['object', 'bodies', 'buckets'],
    async setup() {
      let nats: NatsServerHandle;
      try {
        nats = await startNatsServer();
      } catch (cause) {
        throw new Error(`the nats conformance run needs nats-server: ${(cause as Error).message}`, { cause });
      }
      const { server, bodies } = await startBodyStore();
      return {
        open: () => NatsBackend.open({ servers: nats.url, bodies }),
        spec: () => ({ kind: 'nats' as const, url: nats.url, bodies }),
        teardown: async () => {
          await server.stop();
          await nats.stop();
        },
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
    // Suites about the external body store itself run only where there is one.
    if (f.kinds ? !f.kinds.includes(kind) : kind === 'bodies') continue;
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
