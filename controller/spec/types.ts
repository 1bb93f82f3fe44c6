/**
 * Types of the function spec, derived from the one schema in `schema.ts` (never written by hand, so
 * they cannot drift from what validation accepts). `FunctionSpec` is the validated document with
 * defaults applied; `FunctionSpecInput` is what a user may write.
 */
import type { z } from 'zod';
import type { functionSpecSchema } from './schema.ts';

/** A validated `sluice.dev/v1` Function, every spec-level default applied. */
export type FunctionSpec = z.output<typeof functionSpecSchema>;
/** What a spec file may hold before defaults (optional fields optional). */
export type FunctionSpecInput = z.input<typeof functionSpecSchema>;
/** The `spec:` block. */
export type FunctionSpecBody = FunctionSpec['spec'];
/** One entry of `spec.triggers`: an object with exactly one key naming its kind. */
export type TriggerSpec = FunctionSpecBody['triggers'][number];
/** The object trigger block. */
export type ObjectTriggerSpec = NonNullable<TriggerSpec['object']>;
/** The stream trigger block. */
export type StreamTriggerSpec = NonNullable<TriggerSpec['stream']>;
/** `spec.backend`: local (embedded) or nats. */
export type BackendSpecBlock = FunctionSpecBody['backend'];
/** `spec.scaling` with its defaults. */
export type ScalingSpec = FunctionSpecBody['scaling'];
/** One entry of `spec.secrets`: a name and exactly one of fromEnv, value. */
export type SecretSpec = FunctionSpecBody['secrets'][number];
/** A duration as written: ms, or '250ms', '30s', '5m', '1h'. */
export type Duration = number | string;

/** One problem of a spec: the path (`spec.batch.maxRecords`), where it is in the file, and what is wrong. */
export interface SpecProblem {
  /** Dotted path with [index] for list items, e.g. `spec.triggers[0].object.bucket`. */
  path: string;
  /** 1-based line and column in the file, when the spec came from text. */
  line?: number;
  column?: number;
  message: string;
}
