/**
 * File conformance, part two: path rules (one test per rule) and symlink escapes. The invariant under
 * test is DESIGN's "nothing escapes the root": the `outside` directory, a sibling of the root holding a
 * secret, is never read, listed, created in or overwritten. `file.conformance.ts` checks it again after
 * every test. Part one (the operations) and the entry point live in `file.conformance.ts`.
 */
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { SluiceError } from '../../bindings/errors.ts';
import type { FileBinding } from '../../bindings/types.ts';

/** State of one test, refreshed by the entry point's `beforeEach`. */
export interface FileSuite {
  /** The binding under test, made fresh for each test over an empty root. */
  file: FileBinding;
  /** The directory given to the factory. */
  root: string;
  /** Sibling of the root: `secret.txt` and `sub/inner.txt`; never to be touched through the binding. */
  outside: string;
  /** Parent of both; error messages must never name it. */
  tmp: string;
}

export const SECRET = 'top secret: must never leave the outside directory';
export const INNER = 'inner secret';

/**
 * Asserts that `p` rejects with a SluiceError of `code` whose message does not reveal host paths
 * (other than inside `given`, the path the caller passed, which messages do quote).
 */
export async function expectFileError(s: FileSuite, p: Promise<unknown>, code: string, given?: string): Promise<SluiceError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(SluiceError);
  const e = err as SluiceError;
  expect(e.code, e.message).toBe(code);
  const message = given === undefined ? e.message : e.message.split(JSON.stringify(given)).join('');
  expect(message).not.toContain(s.tmp);
  return e;
}

/** Every operation of the binding applied to `path`, each expected to be refused with `code`. */
async function expectRefusedEverywhere(s: FileSuite, path: string, code = 'SLUICE_PATH_INVALID', rootOk = false): Promise<void> {
  const f = s.file;
  const calls: [string, () => Promise<unknown>][] = [
    ['readFile', () => f.readFile(path)],
    ['writeFile', () => f.writeFile(path, 'overwritten')],
    ['open r', () => f.open(path)],
    ['open r+', () => f.open(path, { mode: 'r+' })],
    ['open w', () => f.open(path, { mode: 'w' })],
    ['open a', () => f.open(path, { mode: 'a' })],
    ['open wx', () => f.open(path, { mode: 'wx' })],
    ['mkdir', () => f.mkdir(path)],
    ['mkdir recursive', () => f.mkdir(path, { recursive: true })],
    ['rename from', () => f.rename(path, 'renamed-here')],
    ['rename to', () => f.writeFile('mine.txt', 'mine').then(() => f.rename('mine.txt', path)).finally(() => f.remove('mine.txt'))],
    ['remove', () => f.remove(path)],
    ['remove recursive', () => f.remove(path, { recursive: true })],
  ];
  if (!rootOk) calls.push(['stat', () => f.stat(path)], ['readdir', () => f.readdir(path)]);
  for (const [name, call] of calls) {
    const e = await expectFileError(s, call(), code, path).catch((x: unknown) => {
      throw new Error(`${name}(${JSON.stringify(path)}): ${String(x)}`);
    });
    expect(e.message.length, name).toBeGreaterThan(0);
  }
}

