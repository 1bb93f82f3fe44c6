/**
 * Pure detectors of US social security numbers and payment-card numbers in text.
 *
 * No regular expressions, no allocation, one pass. Every match lies inside a run of at least 9
 * "class" characters (digits, spaces, dashes), so the scanner probes one position in 9 and skips
 * the rest of ordinary text; only class runs long enough to hold a match go through the exact
 * scanner, which gathers digit groups joined by single separators and checks the candidates that
 * end at each group's end. A candidate starts and ends at a group boundary, so it is never part
 * of a longer run of adjacent digits (as the regex `(?<!\d)…(?!\d)` would say).
 *
 * Rules
 * - SSN: `AAA-GG-SSSS`, `AAA GG SSSS` (the same separator twice) or `AAAGGSSSS`, delimited by
 *   non-digits; valid per the SSA: area not 000, 666 or 900–999; group not 00; serial not 0000.
 * - Card: 13–19 digits; single spaces or single dashes (one kind per number) allowed between
 *   digit groups; a known issuer prefix with one of that issuer's lengths ({@link issuerAccepts});
 *   a valid Luhn check digit.
 *
 * Only ASCII digits count, so scanning UTF-8 bytes finds exactly what scanning the decoded text
 * finds: every byte of a multi-byte UTF-8 sequence is >= 0x80, and a WHATWG decoder replacing an
 * invalid sequence with U+FFFD never swallows an ASCII byte. {@link detectBytes} therefore needs no
 * decoding at all; {@link detectText} serves callers that already hold a string.
 */

/** Flags returned by the detectors (bitwise OR). */
export const Found = { none: 0, ssn: 1, card: 2, both: 3 } as const;

// Scratch state of the current digit run. A candidate spans at most 19 digits, hence at most 19
// groups, so rings of 32 entries indexed by `& 31` always hold everything a candidate needs.
// Module-level and reused: scans are synchronous, so one scan never sees another's state.
const digits = new Uint8Array(32);
const groupStart = new Int32Array(32);
const groupSep = new Uint8Array(32);

const SPACE = 32;
const DASH = 45;

/** Detects in UTF-8 (or any ASCII-compatible) bytes. Returns {@link Found} flags. */
export function detectBytes(b: Uint8Array): number {
  const n = b.length;
  let found = 0;
  // Every match lies inside a run of at least 9 "class" characters (digits, spaces, dashes), so
  // probing one position in 9 finds every such run: most text is skipped 9 bytes at a time, and
  // only runs long enough to hold a match go through the exact scanner.
  let lo = 0; // no run of class characters starts before lo that was not already handled
  let p = 8;
  while (p < n) {
    if (!isClass(b[p]!)) {
      lo = p + 1;
      p += 9;
      continue;
    }
    let s = p;
    while (s > lo && isClass(b[s - 1]!)) s--;
    let e = p + 1;
    while (e < n && isClass(b[e]!)) e++;
    if (e - s >= 9) {
      found |= scanBytes(b, s, e, found);
      if (found === Found.both) return found;
    }
    lo = e + 1;
    p = e + 9;
  }
  return found;
}

/** Detects in a string (same rules as {@link detectBytes}). Returns {@link Found} flags. */
export function detectText(t: string): number {
  const n = t.length;
  let found = 0;
  let lo = 0;
  let p = 8;
  while (p < n) {
    if (!isClass(t.charCodeAt(p))) {
      lo = p + 1;
      p += 9;
      continue;
    }
    let s = p;
    while (s > lo && isClass(t.charCodeAt(s - 1))) s--;
    let e = p + 1;
    while (e < n && isClass(t.charCodeAt(e))) e++;
    if (e - s >= 9) {
      found |= scanText(t, s, e, found);
      if (found === Found.both) return found;
    }
    lo = e + 1;
    p = e + 9;
  }
  return found;
}

/** A digit, space or dash: the only characters a match is made of. */
function isClass(c: number): boolean {
  return (c >= 48 && c <= 57) || c === SPACE || c === DASH;
}

/**
 * The exact scanner over `b[from, to)`, a maximal run of class characters (so its neighbours are
 * non-digits): gathers digit groups joined by single separators and checks each group's end.
 */
function scanBytes(b: Uint8Array, from: number, to: number, found: number): number {
  let i = from;
  while (i < to) {
    let c = b[i]!;
    if (c < 48 || c > 57) {
      i++;
      continue;
    }
    let nd = 0; // digits in this run
    let ng = 0; // groups in this run
    let sep = 0; // separator before the group being read
    for (;;) {
      const gs = nd;
      while (i < to && (c = b[i]!) >= 48 && c <= 57) {
        digits[nd & 31] = c - 48;
        nd++;
        i++;
      }
      groupStart[ng & 31] = gs;
      groupSep[ng & 31] = sep;
      ng++;
      found |= groupEnd(nd, ng, found);
      if (found === Found.both) return found;
      // The run goes on only through ONE separator followed by a digit.
      if (i + 1 < to && ((c = b[i]!) === SPACE || c === DASH)) {
        const d = b[i + 1]!;
        if (d >= 48 && d <= 57) {
          sep = c;
          i++;
          continue;
        }
      }
      break;
    }
  }
  return found;
}

