/**
 * The local store's two commit durabilities, seen in the system calls LMDB makes (strace on a child
 * process): an ordinary write's commit writes LMDB's meta page through the O_DSYNC descriptor of the data
 * file (the meta page's own sync), a `repairable` commitBatch (the runtime's batch commits,
 * CommitBatchOptions.durability) writes it through the plain descriptor — one disk sync per commit
 * instead of two — and both sync the data pages (fdatasync). A system crash can therefore undo only a
 * repairable batch that is the store's last commit, which the redelivery repairs (nothing to see here:
 * a system crash cannot be simulated in a test).
 *
 * Needs strace (.ci/run installs it) and ptrace of a child; under CI=true a missing strace fails the test.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const child = fileURLToPath(new URL('./commit-durability-child.ts', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'sluice-durability-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function hasStrace(): boolean {
  try {
    execFileSync('strace', ['-V'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

it('local: an ordinary commit syncs its meta page (O_DSYNC write), a repairable commitBatch does not; both fdatasync the data', () => {
  if (!hasStrace()) {
    if (process.env.CI === 'true') throw new Error('strace is missing (apt-get install -y strace)');
    throw new Error('strace is needed for this test (apt-get install -y strace)');
  }
  const trace = join(work, 'trace.txt');
  const dir = join(work, 'data');
  const r = spawnSync('strace', ['-f', '-e', 'trace=openat,pwrite64,fdatasync,statx,newfstatat,stat', '-o', trace, process.execPath, '--import', 'tsx', child, dir], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, `${r.stderr}\n${r.stdout}`).toBe(0);
  const lines = readFileSync(trace, 'utf8').split('\n');
  // The data file's O_DSYNC descriptor (LMDB opens it for the meta page's synced writes).
  const dsync = lines.map((l) => /openat\(.*sluice\.mdb", O_WRONLY\|O_DSYNC.*= (\d+)$/.exec(l)).find((m) => m !== null)?.[1];
  expect(dsync, 'the data file is opened O_DSYNC for meta page writes').toBeDefined();
  // Between the child's markers (a stat of a path named after each phase): what each phase wrote.
  const phase = (name: string) => {
    const from = lines.findIndex((l) => l.includes(`/sluice-mark-${name}-begin`));
    const to = lines.findIndex((l) => l.includes(`/sluice-mark-${name}-end`));
    expect(from, `marker ${name}`).toBeGreaterThanOrEqual(0);
    expect(to).toBeGreaterThan(from);
    const part = lines.slice(from, to);
    return {
      dsyncWrites: part.filter((l) => new RegExp(`pwrite64\\(${dsync},`).test(l)).length,
      fdatasyncs: part.filter((l) => /fdatasync\(/.test(l)).length,
    };
  };
  const synced = phase('synced');
  const repairable = phase('repairable');
  process.stdout.write(`commit durability: 10 synced updateAttrs ${JSON.stringify(synced)}, 10 repairable commitBatch ${JSON.stringify(repairable)}\n`);
  expect(synced.dsyncWrites).toBeGreaterThanOrEqual(10);
  expect(synced.fdatasyncs).toBeGreaterThanOrEqual(10);
  expect(repairable.dsyncWrites).toBe(0);
  expect(repairable.fdatasyncs).toBeGreaterThanOrEqual(10);
}, 90_000);
