/**
 * Bounding the damage of a stopped writer on the local store.
 *
 * LMDB serialises writers across processes with one lock, and `transactionSync` waits for it
 * synchronously: a process stopped (SIGSTOP, a debugger) inside a write transaction blocks every other
 * writer — their event loops included — until it runs again. A process that *dies* releases the lock
 * (LMDB's robust mutex sees the dead owner). So the remedy for a stopped holder is to make it die, and
 * what must be detected is "holding the lock for too long".
 *
 * Detection: every writing process keeps a holder record `<dir>/locks/<pid>.<thread>` — the time its
 * current transaction took the lock, or 0 between transactions — written with one pwrite inside the
 * transaction (so only the actual holder ever shows a time) and cleared after the commit (two small
 * syscalls per group commit, which carries up to 2,000 operations). The watchdog reads the records on a
 * worker thread, because the thread that would check is itself blocked in `transactionSync` as soon as it
 * writes; it logs with a synchronous write to stdout (beside the platform's other lines) for the same reason. It kills only a holder that is
 * *stopped* (Linux `/proc/<pid>/stat` state T/t) and listed by the caller as one of its own processes
 * (the platform's workers); a slow but running holder, or a process it does not own, is only reported.
 */
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { threadId, Worker } from 'node:worker_threads';

const RECORD_BYTES = 24;
const IDLE = Buffer.from('0'.padEnd(RECORD_BYTES - 1, ' ') + '\n');

/** Directory of the holder records of the store in `dir`. */
export function lockRecordDir(dir: string): string {
  return join(dir, 'locks');
}

/** This process's holder record, written by the store around each write transaction. */
export class WriteLockRecord {
  readonly path: string;
  #fd: number | undefined;
  #since = 0;
  /** Transactions committed, longest and total lock hold (ms), for the measurements in docs/OPERATIONS.md. */
  readonly stats = { transactions: 0, maxHoldMs: 0, totalHoldMs: 0 };

  constructor(dir: string) {
    this.path = join(lockRecordDir(dir), `${process.pid}.${threadId}`);
    try {
      mkdirSync(lockRecordDir(dir), { recursive: true, mode: 0o700 });
      this.#fd = openSync(this.path, 'w', 0o600);
      writeSync(this.#fd, IDLE, 0, RECORD_BYTES, 0);
    } catch {
      // A read-only data directory (it never writes) or an odd filesystem: no record, no detection.
      this.#fd = undefined;
    }
  }

  /** Called inside the transaction: the lock is held from now. */
  taken(): void {
    this.#since = Date.now();
    this.#put(String(this.#since));
  }

  /** Called after the commit (or its failure): the lock is released. */
  released(): void {
    if (this.#since === 0) return;
    const held = Date.now() - this.#since;
    this.#since = 0;
    this.stats.transactions++;
    this.stats.totalHoldMs += held;
    if (held > this.stats.maxHoldMs) this.stats.maxHoldMs = held;
    this.#put('0');
  }

  #put(v: string): void {
    if (this.#fd === undefined) return;
    try {
      writeSync(this.#fd, Buffer.from(v.padEnd(RECORD_BYTES - 1, ' ') + '\n'), 0, RECORD_BYTES, 0);
    } catch {
      // Losing a record costs detection of this one transaction, never data.
    }
  }

  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
    rmSync(this.path, { force: true });
  }
}

/** Options of {@link watchWriteLock}. */
export interface WriteLockWatchOptions {
  /** The local store's data directory. */
  dir: string;
  /** A holder past this is reported (and, when stopped and owned, killed). @default 3000 */
  holdLimitMs?: number;
  /** How often the records are read. @default 500 */
  everyMs?: number;
  /**
   * Directory of `<name>.pid` files (JSON with a `pid`) naming the processes the watchdog may kill (the
   * local driver's `<data>/run`); a stopped holder not listed there is only reported. @default undefined (kill nothing)
   */
  killableRunDir?: string;
  /** Line prefix of the reports (on stdout). @default 'sluice' */
  label?: string;
}

/** A running watchdog; `close()` stops its thread. */
export interface WriteLockWatch {
  close(): Promise<void>;
}

// Runs on its own thread (an eval'd CommonJS worker: no loader needed), so that it goes on while the
// main thread waits for the lock inside transactionSync.
const WATCHDOG = String.raw`
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const { lockDir, holdLimitMs, everyMs, runDir, label } = workerData;
const reported = new Set();
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; } };
const state = (pid) => { try { return fs.readFileSync('/proc/' + pid + '/stat', 'utf8').replace(/^.*\) /s, '').charAt(0); } catch { return '?'; } };
const owned = (pid) => {
  if (!runDir) return undefined;
  try {
    for (const f of fs.readdirSync(runDir)) {
      if (!f.endsWith('.pid')) continue;
      try { if (JSON.parse(fs.readFileSync(path.join(runDir, f), 'utf8')).pid === pid) return f.slice(0, -4); } catch {}
    }
  } catch {}
  return undefined;
};
setInterval(() => {
  let names;
  try { names = fs.readdirSync(lockDir); } catch { return; }
  const now = Date.now();
  for (const n of names) {
    const pid = Number(n.split('.')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    let since;
    try { since = Number(fs.readFileSync(path.join(lockDir, n), 'utf8').trim()); } catch { continue; }
    if (!alive(pid)) { fs.rmSync(path.join(lockDir, n), { force: true }); continue; }
    if (!since || now - since < holdLimitMs || reported.has(n + ':' + since)) continue;
    const st = state(pid);
    if (st === 'Z') continue; // dead (a zombie not yet reaped): LMDB has released its lock
    reported.add(n + ':' + since);
    const stopped = st === 'T' || st === 't';
    const worker = owned(pid);
    const act = stopped && worker !== undefined;
    const line = label + ': SLUICE_WRITE_LOCK_STALLED: process ' + pid + (worker ? ' (worker ' + worker + ')' : '') +
      ' has held the local store write lock for ' + ((now - since) / 1000).toFixed(1) + ' s' + (stopped ? ' and is stopped' : ' (state ' + st + ')') +
      '; every writer waits for it' + (act ? ': killed it (SIGKILL releases the lock; the driver restarts the worker)' : stopped ? ': not one of this platform\u2019s workers, left alone (SIGCONT or kill it)' : '') + '\n';
    try { fs.writeSync(1, line); } catch {}
    if (act) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  }
}, everyMs);
`;

/**
 * Starts the write-lock watchdog of the store in `o.dir` on a worker thread (see the header). The
 * thread does not keep the process alive.
 */
export function watchWriteLock(o: WriteLockWatchOptions): WriteLockWatch {
  const w = new Worker(WATCHDOG, {
    eval: true,
    // Plain CommonJS: not the parent's flags (`--input-type=module` would make the eval'd code ESM, a
    // loader is not needed).
    execArgv: [],
    workerData: { lockDir: lockRecordDir(o.dir), holdLimitMs: o.holdLimitMs ?? 3000, everyMs: o.everyMs ?? 500, runDir: o.killableRunDir, label: o.label ?? 'sluice' },
    stdout: false,
    stderr: false,
  });
  w.unref();
  return {
    async close() {
      await w.terminate();
    },
  };
}
