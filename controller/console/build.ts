/**
 * Builds the console's page into `assets/` (committed, so the package serves it without esbuild):
 * `assets/app.js` — ui/app.js with preact, htm and uPlot bundled and minified (an ES module, no
 * source map); `assets/app.css` — uPlot's stylesheet, then ui/style.css.
 *
 * Run: `npm run build:console` (tsx controller/console/build.ts). `--check` builds in memory and
 * exits 1 when the committed assets differ (test/unit/console-assets.test.ts runs the same check).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/** The bundle and stylesheet as built from the sources now. */
export async function buildConsoleAssets(): Promise<{ js: string; css: string }> {
  const r = await build({
    entryPoints: [here('./ui/app.js')],
    bundle: true,
    format: 'esm',
    minify: true,
    target: 'es2020',
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const js = r.outputFiles[0]!.text;
  const css = `${readFileSync(fileURLToPath(import.meta.resolve('uplot/dist/uPlot.min.css')), 'utf8').trim()}\n${readFileSync(here('./ui/style.css'), 'utf8')}`;
  return { js, css };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { js, css } = await buildConsoleAssets();
  if (process.argv.includes('--check')) {
    const same = readFileSync(here('./assets/app.js'), 'utf8') === js && readFileSync(here('./assets/app.css'), 'utf8') === css;
    process.stdout.write(same ? 'console assets are up to date\n' : 'console assets are stale: run npm run build:console\n');
    process.exit(same ? 0 : 1);
  }
  writeFileSync(here('./assets/app.js'), js);
  writeFileSync(here('./assets/app.css'), css);
  process.stdout.write(`console assets: app.js ${js.length} bytes, app.css ${css.length} bytes\n`);
}
