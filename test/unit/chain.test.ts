/** chain: the rules on a record's cause (runtime/chain.ts). */
import { describe, expect, it } from 'vitest';
import { chainVerdict, commitCause, DEFAULT_MAX_HOPS } from '../../runtime/chain.ts';

const o = { selfTrigger: false, maxHops: 3 };

describe('chain', () => {
  it('chain - a commit is one hop past the record that triggered it (a user write is hop 0)', () => {
    expect(commitCause('a', undefined)).toEqual({ fn: 'a', hop: 1 });
    expect(commitCause('b', { fn: 'a', hop: 1 })).toEqual({ fn: 'b', hop: 2 });
    expect(DEFAULT_MAX_HOPS).toBe(8);
  });

  it('chain - own changes are dropped unless selfTrigger; others run below maxHops and dead-letter at it', () => {
    expect(chainVerdict(undefined, 'a', o)).toEqual({ action: 'run' });
    expect(chainVerdict({ fn: 'a', hop: 1 }, 'a', o)).toEqual({ action: 'drop' });
    // Dropped even past the limit: an own change never dead-letters.
    expect(chainVerdict({ fn: 'a', hop: 9 }, 'a', o)).toEqual({ action: 'drop' });
    expect(chainVerdict({ fn: 'a', hop: 1 }, 'a', { ...o, selfTrigger: true })).toEqual({ action: 'run' });
    expect(chainVerdict({ fn: 'b', hop: 2 }, 'a', o)).toEqual({ action: 'run' });
    const v = chainVerdict({ fn: 'b', hop: 3 }, 'a', o);
    expect(v.action === 'dead_letter' && v.error.code).toBe('SLUICE_HOP_LIMIT');
    expect(v.action === 'dead_letter' && v.error.message).toMatch(/hop 3 .*'b'.*maxHops is 3/);
    expect(chainVerdict({ fn: 'a', hop: 3 }, 'a', { ...o, selfTrigger: true }).action).toBe('dead_letter');
  });
});
