/**
 * Per-function NATS users (controller/nats-users.ts): a real nats-server whose config holds an admin
 * and the user minted for one function; a real worker process runs with that user only and handles
 * its uploads (the permissions suffice), while a handler opening its own connection with the same
 * credentials is refused by the server for a bucket the spec does not declare, and for writes to a
 * bucket declared read-only.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { BindingError } from '../../bindings/errors.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { mintFunctionUser, renderAuthorization } from '../../controller/nats-users.ts';
import { openStateTable, readCounters, type WorkerOptions } from '../../runtime/index.ts';
import { startNatsServer } from '../support/nats-server.ts';
import { until } from '../support/poll.ts';

const workerMain = fileURLToPath(new URL('../../runtime/worker-main.ts', import.meta.url));
const fixture = fileURLToPath(new URL('../fixtures/functions/nats-probe.ts', import.meta.url));

it('nats/users - the server refuses a function user an undeclared bucket and writes to a read-only one; its worker runs with exactly those permissions', async () => {
  const work = mkdtempSync(join(tmpdir(), 'sluice-natsusers-'));
  const fn = 'probe-fn';
  const options: WorkerOptions = {
    function: fn,
    module: fixture,
    trigger: { type: 'object', bucket: 'trig' },
    backend: { kind: 'nats', url: '' },
    threads: 0,
    batch: { maxWait: 5 },
    bindings: [{ name: 'declared', kind: 'object', resource: 'declared', access: 'read' }],
  };
  const user = mintFunctionUser(options);
  const admin = { user: 'admin', password: `admin-${Math.random().toString(36).slice(2)}` };
  const conf = join(work, 'nats.conf');
  writeFileSync(conf, renderAuthorization([admin, user]), { mode: 0o600 });
  const server = await startNatsServer(['-c', conf]);
  const adminBackend = await NatsBackend.open({ servers: server.url, user: admin.user, pass: admin.password });
  let worker: ReturnType<typeof spawn> | undefined;
  try {
    for (const b of ['trig', 'declared', 'secret']) await adminBackend.createBucket(b, { shards: 2 });
    await (await adminBackend.objects('declared')).put('hello', 'public');
    await (await adminBackend.objects('secret')).put('hello', 'secret');

    // Directly: the function's user reads its declared bucket, and the server refuses the other one.
    const fnBackend = await NatsBackend.open({ servers: server.url, user: user.user, pass: user.password });
    try {
      expect(new TextDecoder().decode((await (await fnBackend.objects('declared')).get('hello')).body)).toBe('public');
      const refused = await (async () => (await fnBackend.objects('secret')).get('hello'))().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(BindingError);
      expect((refused as BindingError).code, (refused as Error).message).toBe('SLUICE_ACCESS_DENIED');
    } finally {
      await fnBackend.close();
    }

    // A worker with that identity only; its handler tries the same with its own connection.
    const cfg = join(work, 'worker.json');
    writeFileSync(cfg, JSON.stringify({ ...options, backend: { kind: 'nats', url: server.url, user: user.user } }), { mode: 0o600 });
    let err = '';
    worker = spawn(process.execPath, ['--import', 'tsx', workerMain, cfg], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, SLUICE_BACKEND_PASSWORD: user.password, PROBE_NATS_URL: server.url, PROBE_NATS_USER: user.user, PROBE_NATS_PASS: user.password },
    });
    worker.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-6000)));
    const trig = await adminBackend.objects('trig');
    await trig.put('probe-1', 'x');
    await Promise.all(Array.from({ length: 20 }, (_, i) => trig.put(`a-${i}`, 'x')));
    await until('the probe ran', async () => (await trig.getAttrs('probe-1')).attrs.undeclared !== undefined, 60_000).catch((e: Error) => {
      throw new Error(`${e.message}; worker stderr: ${err}`);
    });
    const a = (await trig.getAttrs('probe-1')).attrs;
    expect({ declared: a.declared, undeclared: a.undeclared, writeReadOnly: a.writeReadOnly }).toEqual({ declared: 'ok', undeclared: 'SLUICE_ACCESS_DENIED', writeReadOnly: 'SLUICE_ACCESS_DENIED' });
    const state = await openStateTable(adminBackend);
    await until('21 handled', async () => (await readCounters(state, fn, 2)).seen === 21, 60_000);
    for (let i = 0; i < 20; i++) expect((await trig.getAttrs(`a-${i}`)).attrs.n).toBe(1);
    expect(err).not.toContain('Permissions Violation');
  } finally {
    worker?.kill('SIGKILL');
    await adminBackend.close();
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
}, 120_000);
