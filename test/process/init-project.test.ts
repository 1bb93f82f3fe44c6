/**
 * sluice outside its repository: `npm pack` gives a tarball; `sluice init` scaffolds a project in a
 * fresh temp directory (outside the repo) that depends on it through `file:<tarball>`; `npm install`
 * there (from the tarball, its dependencies from npm's cache: --prefer-offline); then the scaffold's
 * `npm test` passes and `npx sluice dev` runs the function on an upload. Workers and the test runner
 * find tsx in sluice's install, not in the project (which does not depend on tsx).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { childEnv, repoRoot, run, startDev, until, type Dev } from '../support/sluice-process.ts';

const work = mkdtempSync(join(tmpdir(), 'sluice-init-'));
const proj = join(work, 'my-app');
let dev: Dev | undefined;

afterAll(async () => {
  await dev?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('init project', () => {
  it('init - pack, init outside the repo, npm install from the tarball, npm test and npx sluice dev work', async () => {
    const npm = (args: string[], cwd: string, timeoutMs: number) => run(args, { cmd: 'npm', cwd, timeoutMs, env: childEnv({ npm_config_update_notifier: 'false' }) });
    const pack = await npm(['pack', '--pack-destination', work, '--json'], repoRoot, 120_000);
    expect(pack.code, pack.stderr).toBe(0);
    const packed = (JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[])[0]!;
    const tarball = join(work, packed.filename);
    // What ships: the runtime sources, not the tests.
    const paths = packed.files.map((f) => f.path);
    expect(paths).toContain('controller/cli/sluice.mjs');
    expect(paths).toContain('runtime/worker-main.ts');
    expect(paths.filter((p) => p.startsWith('test/') || p.endsWith('.test.ts'))).toEqual([]);

    const init = await run(['init', proj, '--sluice', `file:${tarball}`], { cwd: work });
    expect(init.code, init.stderr).toBe(0);
    const pkg = JSON.parse(readFileSync(join(proj, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(pkg.dependencies).toEqual({ sluice: `file:${tarball}` });
    for (const f of ['tsconfig.json', 'functions/word-count/function.yaml', 'functions/word-count/index.ts', 'functions/word-count/word-count.test.ts']) expect(existsSync(join(proj, f)), f).toBe(true);
    // init refuses a directory that is not empty.
    expect((await run(['init', proj], { cwd: work })).code).not.toBe(0);

    const install = await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], proj, 240_000);
    expect(install.code, install.stderr).toBe(0);
    // The project depends on sluice alone; tsx comes with sluice.
    expect(readdirSync(join(proj, 'node_modules', 'sluice'))).not.toContain('test');

    const test = await npm(['test'], proj, 120_000);
    expect(test.code, `${test.stdout}\n${test.stderr}`).toBe(0);
    expect(test.stdout).toMatch(/# pass 1/);

    const npx = join(proj, 'node_modules', '.bin', 'sluice');
    dev = await startDev({ data: join(proj, '.sluice-data'), cwd: proj, cmd: npx, args: ['dev', '--port', '0'], env: childEnv() });
    await dev.waitFor(/deployed word-count \(revision 1\)/, 60_000);
    writeFileSync(join(proj, 'words.txt'), 'one two three four five\n');
    const put = await run(['--server', dev.server, 'objects', 'put', 'uploads', 'words.txt'], { cmd: npx, cwd: proj, timeoutMs: 60_000 });
    expect(put.code, put.stderr).toBe(0);
    const attrs = await until(
      'the function marks the upload',
      async () => {
        const r = await run(['attrs', 'uploads', 'words.txt', '--json'], { cmd: npx, cwd: proj, timeoutMs: 60_000 });
        const a = (JSON.parse(r.stdout) as { attrs: Record<string, unknown> }).attrs;
        return a.words === undefined ? undefined : a;
      },
      60_000,
      500,
    );
    expect(attrs.words).toBe(5);
  }, 600_000);
});
