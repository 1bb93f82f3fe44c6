/**
 * Re-exports of what this file used to hold, now split into `codec.ts` (the value codec),
 * `change-record.ts` (the change-record format) and `backend-helpers.ts` (checks every backend shares).
 * Kept only so branches written against the old file still build; new code imports the split files.
 */
export * from './backend-helpers.ts';
export * from './change-record.ts';
export * from './codec.ts';
