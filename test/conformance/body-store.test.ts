/**
 * The external body store's own guarantees, on every backend that has one (local+s3, nats+s3) against a
 * real S3-protocol server: where bodies go, that overwrites, deletes and refused writes leave no body
 * behind, that the collector removes exactly the unreferenced bodies past the grace period (bounded,
 * resumable), and how failures surface. The object conformance suite itself runs on these backends too.
 */
import { DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import type { BodyStoreOptions, CollectOptions, CollectResult } from '../../bindings/body-store.ts';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { S3BodyStore } from '../../bindings/s3/index.ts';
import type { Backend } from '../../bindings/types.ts';
import { openChildBackend } from '../support/child-backend.ts';
import { forEachBackend, tn } from './backends.ts';
import { rejectsWith } from './helpers.ts';

interface Collecting {
  collectBodies(options?: CollectOptions): Promise<CollectResult>;
}

forEachBackend('bodies', (ctx) => {
  const t = (what: string) => tn('bodies', ctx, what);
  const bodies = (): BodyStoreOptions => ctx.childSpec().bodies!;
  const client = () => {
    const b = bodies();
    return new S3Client({ endpoint: b.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: b.accessKeyId, secretAccessKey: b.secretAccessKey } });
  };
  /** Every S3 key under a sluice bucket's prefix. */
  const stored = async (bucket: string): Promise<string[]> => {
    const c = client();
    const out: string[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await c.send(new ListObjectsV2Command({ Bucket: bodies().bucket, Prefix: `${bucket}/`, ...(token ? { ContinuationToken: token } : {}) }));
        for (const o of r.Contents ?? []) out.push(o.Key!);
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
    } finally {
      c.destroy();
    }
    return out;
  };
  const collect = (o?: CollectOptions) => (ctx.backend as unknown as Collecting).collectBodies(o);
  const bucket = async () => {
    const name = ctx.uid('bs');
    await ctx.backend.createBucket(name, { shards: 2 });
    return { name, o: await ctx.backend.objects(name) };
  };
  const withStore = async <T>(fn: (s: S3BodyStore) => Promise<T>): Promise<T> => {
    const s = await S3BodyStore.open(bodies());
    try {
      return await fn(s);
    } finally {
      await s.close();
    }
  };

  it(t('a put stores its body in S3 under a new key; an overwrite and a delete remove the old body'), async () => {
    const { name, o } = await bucket();
    await o.put('k', 'one');
    const first = await stored(name);
    expect(first).toHaveLength(1);
    await o.put('k', 'two!');
    const second = await stored(name);
    expect(second).toHaveLength(1);
    expect(second[0]).not.toBe(first[0]);
    expect(Buffer.from((await o.get('k')).body).toString()).toBe('two!');
    // An attribute update keeps the body where it is.
    await o.updateAttrs('k', 'SET n = if_not_exists(n, 0) + 1');
    expect(await stored(name)).toEqual(second);
    expect(Buffer.from((await o.get('k')).body).toString()).toBe('two!');
    expect(await o.delete('k')).toBe(true);
    expect(await stored(name)).toEqual([]);
  });

  it(t('a refused conditional put leaves no body behind'), async () => {
    const { name, o } = await bucket();
    await o.put('k', 'first', { ifNoneMatch: '*' });
    await rejectsWith(o.put('k', 'second', { ifNoneMatch: '*' }), 'SLUICE_CONDITION_FAILED');
    await rejectsWith(o.put('k', 'third', { ifMatch: 'nope' }), 'SLUICE_CONDITION_FAILED');
    expect(await stored(name)).toHaveLength(1);
    expect(Buffer.from((await o.get('k')).body).toString()).toBe('first');
  });

  it(t('bodies up to inlineMaxBytes stay in the backend; larger ones go to S3; either is readable by every client'), async () => {
    const { name, o } = await bucket();
    const other = await openChildBackend({ ...ctx.childSpec(), bodies: { ...bodies(), inlineMaxBytes: 16 } });
    try {
      const oo = await other.objects(name);
      await oo.put('small', 'sixteen bytes!!!');
      expect(await stored(name)).toEqual([]);
      await oo.put('large', 'seventeen bytes!!');
      expect(await stored(name)).toHaveLength(1);
      expect(Buffer.from((await o.get('small')).body).toString()).toBe('sixteen bytes!!!');
      expect(Buffer.from((await o.get('large')).body).toString()).toBe('seventeen bytes!!');
      // Overwriting an external body with an inline one removes the external one.
      await oo.put('large', 'now small');
      expect(await stored(name)).toEqual([]);
      expect(Buffer.from((await o.get('large')).body).toString()).toBe('now small');
    } finally {
      await other.close();
    }
  });

  it(t('ranged reads and streams of a 3 MiB body return exactly the requested bytes'), async () => {
    const { o } = await bucket();
    const data = randomBytes(3 * 1024 * 1024);
    await o.put('big', data);
    const part = await o.get('big', { range: { start: 1_000_000, end: 2_500_001 } });
    expect(part.range).toEqual({ start: 1_000_000, end: 2_500_001 });
    expect(Buffer.from(part.body).equals(data.subarray(1_000_000, 2_500_001))).toBe(true);
    const tail = await o.get('big', { range: { start: data.length - 10 } });
    expect(Buffer.from(tail.body).equals(data.subarray(data.length - 10))).toBe(true);
    const s = await o.getStream('big', { range: { start: 5 } });
    const chunks: Buffer[] = [];
    for await (const c of s.body) chunks.push(Buffer.from(c));
    expect(Buffer.concat(chunks).equals(data.subarray(5))).toBe(true);
    // Leaving a stream early releases it; the next read works.
    const s2 = await o.getStream('big');
    for await (const _c of s2.body) break;
    expect((await o.get('big', { range: { start: 0, end: 3 } })).body.byteLength).toBe(3);
  });

  it(t('the collector removes unreferenced bodies past the grace period and keeps young and referenced ones'), async () => {
    const { name, o } = await bucket();
    await o.put('kept', 'referenced body');
    // Orphans as a crash between upload and commit leaves them: uploaded, never committed.
    const orphans = await withStore(async (s) => [await s.put(name, 'kept', Buffer.from('orphan 1')), await s.put(name, 'never-committed', Buffer.from('orphan 2'))]);
    expect(await stored(name)).toHaveLength(3);
    const young = await collect({ graceMs: 3_600_000 });
    expect(young.young).toBeGreaterThanOrEqual(2);
    expect(await stored(name)).toHaveLength(3);
    const r = await collect({ graceMs: 0 });
    expect(r.deleted).toBeGreaterThanOrEqual(2);
    const left = await stored(name);
    expect(left).toHaveLength(1);
    expect(orphans).not.toContain(left[0]);
    expect(Buffer.from((await o.get('kept')).body).toString()).toBe('referenced body');
  });

  it(t('a collector run is bounded by maxBodies and the next run continues where it stopped'), async () => {
    const { name, o } = await bucket();
    await o.put('live', 'x');
    await withStore(async (s) => {
      for (let i = 0; i < 7; i++) await s.put(name, `o${i}`, Buffer.from('orphan'));
    });
    const first = await collect({ graceMs: 0, maxBodies: 3 });
    expect(first.scanned).toBeLessThanOrEqual(3);
    expect(first.more).toBe(true);
    let runs = 1;
    for (let r = first; r.more && runs < 500; runs++) r = await collect({ graceMs: 0, maxBodies: 3 });
    expect(runs).toBeGreaterThan(2);
    expect(await stored(name)).toHaveLength(1);
    expect(Buffer.from((await o.get('live')).body).toString()).toBe('x');
  });

  it(t('the periodic collector runs by itself every gcIntervalMs'), async () => {
    const { name, o } = await bucket();
    await o.put('live', 'x');
    await withStore((s) => s.put(name, 'orphan', Buffer.from('orphan')));
    expect(await stored(name)).toHaveLength(2);
    const other = await openChildBackend({ ...ctx.childSpec(), bodies: { ...bodies(), gcIntervalMs: 200, gcGraceMs: 1 } });
    try {
      const deadline = Date.now() + 30_000;
      while ((await stored(name)).length > 1) {
        if (Date.now() > deadline) throw new Error('the periodic collector did not remove the orphan in 30 s');
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await other.close();
    }
    expect(Buffer.from((await o.get('live')).body).toString()).toBe('x');
  });

  it(t('a put that would commit after the grace period fails with SLUICE_TIMEOUT and leaves no body'), async () => {
    const { name } = await bucket();
    const other = await openChildBackend({ ...ctx.childSpec(), bodies: { ...bodies(), gcGraceMs: 1 } });
    try {
      const oo = await other.objects(name);
      const e = await rejectsWith(oo.put('slow', randomBytes(2 * 1024 * 1024)), 'SLUICE_TIMEOUT');
      expect(e.message).toContain('grace period of 1 ms');
      expect(await oo.head('slow')).toBeUndefined();
      expect(await stored(name)).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it(t('keys too long to name their body keep working: hashed body key, collector reads the key back'), async () => {
    const { name, o } = await bucket();
    const key = `long/${'é'.repeat(500)}`;
    await o.put(key, 'first');
    await o.put(key, 'second');
    expect(Buffer.from((await o.get(key)).body).toString()).toBe('second');
    const refs = await stored(name);
    expect(refs).toHaveLength(1);
    expect(refs[0]!.length).toBeLessThan(1024);
    await withStore((s) => s.put(name, key, Buffer.from('orphan')));
    await collect({ graceMs: 0 });
    expect(await stored(name)).toEqual(refs);
    expect(await o.delete(key)).toBe(true);
    expect(await stored(name)).toEqual([]);
  });

  it(t('a body removed behind sluice makes get fail with SLUICE_INTERNAL, never return other bytes'), async () => {
    const { name, o } = await bucket();
    await o.put('k', 'body');
    const [ref] = await stored(name);
    const c = client();
    await c.send(new DeleteObjectCommand({ Bucket: bodies().bucket, Key: ref! }));
    c.destroy();
    const e = await rejectsWith(o.get('k'), 'SLUICE_INTERNAL');
    expect(e.message).toContain(ref!);
    await rejectsWith(o.getStream('k'), 'SLUICE_INTERNAL');
    // Metadata is still there and can be overwritten.
    await o.put('k', 'again');
    expect(Buffer.from((await o.get('k')).body).toString()).toBe('again');
  });

  it(t('a client opened without the body store refuses to read an external body and says why'), async () => {
    const { name, o } = await bucket();
    await o.put('k', 'external');
    const { bodies: _b, ...plain } = ctx.childSpec();
    const other = await openChildBackend(plain);
    try {
      const e = await rejectsWith((await other.objects(name)).get('k'), 'SLUICE_BACKEND_UNAVAILABLE');
      expect(e.message).toContain("option 'bodies'");
    } finally {
      await other.close();
    }
  });

  it(t('a missing body bucket, refused credentials or an unreachable endpoint fail the open with SLUICE_BACKEND_UNAVAILABLE'), async () => {
    const open = (b: BodyStoreOptions): Promise<Backend> => {
      const spec = ctx.childSpec();
      return spec.kind === 'local' ? LocalBackend.open({ dir: spec.dir, bodies: b }) : NatsBackend.open({ servers: spec.url, bodies: b });
    };
    const b = { ...bodies(), maxAttempts: 1 };
    const e1 = await rejectsWith(open({ ...b, bucket: 'no-such-bucket' }), 'SLUICE_BACKEND_UNAVAILABLE');
    expect(e1.message).toContain('no-such-bucket');
    // An unknown key id (s3rver 3.7 checks key ids, not secrets, on these requests).
    const e2 = await rejectsWith(open({ ...b, accessKeyId: 'WRONG' }), 'SLUICE_BACKEND_UNAVAILABLE');
    expect(e2.message).toContain('refused');
    await rejectsWith(open({ ...b, endpoint: 'http://127.0.0.1:1' }), 'SLUICE_BACKEND_UNAVAILABLE');
  });
});
