/**
 * `sluice init <dir>`: scaffolds a project that depends on sluice — package.json (sluice as a `file:`
 * dependency on a tarball from `npm pack` or on a sluice directory), tsconfig.json, one function with
 * its spec and a harness test — and `sluice test`: runs a project's `*.test.ts` files with node's test
 * runner and the TypeScript loader from sluice's own install (the project needs no tsx of its own).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { SluiceError } from '../../../bindings/errors.ts';
import { tsxLoaderUrl } from '../../../runtime/node-loader.ts';
import { out, type GlobalOptions } from '../context.ts';

/** The directory of this sluice install (the package root). */
const sluiceRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** The scaffold's files, by path. */
export function scaffold(name: string, sluiceDependency: string): Record<string, string> {
  const pkg = {
    name,
    version: '0.1.0',
    private: true,
    type: 'module',
    scripts: { dev: 'sluice dev', test: 'sluice test' },
    dependencies: { sluice: sluiceDependency },
  };
  const tsconfig = {
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      noEmit: true,
      allowImportingTsExtensions: true,
      skipLibCheck: true,
    },
    include: ['functions'],
  };
  return {
    'package.json': `${JSON.stringify(pkg, null, 2)}\n`,
    'tsconfig.json': `${JSON.stringify(tsconfig, null, 2)}\n`,
    '.gitignore': 'node_modules/\n.sluice-data/\n',
    'functions/word-count/function.yaml': `# A function: runs on every upload to bucket 'uploads' and marks the object with its word count.
apiVersion: sluice.dev/v1
kind: Function
metadata:
  name: word-count
spec:
  handler: index.ts
  triggers:
    - object:
        bucket: uploads
        events: [put]
  batch:
    maxRecords: 100
    maxWait: 20ms
`,
    'functions/word-count/index.ts': `import { defineFunction } from 'sluice';

/** Counts the words of each uploaded text object; sets attribute \`words\` and counts the files. */
export default defineFunction({
  async handler(records, ctx) {
    for (const r of records) {
      const text = await r.text();
      const words = text.split(/\\s+/).filter((w) => w.length > 0).length;
      r.setAttrs({ words });
      ctx.count('files');
    }
  },
});
`,
    'functions/word-count/word-count.test.ts': `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { invokeHandler } from 'sluice/testing';
import fn from './index.ts';

test('word-count - marks each object with its number of words', async () => {
  const r = await invokeHandler(fn, [
    { key: 'a.txt', body: 'three little words' },
    { key: 'empty.txt', body: '' },
  ]);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.byKey('a.txt')?.set, { words: 3 });
  assert.deepEqual(r.byKey('empty.txt')?.set, { words: 0 });
  assert.deepEqual(r.counters, { files: 2 });
});
`,
    'README.md': `# ${name}

A [sluice](https://github.com/) project: functions in \`functions/<name>/\` (a \`function.yaml\` spec and its handler).

    npm install
    npm test                 # the harness tests (functions/**/*.test.ts)
    npx sluice dev           # the local platform; edits reload the functions
    npx sluice objects put uploads ./README.md && npx sluice attrs uploads README.md
`,
  };
}

/** `*.test.ts` files under `dir`, sorted (node_modules and dot-folders left out). */
function testFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const outFiles: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) outFiles.push(...testFiles(p));
    else if (e.name.endsWith('.test.ts')) outFiles.push(p);
  }
  return outFiles.sort();
}

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('init')
    .description('scaffold a project: package.json depending on sluice, tsconfig, one function with its spec and a harness test')
    .argument('<dir>', 'directory to create (must be empty or absent)')
    .option('--sluice <spec>', "how the project depends on sluice: 'file:<tarball or dir>' (default: this sluice's directory)")
    .action((dir: string, o: { sluice?: string }) => {
      const target = resolve(dir);
      if (existsSync(target) && readdirSync(target).length > 0) throw new SluiceError('SLUICE_FILE_EXISTS', `sluice init: ${target} exists and is not empty`);
      let dep = o.sluice ?? `file:${sluiceRoot.replace(/\/$/, '')}`;
      // A relative file: path is relative to the new project, not to where init runs.
      if (dep.startsWith('file:') && !isAbsolute(dep.slice(5))) dep = `file:${relative(target, resolve(dep.slice(5)))}`;
      const files = scaffold(basename(target).toLowerCase().replace(/[^a-z0-9-]/g, '-') || 'sluice-project', dep);
      for (const [f, text] of Object.entries(files)) {
        mkdirSync(dirname(join(target, f)), { recursive: true });
        writeFileSync(join(target, f), text);
      }
      out(g(), { dir: target, files: Object.keys(files), sluice: dep }, () =>
        [`created ${target} (sluice from ${dep}):`, ...Object.keys(files).map((f) => `  ${f}`), '', `next: cd ${relative(process.cwd(), target).startsWith('..') ? target : relative(process.cwd(), target) || '.'} && npm install && npm test && npx sluice dev`].join('\n'),
      );
    });
  program
    .command('test')
    .description("run the project's *.test.ts files (default: all under ./functions) with node's test runner and sluice's TypeScript loader")
    .argument('[files...]')
    .action(async (files: string[]) => {
      const list = files.length > 0 ? files : testFiles(resolve('functions'));
      if (list.length === 0) throw new SluiceError('SLUICE_FILE_NOT_FOUND', 'sluice test: no *.test.ts files under ./functions');
      const code = await new Promise<number>((res, rej) => {
        const child = spawn(process.execPath, ['--import', tsxLoaderUrl, '--test', ...list], { stdio: 'inherit' });
        child.on('error', rej);
        child.on('exit', (c, s) => res(c ?? (s ? 1 : 0)));
      });
      if (code !== 0) process.exitCode = code;
    });
}
