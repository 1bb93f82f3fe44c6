/**
 * A local store closes after another writer was SIGKILLed at the one instant that leaves LMDB's lock
 * table behind its meta page: the meta page of the killed commit is written, the lock table's
 * transaction id not yet (LMDB sets it right after that write returns, and a SIGKILL during the commit's
 * synced meta write takes effect on its return). With lmdb-js's default `overlappingSync`, closing an
 * environment that wrote syncs it first, and when others committed since its own last commit that
 * sync loops until the lock table's id equals the newest meta page's — forever in that state: a CI run
 * of body-crash.test.ts hung there for 20 minutes at 100 % CPU (gdb: EnvWrap::closeEnv →
 * mdb_env_sync → mdb_env_pick_meta; lock table 21, meta pages 22 and 21). LocalStore opens without it.
 *
 * The state is made directly — a kill at that instant cannot be aimed: a child writes and keeps the
 * store open, this process commits twice more and then sets the lock table's id one behind its last
 * commit (lock file: uint32 magic, uint32 format, uint64 transaction id). The child's close must return
 * within seconds, and the reopened store holds every write.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';

const child = fileURLToPath(new URL('./lmdb-close-child.ts', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'sluice-lmdb-close-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const MDB_MAGIC = 0xbeefc0de;
const TXNID_OFFSET = 8;

/** Sets the lock table's last transaction id to `txn`, after checking it holds `expected`. */
function setLockTableTxn(dir: string, expected: number, txn: number): void {
  const fd = openSync(join(dir, 'sluice.mdb-lock'), 'r+');
  try {
    const head = Buffer.alloc(16);
    readSync(fd, head, 0, 16, 0);
    expect(head.readUInt32LE(0).toString(16), 'LMDB lock file magic').toBe(MDB_MAGIC.toString(16));
    expect(Number(head.readBigUInt64LE(TXNID_OFFSET)), 'lock table transaction id = last commit').toBe(expected);
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(BigInt(txn));
    writeSync(fd, v, 0, 8, TXNID_OFFSET);
  } finally {
    closeSync(fd);
  }
}

it('local: a store closes when a killed writer left the lock table one transaction behind the meta page, and keeps every write', async () => {
  const dir = join(work, 'data');
  const ch = spawn(process.execPath, ['--import', 'tsx', child, dir], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  ch.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  ch.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((r) => ch.once('exit', (code) => r(code)));
  try {
    // Bounded: 30 s for the child to write, 20 s for its close.
    const until = async (text: string, ms: number) => {
      const end = Date.now() + ms;
      while (!out.includes(text)) {
        if (Date.now() > end || ch.exitCode !== null) return false;
        await new Promise((r) => setTimeout(r, 20));
      }
      return true;
    };
    expect(await until('wrote\n', 30_000), `child: ${out} ${err}`).toBe(true);
    const b = await LocalBackend.open({ dir });
    const o = await b.objects('d');
    await o.put('k2', 'v2');
    await o.put('k3', 'v3');
    const last = (b.store.root.getStats() as { lastTxnId: number }).lastTxnId;
    await b.close();
    setLockTableTxn(dir, last, last - 1);
    ch.stdin!.write('close\n');
    const t0 = Date.now();
    const closed = await until('closed\n', 20_000);
    expect(closed, `the child's close did not return within ${Date.now() - t0} ms; stderr: ${err}`).toBe(true);
    expect(await exited).toBe(0);
  } finally {
    if (ch.exitCode === null) ch.kill('SIGKILL');
  }
  const b = await LocalBackend.open({ dir });
  try {
    const o = await b.objects('d');
    for (const [k, v] of [['k', 'v'], ['k2', 'v2'], ['k3', 'v3']]) expect(Buffer.from((await o.get(k!)).body).toString(), k).toBe(v);
  } finally {
    await b.close();
  }
}, 90_000);
