/** Helpers shared by the conformance suites. */
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { SluiceError } from '../../bindings/errors.ts';
import { decodeChange, shardOf } from '../../bindings/shared.ts';
import type { ChangeRecord, ObjectBinding } from '../../bindings/types.ts';
import type { BackendContext } from './backends.ts';
import { readShard } from '../support/poll.ts';

export const md5 = (b: Uint8Array | string) => createHash('md5').update(b).digest('hex');

/** Asserts that `p` rejects with a SluiceError of `code`; returns the error. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<SluiceError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(SluiceError);
    expect((e as SluiceError).code).toBe(code);
    return e as SluiceError;
  }
  throw new Error(`expected a rejection with ${code}, but the call succeeded`);
}


/** Reads every change record of a bucket (all shards), in per-shard order. */
export async function readChanges(ctx: BackendContext, obj: ObjectBinding): Promise<ChangeRecord[]> {
  const info = await obj.info();
  const streams = ctx.backend.streams();
  const out: ChangeRecord[] = [];
  for (let shard = 0; shard < info.shards; shard++) {
    for (const r of await readShard(streams, info.changeStream, shard)) {
      const c = decodeChange(r.data);
      expect(shardOf(c.key, info.shards)).toBe(shard);
      out.push(c);
    }
  }
  return out;
}

