/** records: reading a change record's type without decoding it (runtime/records.ts peekChangeType). */
import { describe, expect, it } from 'vitest';
import { codec, encodeChange } from '../../bindings/shared.ts';
import type { ChangeRecord } from '../../bindings/types.ts';
import { peekChange, peekChangeType } from '../../runtime/records.ts';

const rec = (type: ChangeRecord['type'], key: string): ChangeRecord => ({
  bucket: 'uploads',
  key,
  type,
  version: 7,
  size: 10,
  etag: 'e',
  mtime: new Date(0),
  sequencer: '0000000000000007',
  attrsRevision: 2,
  contentType: 'text/plain',
});

describe('records', () => {
  it('records - peekChangeType reads the type of every encoded change record, for keys of any length', () => {
    for (const type of ['put', 'delete', 'attrs'] as const)
      for (const key of ['k', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(255), 'w'.repeat(256), 'é¤type¥attrs', 'a4 type a5 attrs'])
        expect(peekChangeType(encodeChange(rec(type, key))), `${type} ${key.length}`).toBe(type);
  });

  it('records - peekChangeType gives up (undefined) on anything not shaped like a change record', () => {
    expect(peekChangeType(new Uint8Array())).toBeUndefined();
    expect(peekChangeType(codec.pack([1, 2]))).toBeUndefined();
    expect(peekChangeType(codec.pack({ bucket: 1, type: 'attrs' }))).toBeUndefined();
    expect(peekChangeType(codec.pack({ other: 'x' }))).toBeUndefined();
    expect(peekChangeType(encodeChange(rec('attrs', 'k')).subarray(0, 12))).toBeUndefined();
  });

  it('records - peekChange reads the cause\'s function written right after the type, and never invents one', () => {
    const { bucket, key, type, ...rest } = rec('attrs', 'k');
    const withCause = { bucket, key, type, cause: { fn: 'image-meta', hop: 3 }, ...rest };
    expect(peekChange(encodeChange(withCause))).toEqual({ type: 'attrs', causeFn: 'image-meta' });
    expect(peekChange(encodeChange(rec('put', 'k')))).toEqual({ type: 'put' });
    // A cause elsewhere in the map is not seen by the peek (the caller decodes in full and finds it).
    expect(peekChange(encodeChange({ ...rec('attrs', 'k'), cause: { fn: 'x', hop: 1 } }))?.causeFn).toBeUndefined();
    expect(peekChange(codec.pack({ bucket: 'b', key: 'k', type: 'put', cause: 'nope' }))).toEqual({ type: 'put' });
  });
});