/** Registers the path-rule and symlink tests; `t` prefixes test names with `file/<label> - `. */
export function fileEscapeTests(s: FileSuite, t: (name: string) => string): void {
  // ── path rules: one test per rule ──
  it(t('absolute paths are refused'), async () => {
    for (const p of ['/x', '/etc/passwd', `${s.outside}/secret.txt`]) await expectRefusedEverywhere(s, p);
    const e = await expectFileError(s, s.file.readFile('/x'), 'SLUICE_PATH_INVALID');
    expect(e.message).toContain('"/x"');
    expect(e.message).toMatch(/absolute/);
  });

  it(t('Windows drive paths are refused'), async () => {
    for (const p of ['C:\\x', 'c:/x']) await expectRefusedEverywhere(s, p);
  });

  it(t('UNC paths are refused'), async () => {
    await expectRefusedEverywhere(s, '\\\\server\\share\\x');
  });

  it(t("'..' segments are refused, even when they would normalise away"), async () => {
    await s.file.mkdir('a');
    for (const p of ['..', '../x', 'a/../b', 'a/..', '../outside/secret.txt', 'a/../../outside/secret.txt']) await expectRefusedEverywhere(s, p);
    const e = await expectFileError(s, s.file.writeFile('a/../b', 'x'), 'SLUICE_PATH_INVALID');
    expect(e.message).toContain('"a/../b"');
    expect(e.message).toContain("'..'");
    expect(await s.file.stat('b')).toBeUndefined();
  });

  it(t('NUL bytes are refused'), async () => {
    await expectRefusedEverywhere(s, 'a\0b');
    expect((await expectFileError(s, s.file.readFile('a\0b'), 'SLUICE_PATH_INVALID')).message).toMatch(/NUL/);
  });

  it(t('backslashes are refused'), async () => {
    await expectRefusedEverywhere(s, 'a\\b');
    expect((await expectFileError(s, s.file.readFile('a\\b'), 'SLUICE_PATH_INVALID')).message).toMatch(/backslash/);
  });

  it(t('empty segments are refused, a trailing slash is not'), async () => {
    for (const p of ['a//b', '/', '//', 'a//']) await expectRefusedEverywhere(s, p);
    await s.file.writeFile('d/f.txt', 'x');
    expect(await s.file.readdir('d/')).toEqual([{ name: 'f.txt', type: 'file' }]);
    expect((await s.file.stat('d/'))?.type).toBe('directory');
  });

  it(t("'.' segments inside a path are refused"), async () => {
    for (const p of ['./a', 'a/./b', 'a/.']) await expectRefusedEverywhere(s, p);
  });

  it(t('segments longer than 255 bytes are refused, 255 is accepted'), async () => {
    await expectRefusedEverywhere(s, 'x'.repeat(256));
    await expectRefusedEverywhere(s, `d/${'日'.repeat(86)}`); // 258 UTF-8 bytes
    await s.file.writeFile('x'.repeat(255), 'ok');
    await s.file.writeFile(`d/${'日'.repeat(85)}`, 'ok'); // 255 UTF-8 bytes
    expect(new TextDecoder().decode(await s.file.readFile('x'.repeat(255)))).toBe('ok');
    expect((await s.file.readdir('d')).map((e) => e.name)).toEqual(['日'.repeat(85)]);
  });

  it(t('paths longer than 4096 bytes are refused'), async () => {
    const long = Array.from({ length: 20 }, () => 'y'.repeat(205)).join('/'); // 4119 bytes
    await expectRefusedEverywhere(s, long);
    expect((await expectFileError(s, s.file.readFile(long), 'SLUICE_PATH_INVALID')).message).toMatch(/4096/);
  });

  it(t('lone surrogates are refused'), async () => {
    await expectRefusedEverywhere(s, 'a\uD800b');
  });

  it(t('the root is accepted by stat and readdir only'), async () => {
    for (const p of ['', '.', './']) {
      await expectRefusedEverywhere(s, p, 'SLUICE_PATH_INVALID', true);
      expect((await s.file.stat(p))?.type).toBe('directory');
      expect(await s.file.readdir(p)).toEqual([]);
    }
  });

  it(t('a path that is not a string is an invalid argument'), async () => {
    await expectFileError(s, s.file.readFile(42 as unknown as string), 'SLUICE_INVALID_ARGUMENT');
    await expectFileError(s, s.file.stat(undefined as unknown as string), 'SLUICE_INVALID_ARGUMENT');
  });

  // ── symlinks ──
  it(t('a file symlink leading outside is never followed'), async () => {
    await mkdir(s.root, { recursive: true });
    await symlink(join(s.outside, 'secret.txt'), join(s.root, 'abs-link.txt'));
    await symlink('../outside/secret.txt', join(s.root, 'rel-link.txt'));
    for (const p of ['abs-link.txt', 'rel-link.txt']) await expectRefusedEverywhere(s, p);
    expect(await s.file.readdir('')).toEqual([]);
  });

  it(t('a directory symlink leading outside is never followed'), async () => {
    await mkdir(s.root, { recursive: true });
    await symlink(s.outside, join(s.root, 'out'));
    await symlink('..', join(s.root, 'up'));
    await symlink('/', join(s.root, 'slash'));
    for (const dir of ['out', 'up', 'slash']) {
      await expectRefusedEverywhere(s, dir);
      await expectRefusedEverywhere(s, `${dir}/`);
    }
    for (const p of ['out/secret.txt', 'out/sub', 'out/sub/inner.txt', 'out/new.txt', 'up/outside/secret.txt']) await expectRefusedEverywhere(s, p);
    expect(await s.file.readdir('')).toEqual([]);
  });

  it(t('a symlinked parent leading outside refuses writes below it, existing or not'), async () => {
    await mkdir(join(s.root, 'a'), { recursive: true });
    await symlink(join(s.outside, 'sub'), join(s.root, 'a', 'b'));
    await expectFileError(s, s.file.writeFile('a/b/new.txt', SECRET), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.writeFile('a/b/deeper/new.txt', SECRET), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.writeFile('a/b/inner.txt', 'overwritten'), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.open('a/b/new.txt', { mode: 'wx' }), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.mkdir('a/b/d/e', { recursive: true }), 'SLUICE_PATH_INVALID');
    expect(await readFile(join(s.outside, 'sub', 'inner.txt'), 'utf8')).toBe(INNER);
  });

  it(t('rename through an escaping symlink is refused on either side'), async () => {
    await mkdir(s.root, { recursive: true });
    await symlink(s.outside, join(s.root, 'out'));
    await symlink(join(s.outside, 'secret.txt'), join(s.root, 'link.txt'));
    await s.file.writeFile('mine.txt', 'attacker data');
    await expectFileError(s, s.file.rename('mine.txt', 'out/secret.txt'), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.rename('mine.txt', 'out/planted.txt'), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.rename('mine.txt', 'link.txt'), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.rename('out/secret.txt', 'stolen.txt'), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.rename('out', 'moved'), 'SLUICE_PATH_INVALID');
    expect(await s.file.stat('stolen.txt')).toBeUndefined();
    expect(new TextDecoder().decode(await s.file.readFile('mine.txt'))).toBe('attacker data');
  });

  it(t('readdir leaves out escaping and dangling symlinks and refuses to list through them'), async () => {
    await mkdir(join(s.root, 'd'), { recursive: true });
    await writeFile(join(s.root, 'd', 'own.txt'), 'own');
    await symlink(s.outside, join(s.root, 'd', 'out'));
    await symlink(join(s.outside, 'secret.txt'), join(s.root, 'd', 'secret-link'));
    await symlink(join(s.outside, 'nope'), join(s.root, 'd', 'dangling'));
    expect(await s.file.readdir('d')).toEqual([{ name: 'own.txt', type: 'file' }]);
    await expectFileError(s, s.file.readdir('d/out'), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.readdir('d/out/sub'), 'SLUICE_PATH_INVALID');
  });

  it(t('a dangling symlink is never created through'), async () => {
    await mkdir(s.root, { recursive: true });
    await symlink('../outside/planted.txt', join(s.root, 'dangling.txt'));
    await symlink('../outside/planted-dir', join(s.root, 'dangling-dir'));
    await expectRefusedEverywhere(s, 'dangling.txt');
    await expectRefusedEverywhere(s, 'dangling-dir/x.txt');
  });

  it(t('symlink loops are refused'), async () => {
    await mkdir(s.root, { recursive: true });
    await symlink('loop-b', join(s.root, 'loop-a'));
    await symlink('loop-a', join(s.root, 'loop-b'));
    await expectRefusedEverywhere(s, 'loop-a');
    await expectRefusedEverywhere(s, 'loop-a/x');
  });

  it(t('recursive remove unlinks escaping symlinks without touching their targets'), async () => {
    await s.file.writeFile('tree/keep/own.txt', 'own');
    await symlink(s.outside, join(s.root, 'tree', 'out'));
    await symlink(join(s.outside, 'secret.txt'), join(s.root, 'tree', 'keep', 'secret-link'));
    expect(await s.file.remove('tree', { recursive: true })).toBe(true);
    expect(await s.file.stat('tree')).toBeUndefined();
  });

  it(t('symlinks that stay inside the root are followed'), async () => {
    await s.file.writeFile('real/target.txt', 'real content');
    await symlink('real/target.txt', join(s.root, 'alias.txt'));
    await symlink('real', join(s.root, 'dir-alias'));
    await symlink('.', join(s.root, 'self'));
    expect(new TextDecoder().decode(await s.file.readFile('alias.txt'))).toBe('real content');
    expect(await s.file.readdir('dir-alias')).toEqual([{ name: 'target.txt', type: 'file' }]);
    expect((await s.file.stat('alias.txt'))?.type).toBe('file');
    expect((await s.file.readdir('')).map((e) => `${e.name}:${e.type}`)).toEqual(['alias.txt:file', 'dir-alias:directory', 'real:directory', 'self:directory']);
    await s.file.writeFile('dir-alias/new.txt', 'via alias');
    expect(new TextDecoder().decode(await s.file.readFile('real/new.txt'))).toBe('via alias');
    await s.file.writeFile('alias.txt', 'updated');
    expect(new TextDecoder().decode(await s.file.readFile('real/target.txt'))).toBe('updated');
    expect((await s.file.readdir('self/real')).map((e) => e.name)).toEqual(['new.txt', 'target.txt']);
    // A link to the root is a directory for listing, but never a file to write or a thing to remove.
    await expectFileError(s, s.file.writeFile('self', 'x'), 'SLUICE_PATH_INVALID');
    await expectFileError(s, s.file.rename('self', 'elsewhere'), 'SLUICE_PATH_INVALID');
    // remove takes the link away, not what it points to.
    expect(await s.file.remove('alias.txt')).toBe(true);
    expect(await s.file.stat('alias.txt')).toBeUndefined();
    expect(new TextDecoder().decode(await s.file.readFile('real/target.txt'))).toBe('updated');
  });
}
