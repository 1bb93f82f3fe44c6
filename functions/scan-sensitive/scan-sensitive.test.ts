import { describe, expect, it } from 'vitest';
import { applyEffects, invokeHandler, type SyntheticRecord } from '../testing.ts';
import fn from './index.ts';

/** The attributes the function declares for one put with this body. */
async function scan(body: string | Uint8Array, extra: Partial<SyntheticRecord> = {}): Promise<Record<string, unknown>> {
  const r = await invokeHandler(fn, [{ key: 'doc.txt', body, ...extra }]);
  expect(r.error).toBeUndefined();
  return r.byKey('doc.txt')?.set ?? {};
}

const none = { has_ssn: false, has_ccard: false };
const ssnOnly = { has_ssn: true, has_ccard: false };
const cardOnly = { has_ssn: false, has_ccard: true };

/** Every text must scan to `expected` (each in its own object, with prose around it). */
async function expectAll(texts: string[], expected: object): Promise<void> {
  for (const t of texts) expect(await scan(`Customer note: ${t}. Thanks!`), t).toEqual(expected);
}

/** Groups digits with a separator: `group('4111111111111111', [4, 4, 4, 4], ' ')`. */
function group(digits: string, sizes: number[], sep: string): string {
  const out: string[] = [];
  let i = 0;
  for (const n of sizes) {
    out.push(digits.slice(i, i + n));
    i += n;
  }
  return out.join(sep);
}

/** A card number in the three layouts: plain, spaced and dashed. */
function layouts(digits: string, sizes: number[]): string[] {
  return [digits, group(digits, sizes, ' '), group(digits, sizes, '-')];
}