/** {@link scanBytes} over a string. */
function scanText(t: string, from: number, to: number, found: number): number {
  let i = from;
  while (i < to) {
    let c = t.charCodeAt(i);
    if (c < 48 || c > 57) {
      i++;
      continue;
    }
    let nd = 0;
    let ng = 0;
    let sep = 0;
    for (;;) {
      const gs = nd;
      while (i < to && (c = t.charCodeAt(i)) >= 48 && c <= 57) {
        digits[nd & 31] = c - 48;
        nd++;
        i++;
      }
      groupStart[ng & 31] = gs;
      groupSep[ng & 31] = sep;
      ng++;
      found |= groupEnd(nd, ng, found);
      if (found === Found.both) return found;
      if (i + 1 < to && ((c = t.charCodeAt(i)) === SPACE || c === DASH)) {
        const d = t.charCodeAt(i + 1);
        if (d >= 48 && d <= 57) {
          sep = c;
          i++;
          continue;
        }
      }
      break;
    }
  }
  return found;
}

/** True when the text holds a valid SSN (convenience for callers and tests). */
export function hasSsn(s: string): boolean {
  return (detectText(s) & Found.ssn) !== 0;
}

/** True when the text holds a valid card number (convenience for callers and tests). */
export function hasCard(s: string): boolean {
  return (detectText(s) & Found.card) !== 0;
}

/** Checks the candidates ending where the run's group `ng - 1` ends (digit index `nd`). */
function groupEnd(nd: number, ng: number, found: number): number {
  let out = 0;
  const last = (ng - 1) & 31;
  const len = nd - groupStart[last]!;
  if ((found & Found.ssn) === 0) {
    if (len === 9) {
      if (ssnValid(nd - 9)) out |= Found.ssn;
    } else if (len === 4 && ng >= 3) {
      const mid = (ng - 2) & 31;
      const first = (ng - 3) & 31;
      if (
        groupStart[last]! - groupStart[mid]! === 2 &&
        groupStart[mid]! - groupStart[first]! === 3 &&
        groupSep[last] === groupSep[mid] &&
        ssnValid(nd - 9)
      )
        out |= Found.ssn;
    }
  }
  if ((found & Found.card) === 0 && nd >= 13) {
    // Every candidate ending here starts at some earlier group start of the run, within 19 digits,
    // and uses one kind of separator throughout (as cards are printed: `4111 1111 …`, `4111-1111-…`).
    const sep = groupSep[last]!;
    for (let g = ng - 1; g >= 0; g--) {
      const l = nd - groupStart[g & 31]!;
      if (l > 19 || (g < ng - 1 && groupSep[(g + 1) & 31] !== sep)) break;
      if (l >= 13 && cardValid(nd - l, l)) {
        out |= Found.card;
        break;
      }
    }
  }
  return out;
}

/** digit at absolute run index `i` */
function d(i: number): number {
  return digits[i & 31]!;
}

/** SSA rules on the 9 digits from run index `s`. */
function ssnValid(s: number): boolean {
  const area = d(s) * 100 + d(s + 1) * 10 + d(s + 2);
  if (area === 0 || area === 666 || area >= 900) return false;
  if (d(s + 3) === 0 && d(s + 4) === 0) return false;
  return d(s + 5) + d(s + 6) + d(s + 7) + d(s + 8) !== 0;
}

/** Issuer prefix and length, then Luhn, on the `len` digits from run index `s`. */
function cardValid(s: number, len: number): boolean {
  const p4 = d(s) * 1000 + d(s + 1) * 100 + d(s + 2) * 10 + d(s + 3);
  if (!issuerAccepts(p4, len)) return false;
  // Luhn: from the rightmost digit, double every second digit.
  let sum = 0;
  let dbl = false;
  for (let i = s + len - 1; i >= s; i--) {
    let x = d(i);
    if (dbl) {
      x *= 2;
      if (x > 9) x -= 9;
    }
    sum += x;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

/**
 * Known issuers by the first four digits `p4`, with their lengths:
 * Visa 4 (13, 16, 19); Mastercard 51–55 and 2221–2720 (16); American Express 34, 37 (15);
 * Discover 6011, 644–649, 65 (16–19); JCB 3528–3589 (16–19); Diners Club 300–305, 36, 38, 39 (14–19);
 * UnionPay 62 (16–19).
 */
export function issuerAccepts(p4: number, len: number): boolean {
  const p1 = (p4 / 1000) | 0;
  const p2 = (p4 / 100) | 0;
  const p3 = (p4 / 10) | 0;
  if (p1 === 4) return len === 13 || len === 16 || len === 19;
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return len === 16;
  if (p2 === 34 || p2 === 37) return len === 15;
  if (p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649) || p2 === 62 || (p4 >= 3528 && p4 <= 3589)) return len >= 16;
  if ((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38 || p2 === 39) return len >= 14;
  return false;
}
