/**
 * Shard ownership as a pure function (DESIGN invariant 4): `assign(shards, replicas, ordinal)` lists
 * the shards that replica `ordinal` of `replicas` owns. Every replica computes the same answer alone.
 *
 * Rendezvous (highest-random-weight) hashing with bounded loads: each shard ranks the replicas by
 * hash(shard, replica) and goes to the best-ranked one that still has room (loads kept within one shard of each other).
 * Plain rendezvous moves only ~1/R of the shards when a replica is added but can be uneven for small
 * S; the load bound keeps every replica within one shard of the others while still moving little
 * (the test measures it: scaling R → R+1 moves at most about S/(R+1) + R shards).
 */

function mix(a: number, b: number): number {
  // A 32-bit avalanche of (a, b) (murmur3 finalizer over a combined word); deterministic everywhere.
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Owner of every shard: `owners[shard] = ordinal`. */
export function owners(shards: number, replicas: number): number[] {
  if (!Number.isInteger(shards) || shards < 1) throw new RangeError(`assign: shards must be a positive integer, got ${shards}`);
  if (!Number.isInteger(replicas) || replicas < 1) throw new RangeError(`assign: replicas must be a positive integer, got ${replicas}`);
  const floor = Math.floor(shards / replicas);
  // Exactly `extra` replicas carry floor+1 shards; the rest carry floor. Loads differ by at most one.
  const extra = shards % replicas;
  let atCeil = 0;
  const load = new Array<number>(replicas).fill(0);
  const out = new Array<number>(shards);
  // Shards are placed in a fixed, hash-derived order so that which shard hits a full replica first does
  // not depend on shard numbering.
  const order = Array.from({ length: shards }, (_, s) => s).sort((a, b) => mix(a, 0x5bd1e995) - mix(b, 0x5bd1e995) || a - b);
  for (const s of order) {
    const ranked = Array.from({ length: replicas }, (_, r) => r).sort((x, y) => mix(s, y) - mix(s, x) || x - y);
    const r = ranked.find((c) => load[c]! < floor || (load[c] === floor && atCeil < extra))!;
    if (load[r] === floor) atCeil++;
    load[r]!++;
    out[s] = r;
  }
  return out;
}

/** Shards owned by replica `ordinal` of `replicas`, ascending. */
export function assign(shards: number, replicas: number, ordinal: number): number[] {
  if (!Number.isInteger(replicas) || replicas < 1) throw new RangeError(`assign: replicas must be a positive integer, got ${replicas}`);
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= replicas) throw new RangeError(`assign: ordinal must be in 0..${replicas - 1}, got ${ordinal}`);
  const o = owners(shards, replicas);
  const mine: number[] = [];
  for (let s = 0; s < shards; s++) if (o[s] === ordinal) mine.push(s);
  return mine;
}
