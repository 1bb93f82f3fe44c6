/**
 * scan-sensitive: flags uploaded objects that hold US social security numbers or payment-card
 * numbers, as two boolean attributes (`has_ssn`, `has_ccard`) on every scanned object, and counts
 * what it scanned and found. It never logs or stores the numbers themselves: only booleans and
 * counts leave the handler.
 */
import { defineFunction, type EventRecord, type HandlerContext } from '../types.ts';
import { detectBytes, Found } from './detect.ts';

async function handler(records: EventRecord[], ctx: HandlerContext): Promise<void> {
  let scanned = 0;
  let ssn = 0;
  let ccard = 0;
  const scan = (r: EventRecord, body: Uint8Array): void => {
    // Scanning the UTF-8 bytes finds exactly what scanning the decoded text would (detect.ts), and
    // allocates nothing; invalid UTF-8 and binary bodies are just bytes that match nothing.
    const found = detectBytes(body);
    const hasSsn = (found & Found.ssn) !== 0;
    const hasCcard = (found & Found.card) !== 0;
    r.setAttrs({ has_ssn: hasSsn, has_ccard: hasCcard });
    scanned++;
    if (hasSsn) ssn++;
    if (hasCcard) ccard++;
  };

  // Bodies that did not come with the batch are read concurrently (a batch is bounded by maxRecords).
  const reads: Promise<void>[] = [];
  for (const r of records) {
    if (r.type !== 'put') continue;
    if (r.body !== undefined) scan(r, r.body);
    else
      reads.push(
        read(r).then((body) => {
          if (body !== undefined) scan(r, body);
        }),
      );
  }
  if (reads.length > 0) await Promise.all(reads);

  if (scanned > 0) ctx.count('objects_scanned', scanned);
  if (ssn > 0) ctx.count('has_ssn', ssn);
  if (ccard > 0) ctx.count('has_ccard', ccard);
  ctx.log.debug({ scanned, has_ssn: ssn, has_ccard: ccard }, 'batch scanned');
}

/** The body of `r`, or undefined when the object is gone (a later delete record describes that). */
async function read(r: EventRecord): Promise<Uint8Array | undefined> {
  try {
    return await r.data();
  } catch (err) {
    if ((err as { code?: unknown }).code === 'SLUICE_NOT_FOUND') return undefined;
    // Anything else is transient as far as this record knows: retry it alone, not the whole batch.
    r.fail(err instanceof Error ? err : String(err));
    return undefined;
  }
}

export default defineFunction({ handler });
