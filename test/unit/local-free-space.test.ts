/**
 * The local store's free-space reserve (LocalStoreOptions.minFreeBytes): a write that would eat into it is
 * refused with SLUICE_STORAGE_FULL before LMDB writes anything, deletes go on down to a quarter of it, and
 * a write's known bytes (an object body) count against it. The reserve is set relative to what the temp
 * filesystem has free now, with margins (tens of MiB) wider than what other tests write or free within a few ms.
 */
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';

const MiB = 1024 * 1024;
const dirs: string[] = [];
const backends: LocalBackend[] = [];
afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function freeOf(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

async function open(minFreeBytes?: number): Promise<{ backend: LocalBackend; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-free-'));
  dirs.push(dir);
  const backend = await LocalBackend.open({ dir, ...(minFreeBytes !== undefined ? { minFreeBytes } : {}) });
  backends.push(backend);
  return { backend, dir };
}

it('below the reserve, puts and attribute updates are refused with SLUICE_STORAGE_FULL and write nothing; deletes still go through', async () => {
  const { backend, dir } = await open();
  await backend.createBucket('b');
  const o = await backend.objects('b');
  await o.put('keep', 'x');
  await backend.close();
  backends.length = 0;
  // Reopen with a reserve of twice what is free: every ordinary write is below it, a delete is not
  // below a quarter of it.
  const free = freeOf(dir);
  const strict = await LocalBackend.open({ dir, minFreeBytes: free * 2 });
  backends.push(strict);
  const s = await strict.objects('b');
  const refused = await s.put('new', 'y').catch((e: unknown) => e as { code?: string; message: string });
  expect((refused as { code?: string }).code).toBe('SLUICE_STORAGE_FULL');
  expect((refused as Error).message).toMatch(/^local store in '.*' is out of space \(\d+ bytes free, \d+ kept free\): nothing of this write was committed; retry once space is freed$/);
  expect(await s.head('new')).toBeUndefined();
  await expect(s.updateAttrs('keep', { expr: 'SET n = :n', values: { ':n': 1 } })).rejects.toMatchObject({ code: 'SLUICE_STORAGE_FULL' });
  expect((await s.getAttrs('keep')).attrs).toEqual({});
  expect(await s.delete('keep')).toBe(true);
  expect(await s.head('keep')).toBeUndefined();
});

it("a write's known bytes count: a body that would cross the reserve is refused, a small one fits", async () => {
  const { dir } = await open();
  const free = freeOf(dir);
  // 32 MiB above the reserve: a 63 MiB body does not fit, 1 KiB does.
  const { backend } = await open(Math.max(0, free - 32 * MiB));
  await backend.createBucket('b');
  const o = await backend.objects('b');
  await expect(o.put('big', new Uint8Array(63 * MiB))).rejects.toMatchObject({ code: 'SLUICE_STORAGE_FULL' });
  expect(await o.head('big')).toBeUndefined();
  await o.put('small', new Uint8Array(1024));
  expect((await o.head('small'))?.size).toBe(1024);
});

it('minFreeBytes 0 turns the check off; a bad value (option or environment) is a typed error naming it', async () => {
  const { backend } = await open(0);
  await backend.createBucket('b');
  await (await backend.objects('b')).put('k', 'v');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-free-'));
  dirs.push(dir);
  await expect(LocalBackend.open({ dir, minFreeBytes: -1 })).rejects.toMatchObject({ code: 'SLUICE_INVALID_ARGUMENT', message: expect.stringMatching(/minFreeBytes must be a whole number of bytes ≥ 0 .* got -1/) });
  process.env.SLUICE_LOCAL_MIN_FREE_BYTES = '64M';
  try {
    await expect(LocalBackend.open({ dir })).rejects.toMatchObject({ code: 'SLUICE_INVALID_ARGUMENT', message: expect.stringContaining('SLUICE_LOCAL_MIN_FREE_BYTES') });
  } finally {
    delete process.env.SLUICE_LOCAL_MIN_FREE_BYTES;
  }
});