describe('scan-sensitive', () => {
  it('scan-sensitive - finds a valid SSN written with dashes', async () => {
    await expectAll(['SSN 219-09-9999', '078-05-1120', 'id:123-45-6789;'], ssnOnly);
  });

  it('scan-sensitive - finds a valid SSN written with spaces', async () => {
    await expectAll(['SSN 219 09 9999', '(078 05 1120)'], ssnOnly);
  });

  it('scan-sensitive - finds a valid SSN written without separators when delimited by non-digits', async () => {
    await expectAll(['SSN 219099999', 'ssn=078051120;', '123456789'], ssnOnly);
    expect(await scan('123456789')).toEqual(ssnOnly);
  });

  it('scan-sensitive - does not take mixed separators as an SSN', async () => {
    await expectAll(['219-09 9999', '219 09-9999', '219--09--9999', '219  09  9999'], none);
  });

  it('scan-sensitive - rejects area 000', async () => {
    await expectAll(['000-12-3456', '000 12 3456', '000123456'], none);
  });

  it('scan-sensitive - rejects area 666', async () => {
    await expectAll(['666-12-3456', '666 12 3456', '666123456'], none);
  });

  it('scan-sensitive - rejects areas 900 to 999', async () => {
    await expectAll(['900-12-3456', '950-12-3456', '999-12-3456', '999123456'], none);
    await expectAll(['899-12-3456'], ssnOnly);
  });

  it('scan-sensitive - rejects group 00', async () => {
    await expectAll(['123-00-4567', '123 00 4567', '123004567'], none);
  });

  it('scan-sensitive - rejects serial 0000', async () => {
    await expectAll(['123-45-0000', '123 45 0000', '123450000'], none);
  });

  it('scan-sensitive - does not find an SSN inside a longer run of digits', async () => {
    await expectAll(['1123-45-6789', '123-45-67890', '1234567890', '0123456789', 'x12345678901y', '123-456-7890'], none);
  });

  it('scan-sensitive - finds Visa numbers (13, 16 and 19 digits) plain, spaced and dashed', async () => {
    await expectAll(layouts('4111111111111111', [4, 4, 4, 4]), cardOnly);
    await expectAll(layouts('4222222222222', [4, 4, 5]), cardOnly);
    await expectAll(layouts('4000000000000000006', [4, 4, 4, 4, 3]), cardOnly);
  });

  it('scan-sensitive - finds Mastercard numbers (51-55 and 2221-2720) plain, spaced and dashed', async () => {
    for (const n of ['5555555555554444', '5105105105105100', '5500000000000004', '2221000000000009', '2720999999999996']) await expectAll(layouts(n, [4, 4, 4, 4]), cardOnly);
  });

  it('scan-sensitive - finds American Express numbers (34, 37) plain, spaced and dashed', async () => {
    for (const n of ['378282246310005', '371449635398431', '340000000000009']) await expectAll(layouts(n, [4, 6, 5]), cardOnly);
  });

  it('scan-sensitive - finds Discover numbers (6011, 65, 644-649) plain, spaced and dashed', async () => {
    for (const n of ['6011111111111117', '6011000990139424', '6500000000000002', '6440000000000005', '6490000000000004']) await expectAll(layouts(n, [4, 4, 4, 4]), cardOnly);
  });

  it('scan-sensitive - finds JCB, Diners Club and UnionPay numbers', async () => {
    await expectAll([...layouts('3530111333300000', [4, 4, 4, 4]), '352800000000000007', ...layouts('30569309025904', [4, 6, 4]), '36000000000008', '6200000000000005'], cardOnly);
  });

  it('scan-sensitive - rejects Luhn-valid numbers without a known issuer prefix', async () => {
    await expectAll(['1000000000000008', '1000 0000 0000 0008', '9999999999999995'], none);
  });

  it('scan-sensitive - rejects numbers that fail the Luhn check', async () => {
    await expectAll([...layouts('4111111111111112', [4, 4, 4, 4]), '5555555555554445', '378282246310006', '6011111111111118'], none);
  });

  it('scan-sensitive - rejects wrong lengths (under 13, over 19, or not the issuer length)', async () => {
    // Luhn-valid Visa prefixes of 12 and 20 digits.
    await expectAll(['411111111117', '4111 1111 1117', '4111-1111-1117', '41111111111111111115'], none);
    // Luhn-valid with a known prefix, but a length the issuer does not issue.
    await expectAll(['41111111111114', '3782822463100003', '55555555555544440'], none);
  });

  it('scan-sensitive - does not find a card inside a longer run of digits', async () => {
    await expectAll(['04111111111111111', '41111111111111110', 'x94111111111111111y'], none);
  });

  it('scan-sensitive - finds a card among longer groups separated by spaces', async () => {
    // The number is delimited by separators, not embedded in adjacent digits.
    await expectAll(['order 12 4111 1111 1111 1111 7 items'], cardOnly);
  });

  it('scan-sensitive - rejects doubled or mixed separators inside a card number', async () => {
    await expectAll(['4111  1111  1111  1111', '4111--1111--1111--1111', '4111 1111-1111 1111', '4111 - 1111 - 1111 - 1111'], none);
  });

  it('scan-sensitive - flags both when both are present', async () => {
    expect(await scan('ssn 219-09-9999 and card 4111 1111 1111 1111')).toEqual({ has_ssn: true, has_ccard: true });
    expect(await scan('4111111111111111 / 219099999')).toEqual({ has_ssn: true, has_ccard: true });
  });

  it('scan-sensitive - flags neither in ordinary text with numbers', async () => {
    await expectAll(['call (555) 123-4567 on 2024-05-17 about order 98765', 'total 1,234.56 USD', ''], none);
    expect(await scan('')).toEqual(none);
  });

  it('scan-sensitive - skips deletes and other event types (no effects, no counters)', async () => {
    const r = await invokeHandler(fn, [
      { key: 'gone.txt', type: 'delete' },
      { key: 'touched.txt', type: 'attrs', body: '219-09-9999' },
      { key: 'stream', type: 'record', body: '4111111111111111' },
    ]);
    expect(r.error).toBeUndefined();
    for (const e of r.records) expect(e).toEqual({ set: {}, remove: [], updates: [] });
    expect(r.counters).toEqual({});
  });

  it('scan-sensitive - reads bodies that did not come with the batch through data()', async () => {
    const r = await invokeHandler(fn, [
      { key: 'big-ssn.txt', body: 'x'.repeat(100_000) + ' 219-09-9999', inline: false },
      { key: 'big-card.txt', body: '4111-1111-1111-1111 ' + 'y'.repeat(100_000), inline: false },
      { key: 'small.txt', body: 'nothing here' },
    ]);
    expect(r.error).toBeUndefined();
    expect(r.byKey('big-ssn.txt')?.set).toEqual(ssnOnly);
    expect(r.byKey('big-card.txt')?.set).toEqual(cardOnly);
    expect(r.byKey('small.txt')?.set).toEqual(none);
    expect(r.counters).toEqual({ objects_scanned: 3, has_ssn: 1, has_ccard: 1 });
  });

  it('scan-sensitive - binary and invalid UTF-8 bodies do not throw', async () => {
    const random = new Uint8Array(64 * 1024);
    for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24;
    const invalid = new Uint8Array([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0xa0, 0xf0, 0x28, 0x8c, 0xbc, 0x80, 0xc0, 0xaf]);
    expect(await scan(random)).toMatchObject({ has_ssn: expect.any(Boolean), has_ccard: expect.any(Boolean) });
    expect(await scan(invalid)).toEqual(none);
    // Invalid bytes right next to a number read as non-digits (as U+FFFD would), so it still counts.
    const around = new Uint8Array([0xff, ...new TextEncoder().encode('219-09-9999'), 0xc3]);
    expect(await scan(around)).toEqual(ssnOnly);
    expect(await scan(around, { inline: false })).toEqual(ssnOnly);
  });

  it('scan-sensitive - finds numbers among multi-byte UTF-8 text', async () => {
    expect(await scan('Numéro de sécurité sociale : 219-09-9999 — carte « 4111 1111 1111 1111 » 👍')).toEqual({ has_ssn: true, has_ccard: true });
    expect(await scan('番号219099999です')).toEqual(ssnOnly);
  });

  it('scan-sensitive - counters are exact over a batch of 50 mixed records', async () => {
    const bodies = ['plain text', 'ssn 219-09-9999', 'card 4111111111111111', 'both 078 05 1120 and 5555-5555-5555-4444', 'bad ssn 666-12-3456'];
    const records: SyntheticRecord[] = [];
    const expected = { objects_scanned: 0, has_ssn: 0, has_ccard: 0 };
    for (let i = 0; i < 50; i++) {
      const type = i % 7 === 6 ? 'delete' : 'put';
      const body = bodies[i % bodies.length]!;
      records.push(type === 'delete' ? { key: `k${i}`, type } : { key: `k${i}`, body, inline: i % 3 !== 0 });
      if (type === 'delete') continue;
      expected.objects_scanned++;
      if (/ssn 2|both/.test(body)) expected.has_ssn++;
      if (/card|both/.test(body)) expected.has_ccard++;
    }
    const r = await invokeHandler(fn, records);
    expect(r.error).toBeUndefined();
    expect(r.counters).toEqual(expected);
    expect(expected).toEqual({ objects_scanned: 43, has_ssn: 16, has_ccard: 17 });
    const flagged = r.records.filter((e) => e.set['has_ssn'] === true).length;
    expect(flagged).toBe(expected.has_ssn);
  });

  it('scan-sensitive - declares both attributes on every put record, replacing earlier values', async () => {
    const records: SyntheticRecord[] = ['', 'a', '219-09-9999', '4111111111111111', 'x 219099999 4222222222222'].map((body, i) => ({
      key: `p${i}`,
      body,
      attrs: { has_ssn: true, has_ccard: true, owner: 'ann' },
    }));
    const r = await invokeHandler(fn, records);
    r.records.forEach((e, i) => {
      expect(Object.keys(e.set).sort(), `record ${i}`).toEqual(['has_ssn', 'has_ccard'].sort());
      expect(typeof e.set['has_ssn']).toBe('boolean');
      expect(typeof e.set['has_ccard']).toBe('boolean');
      expect(e.remove).toEqual([]);
      expect(e.updates).toEqual([]);
      expect(e.failure).toBeUndefined();
    });
    expect(applyEffects(records[0]!.attrs!, r.records[0]!)).toEqual({ has_ssn: false, has_ccard: false, owner: 'ann' });
    expect(applyEffects(records[2]!.attrs!, r.records[2]!)).toEqual({ has_ssn: true, has_ccard: false, owner: 'ann' });
  });

  it('scan-sensitive - never logs the numbers it finds', async () => {
    const r = await invokeHandler(fn, [{ key: 'a', body: 'ssn 219-09-9999 card 4111 1111 1111 1111' }], { logLevel: 'trace' });
    expect(r.logs.length).toBeGreaterThan(0);
    // Without the fields that are random or time-dependent (they could hold those digits by chance).
    const text = JSON.stringify(r.logs.map((l) => ({ ...l, batchId: undefined, time: undefined })));
    for (const secret of ['219', '9999', '4111']) expect(text).not.toContain(secret);
  });
});
