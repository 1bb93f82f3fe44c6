/** state: every key of the state table and the typed codecs of what is stored under it (runtime/state.ts). */
import { describe, expect, it } from 'vitest';
import { decodeCheckpoint, decodeLease, decodeReplicas, encodeCheckpoint, encodeLease, StateKeys, type Checkpoint } from '../../runtime/state.ts';

describe('state', () => {
  it('state - keys are built in one place', () => {
    expect(StateKeys.lease('fn', 3)).toBe('lease/fn/3');
    expect(StateKeys.checkpoint('fn', 3)).toBe('ckpt/fn/3');
    expect(StateKeys.replicas('fn')).toBe('replicas/fn');
  });

  it('state - a checkpoint round-trips through its item encoding', () => {
    const c: Checkpoint = {
      seq: 42,
      pending: [
        { seq: 7, key: 'a', attempts: 2, firstAt: 1, nextAt: 9, error: { code: 'SLUICE_TIMEOUT', message: 'slow' } },
        { seq: 8, key: 'a', attempts: 0, firstAt: 1, nextAt: 0 },
      ],
      holds: [{ counts: { seen: 3 }, seqs: [8] }],
      counts: { seen: 30, has_ssn: 2 },
      handled: 33,
      epoch: 5,
    };
    expect(decodeCheckpoint(encodeCheckpoint(c))).toEqual(c);
    expect(decodeCheckpoint(encodeCheckpoint(c), 6).epoch).toBe(6);
  });

  it('state - a checkpoint of an older version (no holds) and fields of the wrong type decode safely', () => {
    expect(decodeCheckpoint({ seq: 5, pending: [], counts: { n: 1 }, handled: 2, epoch: 1 })).toEqual({ seq: 5, pending: [], holds: [], counts: { n: 1 }, handled: 2, epoch: 1 });
    expect(decodeCheckpoint({ seq: 'x', pending: [{ key: 'no seq' }, 3], counts: { n: 'one', m: 2 }, holds: [{ counts: {}, seqs: ['a', 4] }] })).toEqual({
      seq: 0,
      pending: [],
      holds: [{ counts: {}, seqs: [4] }],
      counts: { m: 2 },
      handled: 0,
      epoch: 0,
    });
  });

  it('state - leases and replica counts', () => {
    expect(decodeLease(encodeLease({ owner: 'w1', epoch: 3, expiresAt: 99, gen: 2 }))).toEqual({ owner: 'w1', epoch: 3, expiresAt: 99, gen: 2 });
    expect(decodeLease({ owner: 1, epoch: 'x' })).toEqual({ owner: '', epoch: 0, expiresAt: 0, gen: 0 });
    expect(decodeReplicas({ replicas: 3, at: 10 })).toEqual({ replicas: 3, at: 10 });
    expect(decodeReplicas({ replicas: 0 })).toBeUndefined();
    expect(decodeReplicas({ replicas: 1.5 })).toBeUndefined();
  });
});

describe('state - writes whose answer was lost', () => {
  // On NATS a write can land while its answer is lost (a timeout during a leader change); the next
  // CAS then meets this owner's own write. That is not a lost lease (issue 10: it stopped the shard).
  async function store() {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { LocalBackend } = await import('../../bindings/local/index.ts');
    const { openStateTable } = await import('../../runtime/state.ts');
    const backend = await LocalBackend.open({ dir: mkdtempSync(join(tmpdir(), 'sluice-state-')) });
    const kv = await openStateTable(backend);
    let loseNext = false;
    // The write happens, its answer does not arrive.
    const lossy = new Proxy(kv, {
      get(t, p, r) {
        if (p === 'putItem')
          return async (...a: Parameters<typeof kv.putItem>) => {
            const w = await t.putItem(...a);
            if (loseNext) {
              loseNext = false;
              throw new (await import('../../bindings/errors.ts')).BindingError('SLUICE_TIMEOUT', 'answer lost');
            }
            return w;
          };
        const v = Reflect.get(t, p, r) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
    return { backend, kv: lossy, lose: () => (loseNext = true) };
  }

  it('state - a checkpoint write that landed unanswered does not read as SLUICE_LEASE_LOST; another epoch still does', async () => {
    const { CheckpointStore } = await import('../../runtime/state.ts');
    const { backend, kv, lose } = await store();
    try {
      const ck = new CheckpointStore(kv, 'fn', 0);
      const c0 = await ck.claim(1, 3);
      lose();
      await expect(ck.save({ ...c0, seq: 10 })).rejects.toMatchObject({ code: 'SLUICE_TIMEOUT' });
      await ck.save({ ...c0, seq: 5 }); // from the last checkpoint known to have landed, as after a crash
      expect((await kv.getItem('ckpt/fn/0'))?.item.seq).toBe(5);
      const other = new CheckpointStore(kv, 'fn', 0);
      await other.claim(1, 4);
      await expect(ck.save({ ...c0, seq: 6 })).rejects.toMatchObject({ code: 'SLUICE_LEASE_LOST' });
    } finally {
      await backend.close();
    }
  });

  it('state - a lease renewal that landed unanswered is still our lease; a taken-over one is lost', async () => {
    const { Leases } = await import('../../runtime/state.ts');
    const { backend, kv, lose } = await store();
    try {
      const a = new Leases(kv, 'fn', 'a', 10_000);
      const lease = (await a.acquire(0))!;
      lose();
      await expect(a.renew(lease)).rejects.toMatchObject({ code: 'SLUICE_TIMEOUT' });
      expect(await a.renew(lease)).toBe(true);
      await kv.putItem('lease/fn/0', encodeLease({ owner: 'b', epoch: lease.epoch + 1, expiresAt: Date.now() + 10_000, gen: 0 }));
      expect(await a.renew(lease)).toBe(false);
    } finally {
      await backend.close();
    }
  });
});
