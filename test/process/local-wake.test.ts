/**
 * local store: a reader waiting for stream records wakes on another process's commit through the change
 * notification, not by polling (the reader's fallback poll is set to 30 s, so only the notification can
 * wake it within the bound).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { wakeTagOf } from '../../bindings/local/local-store.ts';

const child = fileURLToPath(new URL('./local-wake-child.ts', import.meta.url));

it('stream/local - a waiting reader wakes on another process\'s append within milliseconds, without polling', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-wake-'));
  const reader = await LocalBackend.open({ dir, pollMs: 30_000 });
  const proc = spawn(process.execPath, ['--import', 'tsx', child, dir, 'wake'], { stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    await reader.streams().create('wake', { shards: 1 });
    const lines: string[] = [];
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout.setEncoding('utf8').on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean)));
    const waitLine = async (pred: (l: string) => boolean, ms: number) => {
      const end = Date.now() + ms;
      while (!lines.some(pred)) {
        if (Date.now() > end) throw new Error(`child did not answer: ${err}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await waitLine((l) => l === 'ready', 30_000);
    const s = reader.streams();
    const delays: number[] = [];
    let seq = (await s.seek('wake', 0, 'earliest')).seq;
    for (let i = 0; i < 5; i++) {
      const got = s.getRecords({ stream: 'wake', shard: 0, seq }, { maxWaitMs: 20_000 });
      // Let the reader start waiting before the other process appends.
      await new Promise((r) => setTimeout(r, 50));
      const t0 = performance.now();
      proc.stdin.write(`r${i}\n`);
      const page = await got;
      delays.push(performance.now() - t0);
      expect(page.records.map((r) => Buffer.from(r.data).toString())).toEqual([`r${i}`]);
      seq = page.next.seq;
    }
    // The child's put itself is a commit (fsync); generous bound for a loaded machine, far below the 30 s poll.
    expect(Math.max(...delays)).toBeLessThan(2_000);
  } finally {
    proc.stdin.end('quit\n');
    await new Promise((r) => proc.once('exit', r));
    await reader.close();
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

it("stream/local - another handle's append wakes the readers of that shard only, not every waiting reader", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-wake-'));
  const writer = await LocalBackend.open({ dir });
  const reader = await LocalBackend.open({ dir, pollMs: 30_000 });
  try {
    const shards = 8;
    await writer.streams().create('many', { shards });
    const tags: string[] = [];
    reader.store.events.on('append', (t: string) => tags.push(t));
    const s = reader.streams();
    // A reader waiting on every shard; the writer appends to one of them.
    const waits = Array.from({ length: shards }, (_, shard) => s.getRecords({ stream: 'many', shard, seq: 1 }, { maxWaitMs: 3_000 }));
    const [r] = await writer.streams().putRecords('many', [{ data: 'x', partitionKey: 'k' }]);
    expect(r?.ok).toBe(true);
    const target = (r as { shard: number }).shard;
    const pages = await Promise.all(waits);
    expect(pages.map((p) => p.records.length)).toEqual(Array.from({ length: shards }, (_, i) => (i === target ? 1 : 0)));
    // What woke the reader's handle: the slot of the shard appended to, never "anything changed".
    expect(tags.length).toBeGreaterThan(0);
    expect(new Set(tags)).toEqual(new Set([wakeTagOf('many', target)]));
  } finally {
    await reader.close();
    await writer.close();
    await rm(dir, { recursive: true, force: true });
  }
}, 30_000);
