/**
 * Bucket deletion as the platform does it (`sluice objects rb`, the S3 gateway's DeleteBucket): the
 * backend removes only an empty bucket (Backend.deleteBucket), and the platform first refuses a bucket
 * that a deployed function triggers on or binds — deleting it would leave that function reading a
 * bucket that is gone, or, were it made again, a change stream its checkpoints no longer describe.
 *
 * The deployed functions are the ones in the platform's functions table of the same backend
 * (controller.ts `FUNCTIONS_TABLE`); a function deployed by a platform on another backend is not seen.
 */
import { BindingError } from '../bindings/errors.ts';
import type { Backend } from '../bindings/types.ts';
import { FUNCTIONS_TABLE } from './controller.ts';
import { loadFunctionSpec } from './spec/index.ts';

/** A deployed function's use of a bucket. */
export interface BucketUse {
  function: string;
  /** `trigger` (object or query trigger on the bucket) or `binding '<name>'`. */
  how: string;
}

/** The deployed functions that trigger on or bind `bucket`, in name order. */
export async function bucketUsers(backend: Backend, bucket: string): Promise<BucketUse[]> {
  let table;
  try {
    table = await backend.kv(FUNCTIONS_TABLE);
  } catch (e) {
    // No platform ever ran on this backend: nothing is deployed.
    if ((e as { code?: unknown }).code === 'SLUICE_TABLE_NOT_FOUND') return [];
    throw e;
  }
  const uses: BucketUse[] = [];
  let marker: string | undefined;
  do {
    const page = await table.getItems({ limit: 1000, ...(marker !== undefined ? { marker } : {}) });
    for (const e of page.items) {
      if (typeof e.item.yaml !== 'string') continue;
      let spec;
      try {
        spec = loadFunctionSpec(e.item.yaml);
      } catch {
        // A stored spec this version cannot read is not in the way of anything it could check.
        continue;
      }
      for (const t of spec.spec.triggers) {
        const on = t.object?.bucket ?? t.query?.bucket;
        if (on === bucket) uses.push({ function: spec.metadata.name, how: 'trigger' });
      }
      for (const b of spec.spec.bindings) if ((b.kind === 'object' || b.kind === 'object-files') && b.resource === bucket) uses.push({ function: spec.metadata.name, how: `binding '${b.name}'` });
    }
    marker = page.nextMarker;
  } while (marker !== undefined);
  return uses.sort((a, b) => (a.function < b.function ? -1 : a.function > b.function ? 1 : 0));
}

/**
 * Deletes `bucket`: SLUICE_BUCKET_IN_USE when a deployed function triggers on or binds it (delete the
 * function first), SLUICE_BUCKET_NOT_EMPTY while it holds objects, SLUICE_BUCKET_NOT_FOUND when absent.
 */
export async function deleteBucketChecked(backend: Backend, bucket: string): Promise<void> {
  // The name first, so a bad name is SLUICE_NAME_INVALID whatever is deployed.
  await backend.objects(bucket);
  const users = await bucketUsers(backend, bucket);
  if (users.length > 0)
    throw new BindingError(
      'SLUICE_BUCKET_IN_USE',
      `bucket '${bucket}' is used by deployed ${users.length === 1 ? 'function' : 'functions'} ${users.map((u) => `'${u.function}' (${u.how})`).join(', ')}; remove ${users.length === 1 ? 'it' : 'them'} first (sluice rm <function>)`,
      { details: { users } },
    );
  await backend.deleteBucket(bucket);
}
