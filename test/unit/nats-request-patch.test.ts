/**
 * bindings/nats/nats-request-patch.ts against a real nats-server: with the patch, an answered request
 * builds no throwaway RequestError, and requests that are not answered still reject as before — no
 * responders, a timeout, a connection closed while waiting.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchNatsRequests } from '../../bindings/nats/nats-request-patch.ts';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.ts';

const require = createRequire(import.meta.url);
// The module nats-core's request.js reads `RequestError` from at call time (by file: not in its exports).
const errorsModule = require(join(dirname(require.resolve('@nats-io/nats-core/internal')), 'errors.js')) as { RequestError: new (...a: unknown[]) => Error };

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

/** Counts RequestErrors built while `fn` runs. */
async function countRequestErrors(fn: () => Promise<void>): Promise<number> {
  const Original = errorsModule.RequestError;
  let n = 0;
  errorsModule.RequestError = class extends Original {
    constructor(...a: unknown[]) {
      super(...a);
      n++;
    }
  };
  try {
    await fn();
  } finally {
    errorsModule.RequestError = Original;
  }
  return n;
}

describe('nats request patch', () => {
  it('answered requests build no RequestError; unanswered ones still reject (no responders, timeout, closed connection)', async () => {
    expect(patchNatsRequests()).toBe(true);
    const nc = await connect({ servers: server.url, noAsyncTraces: true });
    try {
      nc.subscribe('echo', { callback: (_e, m) => void m.respond(m.data) });
      nc.subscribe('never', { callback: () => undefined });
      await nc.flush();
      const built = await countRequestErrors(async () => {
        for (let i = 0; i < 200; i++) expect(new TextDecoder().decode((await nc.request('echo', `m${i}`, { timeout: 5000 })).data)).toBe(`m${i}`);
      });
      expect(built).toBe(0);
      await expect(nc.request('nobody-here', 'x', { timeout: 2000 })).rejects.toMatchObject({ name: 'RequestError' });
      await expect(nc.request('never', 'x', { timeout: 200 })).rejects.toMatchObject({ name: 'TimeoutError' });
      const pending = nc.request('never', 'x', { timeout: 10_000 }).then(() => 'answered', (e: Error) => e.name);
      await nc.close();
      expect(await pending).not.toBe('answered');
    } finally {
      if (!nc.isClosed()) await nc.close();
    }
  });
});
