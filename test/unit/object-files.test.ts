/**
 * Objects as files: the read-only `object-files` binding (paths `<bucket>/<key>`) and the cache behind
 * `record.path()`, on both backends. Writes are SLUICE_ACCESS_DENIED, undeclared buckets too; files
 * are written once per object version and evicted only past their pin.
 */
import { readFile, stat } from 'node:fs/promises';
import { expect, it } from 'vitest';
import { ObjectFileCache } from '../../bindings/file/index.ts';
import type { ObjectFilesBinding } from '../../functions/types.ts';
import { bindOne } from '../../runtime/threads/bound-bindings.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';

forEachBackend('object-files', (ctx) => {
  const t = (what: string) => tn('object-files', ctx, what);

  async function setup() {
    const bucket = ctx.uid('of');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    await o.put('a/b/photo.jpg', 'jpeg bytes');
    await o.put('a/c.txt', 'text');
    await o.put('top.bin', new Uint8Array(300_000).map((_, i) => i & 0xff));
    const cache = await ObjectFileCache.open({ pinMs: 60_000 });
    const files = (await bindOne(ctx.backend, { name: 'originals', kind: 'object-files', resource: bucket, access: 'read' }, { files: async () => cache })) as ObjectFilesBinding;
    return { bucket, o, cache, files };
  }

  it(t('paths are <bucket>/<key>: open, readFile, stat, readdir and localPath read the bodies'), async () => {
    const { bucket, cache, files } = await setup();
    try {
      expect(new TextDecoder().decode(await files.readFile(`${bucket}/a/b/photo.jpg`))).toBe('jpeg bytes');
      const h = await files.open(`${bucket}/top.bin`);
      expect(Array.from(await h.read(256, 4))).toEqual([0, 1, 2, 3]);
      expect((await h.stat()).size).toBe(300_000);
      await h.close();
      expect(await files.stat(`${bucket}/a/c.txt`)).toMatchObject({ type: 'file', size: 4 });
      expect(await files.stat(`${bucket}/a`)).toMatchObject({ type: 'directory' });
      expect(await files.stat(`${bucket}/nope`)).toBeUndefined();
      expect(await files.readdir('')).toEqual([{ name: bucket, type: 'directory' }]);
      expect(await files.readdir(bucket)).toEqual([
        { name: 'a', type: 'directory' },
        { name: 'top.bin', type: 'file' },
      ]);
      expect(await files.readdir(`${bucket}/a`)).toEqual([
        { name: 'b', type: 'directory' },
        { name: 'c.txt', type: 'file' },
      ]);
      // The host path a path-only library opens; the name keeps the key's extension.
      const p = await files.localPath(`${bucket}/a/b/photo.jpg`);
      expect(p.startsWith(cache.root)).toBe(true);
      expect(p.endsWith('photo.jpg')).toBe(true);
      expect(await readFile(p, 'utf8')).toBe('jpeg bytes');
      await expect(files.localPath(`${bucket}/missing.jpg`)).rejects.toMatchObject({ code: 'SLUICE_FILE_NOT_FOUND' });
    } finally {
      await cache.close();
    }
  });

  it(t('every write is SLUICE_ACCESS_DENIED, and so is any bucket the spec did not declare'), async () => {
    const { bucket, cache, files } = await setup();
    const other = ctx.uid('of');
    await ctx.backend.createBucket(other, { shards: 1 });
    await (await ctx.backend.objects(other)).put('secret.txt', 'no');
    try {
      const denied = { code: 'SLUICE_ACCESS_DENIED' };
      await expect(files.open(`${bucket}/a/c.txt`, { mode: 'r+' })).rejects.toMatchObject(denied);
      await expect(files.open(`${bucket}/new.txt`, { mode: 'w' })).rejects.toMatchObject(denied);
      await expect(files.writeFile(`${bucket}/a/c.txt`, 'x')).rejects.toMatchObject(denied);
      await expect(files.mkdir(`${bucket}/d`)).rejects.toMatchObject(denied);
      await expect(files.rename(`${bucket}/a/c.txt`, `${bucket}/z.txt`)).rejects.toMatchObject(denied);
      await expect(files.remove(`${bucket}/a/c.txt`)).rejects.toMatchObject(denied);
      const h = await files.open(`${bucket}/a/c.txt`);
      await expect(h.write(0, 'x')).rejects.toMatchObject(denied);
      await h.close();
      await expect(files.readFile(`${other}/secret.txt`)).rejects.toMatchObject(denied);
      await expect(files.localPath(`${other}/secret.txt`)).rejects.toMatchObject(denied);
      await expect(files.readdir(other)).rejects.toMatchObject(denied);
      // The body is unchanged, and the file on disk is read-only too.
      expect(new TextDecoder().decode(await files.readFile(`${bucket}/a/c.txt`))).toBe('text');
      expect((await stat(await files.localPath(`${bucket}/a/c.txt`))).mode & 0o222).toBe(0);
      await expect(files.readFile(`${bucket}/../x`)).rejects.toMatchObject({ code: 'SLUICE_PATH_INVALID' });
    } finally {
      await cache.close();
    }
  });

  it(t('a read-write object-files binding is refused at bind time'), async () => {
    const bucket = ctx.uid('of');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const cache = await ObjectFileCache.open();
    try {
      await expect(bindOne(ctx.backend, { name: 'x', kind: 'object-files', resource: bucket, access: 'read-write' }, { files: async () => cache })).rejects.toMatchObject({ code: 'SLUICE_INVALID_ARGUMENT' });
      await expect(bindOne(ctx.backend, { name: 'x', kind: 'object-files', resource: ctx.uid('missing'), access: 'read' }, { files: async () => cache })).rejects.toMatchObject({ code: 'SLUICE_BUCKET_NOT_FOUND' });
    } finally {
      await cache.close();
    }
  });

  it(t('one file per object version: reused while current, a new version gets its own file'), async () => {
    const { bucket, o, cache, files } = await setup();
    try {
      const p1 = await files.localPath(`${bucket}/a/c.txt`);
      expect(await files.localPath(`${bucket}/a/c.txt`)).toBe(p1);
      await o.put('a/c.txt', 'second version');
      const p2 = await files.localPath(`${bucket}/a/c.txt`);
      expect(p2).not.toBe(p1);
      expect(await readFile(p2, 'utf8')).toBe('second version');
      // The old file stays for handlers that still read it (pinned).
      expect(await readFile(p1, 'utf8')).toBe('text');
      await cache.close();
      await expect(stat(cache.root)).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await cache.close();
    }
  });
});

