/**
 * The local store's write-lock records and watchdog (bindings/local/write-lock.ts), with real processes
 * standing in for holders (a stopped `sleep`, a dead pid) and holder records written by hand: the
 * watchdog reports a holder past the limit, kills it only when it is stopped AND listed in the run
 * directory, leaves a holder with no time alone, and removes the record of a dead pid.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalStore } from '../../bindings/local/index.ts';
import { lockRecordDir } from '../../bindings/local/write-lock.ts';

const work = mkdtempSync(join(tmpdir(), 'sluice-wlock-'));
const module = fileURLToPath(new URL('../../bindings/local/write-lock.ts', import.meta.url));
const kids: number[] = [];
afterAll(() => {
  for (const p of kids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(work, { recursive: true, force: true });
});

/** Alive and not a zombie (a killed child stays one until this process reaps it). */
const alive = (pid: number) => {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** A stopped process (a stand-in for a stopped writer). */
function stoppedProcess(): number {
  const p = spawn('sleep', ['60'], { stdio: 'ignore' });
  kids.push(p.pid!);
  process.kill(p.pid!, 'SIGSTOP');
  return p.pid!;
}

/** Runs the watchdog for `ms` in its own process (it reports on fd 1) and returns what it printed. */
function watchFor(dir: string, runDir: string | undefined, ms: number): string {
  const code = `import { watchWriteLock } from ${JSON.stringify(module)};
const w = watchWriteLock({ dir: ${JSON.stringify(dir)}, holdLimitMs: 1000, everyMs: 100, label: 'test'${runDir ? `, killableRunDir: ${JSON.stringify(runDir)}` : ''} });
setTimeout(() => void w.close(), ${ms});`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 });
  return r.stdout;
}

describe('write lock', () => {
  it('write lock - a store keeps a record per process: a time only inside a transaction, stats of the hold times; removed on close', async () => {
    const dir = join(work, 'store');
    const s = LocalStore.open({ dir });
    let inside = '';
    await s.write(() => {
      inside = String(Date.now());
      return undefined;
    });
    const files = readdirSync(lockRecordDir(dir));
    expect(files).toEqual([expect.stringMatching(new RegExp(`^${process.pid}\\.\\d+$`))]);
    // After the commit: idle (0).
    expect(readFileSync(join(lockRecordDir(dir), files[0]!), 'utf8').trim()).toBe('0');
    expect(inside).not.toBe('');
    expect(s.writeLockStats.transactions).toBe(1);
    expect(s.writeLockStats.maxHoldMs).toBeGreaterThanOrEqual(0);
    await s.close();
    expect(readdirSync(lockRecordDir(dir))).toEqual([]);
  });

  it('write lock - a stopped holder past the limit is reported; killed only when it is one of the run directory\u2019s workers', () => {
    const dir = join(work, 'w1');
    const runDir = join(work, 'w1-run');
    mkdirSync(lockRecordDir(dir), { recursive: true });
    mkdirSync(runDir, { recursive: true });
    const stranger = stoppedProcess();
    const worker = stoppedProcess();
    const idle = stoppedProcess();
    const since = String(Date.now() - 5000);
    writeFileSync(join(lockRecordDir(dir), `${stranger}.0`), since);
    writeFileSync(join(lockRecordDir(dir), `${worker}.0`), since);
    writeFileSync(join(lockRecordDir(dir), `${idle}.0`), '0');
    writeFileSync(join(runDir, 'fn-0.pid'), JSON.stringify({ pid: worker, function: 'fn', ordinal: 0, generation: 1 }));
    // A dead pid's record is removed.
    const dead = spawnSync('true').pid;
    writeFileSync(join(lockRecordDir(dir), `${dead}.0`), since);

    const out = watchFor(dir, runDir, 1500);
    expect(out).toMatch(new RegExp(`test: SLUICE_WRITE_LOCK_STALLED: process ${worker} \\(worker fn-0\\) has held the local store write lock for \\d+\\.\\d s and is stopped.*killed it`));
    expect(out).toMatch(new RegExp(`SLUICE_WRITE_LOCK_STALLED: process ${stranger} has held .* and is stopped.*left alone`));
    expect(out).not.toContain(`process ${idle} `);
    // Reported once per transaction, not once per scan.
    expect(out.split(`process ${stranger} `).length - 1).toBe(1);
    expect(alive(worker)).toBe(false);
    expect(alive(stranger)).toBe(true);
    expect(existsSync(join(lockRecordDir(dir), `${dead}.0`))).toBe(false);
  }, 90_000);

  it('write lock - without a run directory nothing is killed', () => {
    const dir = join(work, 'w2');
    mkdirSync(lockRecordDir(dir), { recursive: true });
    const p = stoppedProcess();
    writeFileSync(join(lockRecordDir(dir), `${p}.0`), String(Date.now() - 5000));
    expect(watchFor(dir, undefined, 1000)).toContain(`process ${p} has held`);
    expect(alive(p)).toBe(true);
  }, 90_000);
});
