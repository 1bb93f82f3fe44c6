/**
 * `sluice dev --demo`: the photo pipeline's chain upload → image-meta → geo-index runs on the sample
 * photos (functions/image-meta/samples) and the demo prints geo-index's `photos-by-place` entries near
 * New York — the three located there, not the one in Paris nor the screenshot without GPS.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { run } from '../support/sluice-process.ts';

it('dev/demo - prints the chain upload → image-meta → geo-index: photos-by-place entries near New York', async () => {
  const data = mkdtempSync(join(tmpdir(), 'sluice-demo-'));
  try {
    const r = await run(['dev', '--data', data, '--port', '0', '--demo', '--exit-after-demo', '--ui', '127.0.0.1:0', '--http', '127.0.0.1:0', '--s3', '0', '--metrics', '127.0.0.1:0'], { timeoutMs: 150_000 });
    const out = r.stdout;
    expect(out, r.stderr.slice(-2000)).toContain("geo-index put 4 located photo(s) in table 'photos-by-place'");
    const listed = out.slice(out.indexOf('geo-index put')).split('\n').slice(1).filter((l) => l.startsWith('  demo/')).map((l) => l.trim().split(/\s+/)[0]);
    expect(listed).toEqual(['demo/brooklyn-bridge.webp', 'demo/central-park.jpg', 'demo/liberty.jpg']);
    expect(r.code).toBe(0);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
}, 180_000);
