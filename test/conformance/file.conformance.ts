/**
 * Conformance suite of the File binding, run against every backend by swapping one factory:
 * `fileConformance((root) => FsFile.open(root), 'fs')`, and from the backend runner with 'local' / 'nats'.
 *
 * Each test gets a fresh temp dir holding `root/` (given to the factory) and `outside/` beside it with a
 * secret; after every test the outside directory must be byte-for-byte as it was (DESIGN: "nothing
 * escapes the root"). This file covers the operations; `file-escape.conformance.ts` the path rules and
 * symlink escapes.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FileBinding, FileHandle } from '../../bindings/types.ts';
import { expectFileError, fileEscapeTests, INNER, SECRET, type FileSuite } from './file-escape.conformance.ts';

const text = (b: Uint8Array): string => new TextDecoder().decode(b);
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Registers the File conformance tests; every test name starts with `file/${label} - `. */
export function fileConformance(makeFile: (root: string) => Promise<FileBinding>, label: string): void {
  const t = (name: string): string => `file/${label} - ${name}`;
  const s = {} as FileSuite;

  describe(t('binding'), () => {
    beforeEach(async () => {
      s.tmp = await mkdtemp(join(tmpdir(), 'sluice-file-'));
      s.root = join(s.tmp, 'root');
      s.outside = join(s.tmp, 'outside');
      await mkdir(join(s.outside, 'sub'), { recursive: true });
      await writeFile(join(s.outside, 'secret.txt'), SECRET);
      await writeFile(join(s.outside, 'sub', 'inner.txt'), INNER);
      s.file = await makeFile(s.root);
    });

    afterEach(async () => {
      try {
        // The invariant every test re-checks: nothing outside the root was created, changed or removed.
        expect((await readdir(s.outside, { recursive: true })).sort()).toEqual(['secret.txt', 'sub', join('sub', 'inner.txt')]);
        expect(await readFile(join(s.outside, 'secret.txt'), 'utf8')).toBe(SECRET);
        expect(await readFile(join(s.outside, 'sub', 'inner.txt'), 'utf8')).toBe(INNER);
      } finally {
        await rm(s.tmp, { recursive: true, force: true });
      }
    });

    it(t('the root is created when missing'), async () => {
      expect((await s.file.stat(''))?.type).toBe('directory');
      expect(await s.file.readdir('')).toEqual([]);
    });

    // ── readFile / writeFile ──
    it(t('writeFile then readFile returns the same bytes'), async () => {
      const data = new Uint8Array([0, 1, 2, 255, 10, 13]);
      await s.file.writeFile('a.bin', data);
      const got = await s.file.readFile('a.bin');
      expect(got).toBeInstanceOf(Uint8Array);
      expect(Array.from(got)).toEqual(Array.from(data));
    });

    it(t('writeFile stores strings as UTF-8 and empty files as empty'), async () => {
      await s.file.writeFile('s.txt', 'héllo ✓');
      expect(Array.from(await s.file.readFile('s.txt'))).toEqual(Array.from(bytes('héllo ✓')));
      await s.file.writeFile('empty', '');
      expect((await s.file.readFile('empty')).byteLength).toBe(0);
      expect((await s.file.stat('empty'))?.size).toBe(0);
    });

    it(t('writeFile creates parent directories'), async () => {
      await s.file.writeFile('a/b/c/d.txt', 'deep');
      expect(text(await s.file.readFile('a/b/c/d.txt'))).toBe('deep');
      expect((await s.file.stat('a/b'))?.type).toBe('directory');
    });

    it(t('writeFile replaces the whole content and leaves no temp file'), async () => {
      await s.file.writeFile('d/f.txt', 'a long first version');
      await s.file.writeFile('d/f.txt', 'short');
      expect(text(await s.file.readFile('d/f.txt'))).toBe('short');
      expect(await s.file.readdir('d')).toEqual([{ name: 'f.txt', type: 'file' }]);
    });

    it(t('writeFile onto a directory or below a file fails with the right code'), async () => {
      await s.file.mkdir('dir');
      await s.file.writeFile('file.txt', 'x');
      await expectFileError(s, s.file.writeFile('dir', 'x'), 'SLUICE_IS_A_DIRECTORY');
      await expectFileError(s, s.file.writeFile('file.txt/child', 'x'), 'SLUICE_NOT_A_DIRECTORY');
      await expectFileError(s, s.file.writeFile('x', 42 as unknown as string), 'SLUICE_INVALID_ARGUMENT');
      expect((await s.file.readdir('')).map((e) => e.name)).toEqual(['dir', 'file.txt']);
    });

    it(t('a failed writeFile leaves no temp file behind'), async () => {
      // Make the final rename fail: once the temp file appears, put a directory where the target goes.
      const big = new Uint8Array(32 * 1024 * 1024).fill(7);
      let hit = false;
      for (let attempt = 0; attempt < 5 && !hit; attempt++) {
        const name = `target-${attempt}`;
        const write = s.file.writeFile(`d/${name}`, big).then(() => 'ok', (e: unknown) => e);
        const dir = join(s.root, 'd');
        for (let i = 0; i < 2000 && !hit; i++) {
          const names = await readdir(dir).catch(() => [] as string[]);
          if (names.some((n) => n.startsWith(`.${name}.`))) {
            await mkdir(join(dir, name));
            hit = true;
          } else await new Promise((r) => setImmediate(r));
        }
        const outcome = await write;
        if (hit) expect(outcome).toMatchObject({ code: 'SLUICE_IS_A_DIRECTORY' });
      }
      expect(hit, 'the race was never won; the test did not exercise the failure path').toBe(true);
      expect((await s.file.readdir('d')).filter((e) => e.name.endsWith('.tmp'))).toEqual([]);
    });

    it(t('writeFile is atomic: a concurrent reader never sees a partial file'), async () => {
      const size = 5 * 1024 * 1024;
      const a = Buffer.alloc(size, 0x61);
      const b = Buffer.alloc(size, 0x62);
      await s.file.writeFile('big.bin', a);
      let stop = false;
      let writes = 0;
      let reads = 0;
      const writer = (async () => {
        while (!stop) await s.file.writeFile('big.bin', ++writes % 2 === 0 ? a : b);
      })();
      try {
        const deadline = Date.now() + 1000;
        while (Date.now() < deadline) {
          const got = Buffer.from(await s.file.readFile('big.bin'));
          reads++;
          expect(got.byteLength).toBe(size);
          expect(got.equals(a) || got.equals(b), `read ${reads} saw a mixed or partial file`).toBe(true);
        }
      } finally {
        stop = true;
        await writer;
      }
      expect(writes).toBeGreaterThan(1);
      expect(reads).toBeGreaterThan(1);
      expect(await s.file.readdir('')).toEqual([{ name: 'big.bin', type: 'file' }]);
    });

    it(t('readFile of a missing file or a directory fails with the right code'), async () => {
      await s.file.mkdir('dir');
      await expectFileError(s, s.file.readFile('missing.txt'), 'SLUICE_FILE_NOT_FOUND');
      await expectFileError(s, s.file.readFile('no/such/dir.txt'), 'SLUICE_FILE_NOT_FOUND');
      await expectFileError(s, s.file.readFile('dir'), 'SLUICE_IS_A_DIRECTORY');
      const e = await expectFileError(s, s.file.readFile('missing.txt'), 'SLUICE_FILE_NOT_FOUND');
      expect(e.message).toContain('readFile');
      expect(e.message).toContain('missing.txt');
    });

    // ── open ──
    it(t("open 'r' (the default) reads at positions and returns fewer bytes at the end"), async () => {
      await s.file.writeFile('f.txt', '0123456789');
      const h = await s.file.open('f.txt');
      try {
        expect(h.path).toBe('f.txt');
        expect(text(await h.read(2, 3))).toBe('234');
        expect(text(await h.read(7, 100))).toBe('789');
        expect((await h.read(10, 5)).byteLength).toBe(0);
        expect((await h.read(0, 0)).byteLength).toBe(0);
        expect(text(await h.read(0, 2 ** 40))).toBe('0123456789');
        await expectFileError(s, h.write(0, 'x'), 'SLUICE_INVALID_ARGUMENT');
        await expectFileError(s, h.read(-1, 1), 'SLUICE_INVALID_ARGUMENT');
        await expectFileError(s, h.read(0, 1.5), 'SLUICE_INVALID_ARGUMENT');
      } finally {
        await h.close();
      }
      await expectFileError(s, s.file.open('missing.txt'), 'SLUICE_FILE_NOT_FOUND');
      await expectFileError(s, s.file.open('f.txt', { mode: 'rw' as 'r' }), 'SLUICE_INVALID_ARGUMENT');
    });

    it(t("open 'r+' writes in place and keeps the rest"), async () => {
      await s.file.writeFile('f.txt', '0123456789');
      const h = await s.file.open('f.txt', { mode: 'r+' });
      expect(await h.write(3, 'abc')).toBe(3);
      expect(text(await h.read(0, 10))).toBe('012abc6789');
      await h.close();
      expect(text(await s.file.readFile('f.txt'))).toBe('012abc6789');
      await expectFileError(s, s.file.open('missing.txt', { mode: 'r+' }), 'SLUICE_FILE_NOT_FOUND');
    });

    it(t("open 'w' creates or truncates"), async () => {
      const h1 = await s.file.open('new.txt', { mode: 'w' });
      expect(await h1.write(0, 'héllo')).toBe(6);
      await h1.close();
      expect(text(await s.file.readFile('new.txt'))).toBe('héllo');
      const h2 = await s.file.open('new.txt', { mode: 'w' });
      expect((await h2.stat()).size).toBe(0);
      await h2.write(0, bytes('x'));
      await h2.close();
      expect(text(await s.file.readFile('new.txt'))).toBe('x');
      await expectFileError(s, s.file.open('no/parent.txt', { mode: 'w' }), 'SLUICE_FILE_NOT_FOUND');
    });

    it(t("open 'a' appends and creates when missing"), async () => {
      const h1 = await s.file.open('log.txt', { mode: 'a' });
      await h1.write(0, 'one,');
      await h1.close();
      const h2 = await s.file.open('log.txt', { mode: 'a' });
      await h2.write(0, 'two');
      await h2.close();
      expect(text(await s.file.readFile('log.txt'))).toBe('one,two');
    });

    it(t("open 'wx' creates exclusively"), async () => {
      const h = await s.file.open('once.txt', { mode: 'wx' });
      await h.write(0, 'first');
      await h.close();
      await expectFileError(s, s.file.open('once.txt', { mode: 'wx' }), 'SLUICE_FILE_EXISTS');
      expect(text(await s.file.readFile('once.txt'))).toBe('first');
    });

    it(t('open refuses directories in every mode'), async () => {
      await s.file.mkdir('dir');
      for (const mode of ['r', 'r+', 'w', 'a'] as const) await expectFileError(s, s.file.open('dir', { mode }), 'SLUICE_IS_A_DIRECTORY');
      await expectFileError(s, s.file.open('dir', { mode: 'wx' }), 'SLUICE_FILE_EXISTS');
    });

    it(t('handle stat, double close, use after close and async dispose'), async () => {
      await s.file.writeFile('d/f.txt', '12345');
      const h = await s.file.open('d/f.txt', { mode: 'r+' });
      const st = await h.stat();
      expect(st).toMatchObject({ path: 'd/f.txt', type: 'file', size: 5 });
      expect(st.mtime).toBeInstanceOf(Date);
      await h.close();
      await h.close();
      await expectFileError(s, h.read(0, 1), 'SLUICE_INVALID_ARGUMENT');
      await expectFileError(s, h.write(0, 'x'), 'SLUICE_INVALID_ARGUMENT');
      await expectFileError(s, h.stat(), 'SLUICE_INVALID_ARGUMENT');
      let disposed: FileHandle | undefined;
      {
        await using h2 = (await s.file.open('d/f.txt')) as FileHandle & AsyncDisposable;
        expect(text(await h2.read(0, 5))).toBe('12345');
        disposed = h2;
      }
      await expectFileError(s, (disposed as FileHandle).read(0, 1), 'SLUICE_INVALID_ARGUMENT');
    });

    // ── stat / readdir / mkdir ──
    it(t('stat reports files, directories and absence'), async () => {
      await s.file.writeFile('d/f.txt', 'abc');
      expect(await s.file.stat('d/f.txt')).toMatchObject({ path: 'd/f.txt', type: 'file', size: 3 });
      expect(await s.file.stat('d')).toMatchObject({ path: 'd', type: 'directory', size: 0 });
      expect((await s.file.stat('d/f.txt'))?.mtime).toBeInstanceOf(Date);
      expect(await s.file.stat('missing')).toBeUndefined();
      expect(await s.file.stat('missing/deeper')).toBeUndefined();
      await expectFileError(s, s.file.stat('d/f.txt/x'), 'SLUICE_NOT_A_DIRECTORY');
    });

    it(t('readdir lists entries sorted by name with their types'), async () => {
      for (const n of ['b.txt', 'a.txt', 'Z.txt', '10', '2', 'é.txt', '😀.txt', 'ｆ.txt']) await s.file.writeFile(n, n);
      await s.file.mkdir('c-dir');
      const list = await s.file.readdir('');
      expect(list.map((e) => e.name)).toEqual(['10', '2', 'Z.txt', 'a.txt', 'b.txt', 'c-dir', 'é.txt', 'ｆ.txt', '😀.txt']);
      expect(list.find((e) => e.name === 'c-dir')?.type).toBe('directory');
      expect(list.filter((e) => e.type === 'file').length).toBe(8);
      expect(await s.file.readdir('.')).toEqual(list);
      await expectFileError(s, s.file.readdir('missing'), 'SLUICE_FILE_NOT_FOUND');
      await expectFileError(s, s.file.readdir('a.txt'), 'SLUICE_NOT_A_DIRECTORY');
    });

    it(t('mkdir creates one level, or many with recursive'), async () => {
      await s.file.mkdir('one');
      await expectFileError(s, s.file.mkdir('one'), 'SLUICE_FILE_EXISTS');
      await expectFileError(s, s.file.mkdir('x/y'), 'SLUICE_FILE_NOT_FOUND');
      await s.file.mkdir('x/y/z', { recursive: true });
      await s.file.mkdir('x/y/z', { recursive: true });
      expect((await s.file.stat('x/y/z'))?.type).toBe('directory');
      await s.file.writeFile('f.txt', 'x');
      await expectFileError(s, s.file.mkdir('f.txt', { recursive: true }), 'SLUICE_FILE_EXISTS');
      await expectFileError(s, s.file.mkdir('f.txt/sub', { recursive: true }), 'SLUICE_NOT_A_DIRECTORY');
    });

    // ── rename ──
    it(t('rename moves files and directories'), async () => {
      await s.file.writeFile('a.txt', 'A');
      await s.file.mkdir('dst');
      await s.file.rename('a.txt', 'dst/b.txt');
      expect(await s.file.stat('a.txt')).toBeUndefined();
      expect(text(await s.file.readFile('dst/b.txt'))).toBe('A');
      await s.file.rename('dst', 'moved');
      expect(text(await s.file.readFile('moved/b.txt'))).toBe('A');
    });

    it(t('rename replaces an existing file'), async () => {
      await s.file.writeFile('new.txt', 'new');
      await s.file.writeFile('old.txt', 'old');
      await s.file.rename('new.txt', 'old.txt');
      expect(text(await s.file.readFile('old.txt'))).toBe('new');
      expect((await s.file.readdir('')).map((e) => e.name)).toEqual(['old.txt']);
    });

    it(t('rename failures carry the right codes'), async () => {
      await s.file.writeFile('f.txt', 'f');
      await s.file.writeFile('full/x.txt', 'x');
      await s.file.mkdir('empty');
      await expectFileError(s, s.file.rename('missing', 'x'), 'SLUICE_FILE_NOT_FOUND');
      await expectFileError(s, s.file.rename('f.txt', 'no/parent/f.txt'), 'SLUICE_FILE_NOT_FOUND');
      await expectFileError(s, s.file.rename('f.txt', 'empty'), 'SLUICE_IS_A_DIRECTORY');
      await expectFileError(s, s.file.rename('empty', 'f.txt'), 'SLUICE_NOT_A_DIRECTORY');
      await expectFileError(s, s.file.rename('empty', 'full'), 'SLUICE_DIRECTORY_NOT_EMPTY');
      await expectFileError(s, s.file.rename('full', 'full/inside'), 'SLUICE_INVALID_ARGUMENT');
      expect(text(await s.file.readFile('full/x.txt'))).toBe('x');
    });

    // ── remove ──
    it(t('remove deletes files and empty directories; false when absent'), async () => {
      await s.file.writeFile('f.txt', 'x');
      await s.file.mkdir('empty');
      expect(await s.file.remove('f.txt')).toBe(true);
      expect(await s.file.remove('f.txt')).toBe(false);
      expect(await s.file.remove('missing/deeper')).toBe(false);
      expect(await s.file.remove('empty')).toBe(true);
      expect(await s.file.readdir('')).toEqual([]);
    });

    it(t('remove of a non-empty directory needs recursive'), async () => {
      await s.file.writeFile('tree/a/b.txt', 'b');
      await s.file.writeFile('tree/c.txt', 'c');
      await expectFileError(s, s.file.remove('tree'), 'SLUICE_DIRECTORY_NOT_EMPTY');
      expect(text(await s.file.readFile('tree/a/b.txt'))).toBe('b');
      expect(await s.file.remove('tree', { recursive: true })).toBe(true);
      expect(await s.file.stat('tree')).toBeUndefined();
      expect(await s.file.remove('tree', { recursive: true })).toBe(false);
    });

    // ── unicode ──
    it(t('unicode names work in every operation'), async () => {
      const dir = 'ünïcødé/日本語';
      await s.file.writeFile(`${dir}/файл 😀.txt`, 'ok');
      expect(text(await s.file.readFile(`${dir}/файл 😀.txt`))).toBe('ok');
      expect(await s.file.readdir(dir)).toEqual([{ name: 'файл 😀.txt', type: 'file' }]);
      expect((await s.file.stat(`${dir}/файл 😀.txt`))?.path).toBe(`${dir}/файл 😀.txt`);
      await s.file.rename(`${dir}/файл 😀.txt`, 'ünïcødé/ñ.txt');
      const h = await s.file.open('ünïcødé/ñ.txt', { mode: 'a' });
      await h.write(0, '!');
      await h.close();
      expect(text(await s.file.readFile('ünïcødé/ñ.txt'))).toBe('ok!');
      expect(await s.file.remove('ünïcødé', { recursive: true })).toBe(true);
    });

    fileEscapeTests(s, t);
  });
}
