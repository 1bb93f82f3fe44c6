/**
 * Console units: the committed page bundle matches its sources (build.ts), the sample ring keeps the
 * newest `capacity` samples in order, and each console option is checked at the boundary.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBackend } from '../../runtime/index.ts';
import { describe, expect, it } from 'vitest';
import { buildConsoleAssets } from '../../controller/console/build.ts';
import { startConsole } from '../../controller/console/index.ts';
import { parseAddress, resolveConsoleOptions, type ConsoleOptions } from '../../controller/console/console-options.ts';
import { imageType, runQuery, toJsonValue } from '../../controller/console/data.ts';
import { Ring } from '../../controller/console/sampler.ts';
import type { Backend } from '../../bindings/types.ts';

const fake = { plane: { list: async () => [], status: async () => ({}), logs: async function* () {} }, backend: { objects: async () => ({}) }, tokens: ['t'] } as unknown as ConsoleOptions;

describe('console/unit', () => {
  it('console/unit - the committed assets are what build.ts makes from ui/ (run npm run build:console)', async () => {
    const { js, css } = await buildConsoleAssets();
    expect(readFileSync(new URL('../../controller/console/assets/app.js', import.meta.url), 'utf8') === js).toBe(true);
    expect(readFileSync(new URL('../../controller/console/assets/app.css', import.meta.url), 'utf8') === css).toBe(true);
    // Nothing is fetched from elsewhere at run time.
    expect(js).not.toMatch(/https?:\/\/(?!www\.w3\.org)[a-z]/i);
  });

  it('console/unit - the ring keeps the newest samples, oldest first', () => {
    const r = new Ring<number>(3);
    expect(r.toArray()).toEqual([]);
    for (let i = 1; i <= 5; i++) r.push(i);
    expect(r.toArray()).toEqual([3, 4, 5]);
    expect(r.size).toBe(3);
  });

  it('console/unit - address must be host:port', () => {
    expect(parseAddress('127.0.0.1:0', 'a')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseAddress('[::1]:7071', 'a')).toEqual({ host: '::1', port: 7071 });
    for (const bad of ['7071', 'localhost', '1.2.3.4:99999', ':80']) expect(() => parseAddress(bad, 'console.address')).toThrow(/console.address must be host:port/);
  });

  it.each([
    ['sampleIntervalMs', 10],
    ['samplesPerFunction', 1],
    ['logLines', 0],
    ['logIdleMs', 5],
    ['sessionTtlMs', 1.5],
    ['maxSessions', 0],
  ] as const)('console/unit - option %s is checked', (name, v) => {
    expect(() => resolveConsoleOptions({ ...fake, [name]: v })).toThrow(new RegExp(`console.${name} must be an integer`));
  });

  it('console/unit - plane and backend are required; defaults resolve', () => {
    expect(() => resolveConsoleOptions({ ...fake, plane: undefined as never })).toThrow(/console.plane/);
    expect(() => resolveConsoleOptions({ ...fake, backend: {} as Backend })).toThrow(/console.backend/);
    expect(resolveConsoleOptions(fake)).toMatchObject({ host: '127.0.0.1', port: 7071, sampleIntervalMs: 1000, samplesPerFunction: 600, secureCookie: false });
  });

  it('console/unit - a console needs a token: tokens or token', async () => {
    await expect(startConsole({ ...fake, tokens: [], address: '127.0.0.1:0' })).rejects.toThrow(/console.tokens must hold at least one token/);
    const { tokens: _, ...noTokens } = fake;
    const c = await startConsole({ ...noTokens, token: 'one', address: '127.0.0.1:0' });
    try {
      expect(c.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect((await fetch(new URL('api/session', c.url), { headers: { authorization: 'Bearer one' } })).status).toBe(200);
    } finally {
      await c.close();
    }
  });

  it('console/unit - the query box runs SELECT through objects.query on a real backend, at most limit rows', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-console-q-'));
    const backend = await openBackend({ kind: 'local', dir });
    try {
      await backend.createBucket('uploads', { shards: 1 });
      const o = await backend.objects('uploads');
      for (let i = 0; i < 5; i++) {
        await o.put(`k${i}`, 'x'.repeat(i));
        await o.updateAttrs(`k${i}`, { expr: 'SET thumb = :t', values: { ':t': new Uint8Array([0xff, 0xd8, 0xff]) } });
      }
      const r = await runQuery(backend, 'SELECT size, thumb FROM uploads WHERE size > 0 ORDER BY size DESC', 2);
      expect(r.rows).toEqual([{ key: 'k4', size: 4, thumb: { $bytes: 3, $image: 'image/jpeg' } }, { key: 'k3', size: 3, thumb: { $bytes: 3, $image: 'image/jpeg' } }]);
      expect(r.truncated).toBe(true);
      expect((await runQuery(backend, 'SELECT key FROM uploads WHERE size > 3', 10)).truncated).toBe(false);
      await expect(runQuery(backend, 'SELECT key FROM uploads WHERE size >', 10)).rejects.toMatchObject({ code: 'SLUICE_EXPRESSION_SYNTAX' });
      await expect(runQuery(backend, 'SELECT key FROM nope', 10)).rejects.toMatchObject({ code: 'SLUICE_BUCKET_NOT_FOUND' });
      await expect(runQuery(backend, 'DELETE FROM uploads', 10)).rejects.toThrow(/must be a 'SELECT/);
    } finally {
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('console/unit - values become page JSON; images are told by their bytes', () => {
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1]);
    expect(toJsonValue({ a: jpeg, b: new Uint8Array([1, 2]), t: new Date(0), l: [1, 'x'] })).toEqual({ a: { $bytes: 5, $image: 'image/jpeg' }, b: { $bytes: 2 }, t: { $time: '1970-01-01T00:00:00.000Z' }, l: [1, 'x'] });
    expect(imageType(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe('image/png');
    expect(imageType(new TextEncoder().encode('<svg>'))).toBeUndefined();
  });
});