it('object-files - past maxBytes, unpinned files are evicted oldest first; pinned ones are kept', async () => {
  const unpinned = await ObjectFileCache.open({ maxBytes: 1000, pinMs: 0 });
  const pinned = await ObjectFileCache.open({ maxBytes: 1000, pinMs: 60_000 });
  try {
    const body = new Uint8Array(600);
    const a = await unpinned.materialize('b', 'a.jpg', { version: 1, body });
    await new Promise((r) => setTimeout(r, 5));
    const b = await unpinned.materialize('b', 'b.jpg', { version: 1, body });
    await expect(stat(a)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await stat(b)).size).toBe(600);
    expect(unpinned.bytes).toBe(600);
    const c = await pinned.materialize('b', 'c.jpg', { version: 1, body });
    const d = await pinned.materialize('b', 'd.jpg', { version: 1, body });
    expect((await stat(c)).size).toBe(600);
    expect((await stat(d)).size).toBe(600);
    expect(pinned.bytes).toBe(1200);
  } finally {
    await unpinned.close();
    await pinned.close();
  }
});

it('object-files - keys that are not path names still materialise by key; concurrent requests write once', async () => {
  const cache = await ObjectFileCache.open();
  try {
    const body = new TextEncoder().encode('x');
    const odd = await cache.materialize('b', 'a//../weird name?.JPG', { version: 3, body });
    expect(odd.startsWith(cache.root)).toBe(true);
    expect(odd.endsWith('weird_name_.JPG')).toBe(true);
    const same = await Promise.all(Array.from({ length: 8 }, () => cache.materialize('b', 'k.png', { version: 1, body })));
    expect(new Set(same).size).toBe(1);
    expect(cache.bytes).toBe(2);
  } finally {
    await cache.close();
  }
});

