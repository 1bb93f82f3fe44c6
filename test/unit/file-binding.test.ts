/**
 * The File binding on the local filesystem: the shared conformance suite, plus what only FsFile has
 * (its root handling and its path parser).
 */
import { mkdtemp, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsFile } from '../../bindings/file/index.ts';
import { parsePath } from '../../bindings/file/fs-path.ts';
import { fileConformance } from '../conformance/file.conformance.ts';

fileConformance((root) => FsFile.open(root), 'fs');

describe('file/fs - FsFile', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'sluice-fsfile-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('file/fs - open creates a missing root and resolves it to its real path', async () => {
    await symlink(tmp, join(tmp, 'alias'));
    const f = await FsFile.open(join(tmp, 'alias', 'nested', 'root'));
    expect(f.root).toBe(join(await realpath(tmp), 'nested', 'root'));
    expect(await f.readdir('')).toEqual([]);
  });

  it('file/fs - open refuses a root that is a file', async () => {
    const f = await FsFile.open(join(tmp, 'r2'));
    await f.writeFile('file', 'x');
    await expect(FsFile.open(join(tmp, 'r2', 'file'))).rejects.toMatchObject({ code: 'SLUICE_FILE_EXISTS' });
  });

  it('file/fs - parsePath gives the canonical relative path', () => {
    expect(parsePath('')).toEqual({ rel: '', segments: [] });
    expect(parsePath('./')).toEqual({ rel: '', segments: [] });
    expect(parsePath('a/b/')).toEqual({ rel: 'a/b', segments: ['a', 'b'] });
    expect(() => parsePath('a/../b')).toThrow(/'\.\.'/);
  });

  it('file/fs - writeFile keeps temp names short for 255-byte names', async () => {
    const f = await FsFile.open(join(tmp, 'r3'));
    const name = '日'.repeat(85);
    await f.writeFile(name, 'x');
    expect(await f.readdir('')).toEqual([{ name, type: 'file' }]);
  });
});
