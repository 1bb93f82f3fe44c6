import { describe, expect, it } from 'vitest';
import { creditsPerReplica, desiredReplicas, type ScaleInput } from '../../controller/autoscaler.ts';

const base: ScaleInput = {
  lag: 0,
  incomingPerSecond: 0,
  throughputPerReplica: 1000,
  targetLagPerReplica: 1000,
  current: 1,
  min: 1,
  max: 10,
  now: 1_000_000,
  lastActiveAt: 1_000_000,
  scaleToZeroAfterMs: 300_000,
  history: [],
};

describe('autoscaler', () => {
  it('autoscaler - lag drives replicas: ceil(lag / target), clamped to max', () => {
    expect(desiredReplicas({ ...base, lag: 3500 }).replicas).toBe(4);
    expect(desiredReplicas({ ...base, lag: 50_000 }).replicas).toBe(10);
  });

  it('autoscaler - incoming rate over per-replica throughput drives replicas too', () => {
    expect(desiredReplicas({ ...base, incomingPerSecond: 2500 }).replicas).toBe(3);
  });

  it('autoscaler - never below min while active, never above max', () => {
    expect(desiredReplicas({ ...base, min: 3, current: 3 }).replicas).toBe(3);
    expect(desiredReplicas({ ...base, max: 2, lag: 9999 }).replicas).toBe(2);
  });

  it('autoscaler - scale-down waits for the highest recommendation of the window', () => {
    const history = [
      { at: base.now - 30_000, replicas: 5 },
      { at: base.now - 90_000, replicas: 8 },
    ];
    const d = desiredReplicas({ ...base, current: 6, lag: 0, history, scaleDownWindowMs: 60_000 });
    expect(d.replicas).toBe(5);
    expect(d.recommendation).toBe(1);
    const later = desiredReplicas({ ...base, current: 5, lag: 0, history: [], scaleDownWindowMs: 60_000 });
    expect(later.replicas).toBe(1);
  });

  it('autoscaler - scale-up is immediate by default and stabilised with a window', () => {
    expect(desiredReplicas({ ...base, lag: 4000, current: 1 }).replicas).toBe(4);
    const h = [{ at: base.now - 5_000, replicas: 2 }];
    expect(desiredReplicas({ ...base, lag: 4000, current: 1, history: h, scaleUpWindowMs: 10_000 }).replicas).toBe(2);
  });

  it('autoscaler - scales to zero after the idle time when min is 0, not before', () => {
    const idle = { ...base, min: 0, current: 2, lastActiveAt: base.now - 299_000 };
    expect(desiredReplicas(idle).replicas).toBeGreaterThan(0);
    expect(desiredReplicas({ ...idle, lastActiveAt: base.now - 300_000 }).replicas).toBe(0);
    expect(desiredReplicas({ ...base, min: 1, current: 2, lastActiveAt: 0 }).replicas).toBe(1);
  });

  it('autoscaler - activation from zero as soon as records arrive', () => {
    const d = desiredReplicas({ ...base, min: 0, current: 0, lag: 1, lastActiveAt: 0 });
    expect(d.replicas).toBe(1);
    expect(d.reason).toMatch(/activation/);
    expect(desiredReplicas({ ...base, min: 0, current: 0, lag: 0, lastActiveAt: 0 }).replicas).toBe(0);
    expect(desiredReplicas({ ...base, min: 0, current: 0, lag: 5000, lastActiveAt: 0 }).replicas).toBe(5);
  });

  it('autoscaler - is pure and rejects impossible bounds', () => {
    const i = { ...base, lag: 2500, current: 2, history: [{ at: base.now - 1, replicas: 3 }] };
    expect(desiredReplicas(i)).toEqual(desiredReplicas(i));
    expect(() => desiredReplicas({ ...base, min: 5, max: 2 })).toThrow(/min/);
  });

  it('autoscaler - a function-wide cap on batches in flight is split across replicas', () => {
    const sum = (cap: number, r: number) => Array.from({ length: r }, (_, i) => creditsPerReplica(cap, r, i, 2)).reduce((a, b) => a + b, 0);
    expect(sum(8, 4)).toBe(8);
    expect(sum(10, 3)).toBe(10);
    expect(sum(7, 7)).toBe(7);
    expect(creditsPerReplica(10, 3, 0, 2)).toBe(4);
    expect(creditsPerReplica(10, 3, 2, 2)).toBe(3);
    // Below one per replica, each keeps one: the effective cap is the replica count.
    expect(sum(2, 4)).toBe(4);
    expect(creditsPerReplica(undefined, 4, 0, 3)).toBe(3);
  });
});
