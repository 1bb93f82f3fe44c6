import { describe, expect, it } from 'vitest';
import { assign, owners } from '../../runtime/assign.ts';

describe('assign', () => {
  it('assign - every shard has exactly one owner and replicas differ by at most one shard', () => {
    for (const S of [1, 7, 16, 64, 256]) {
      for (let R = 1; R <= 12; R++) {
        const all = Array.from({ length: R }, (_, i) => assign(S, R, i));
        expect(all.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: S }, (_, s) => s));
        const sizes = all.map((a) => a.length);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }
    }
  });

  it('assign - is pure: the same inputs give the same answer', () => {
    expect(assign(64, 5, 3)).toEqual(assign(64, 5, 3));
    expect(owners(64, 5)).toEqual(owners(64, 5));
  });

  it('assign - adding one replica moves about 1/R of the shards', () => {
    for (const S of [64, 256, 1024]) {
      for (let R = 1; R < 10; R++) {
        const a = owners(S, R);
        const b = owners(S, R + 1);
        const moved = a.filter((o, s) => o !== b[s]).length;
        const ideal = S / (R + 1);
        // Bounded loads cost a little extra movement over the ideal S/(R+1).
        expect(moved, `S=${S} R=${R}→${R + 1}`).toBeLessThanOrEqual(Math.ceil(ideal * 1.25) + R);
      }
    }
  });

  it('assign - removing the last replica moves only its shards and some rebalancing', () => {
    const a = owners(128, 4);
    const b = owners(128, 3);
    const moved = a.filter((o, s) => o !== b[s]).length;
    expect(moved).toBeLessThanOrEqual(Math.ceil((128 / 4) * 1.25) + 4);
  });

  it('assign - rejects bad arguments', () => {
    expect(() => assign(0, 1, 0)).toThrow(/shards/);
    expect(() => assign(8, 0, 0)).toThrow(/replicas/);
    expect(() => assign(8, 2, 2)).toThrow(/ordinal/);
  });
});
