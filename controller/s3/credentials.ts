/**
 * Access keys of the gateway: several pairs, each optionally limited to some buckets and to reading.
 * They come from options, a credentials file (YAML or JSON; in Kubernetes a mounted Secret), or the
 * SLUICE_S3_ACCESS_KEY_ID / SLUICE_S3_SECRET_ACCESS_KEY pair.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../../bindings/errors.ts';

/** One access key as users write it. */
export interface S3Credential {
  /** The access key id clients send (AWS_ACCESS_KEY_ID). */
  accessKeyId: string;
  /** The secret (AWS_SECRET_ACCESS_KEY); never logged. */
  secretAccessKey: string;
  /** Buckets this key may use; ListBuckets shows only these. @default every bucket */
  buckets?: string[];
  /** `read`: only reads (GET, HEAD, lists); `read-write`: everything. @default 'read-write' */
  access?: 'read' | 'read-write';
}

/** A resolved access key. */
export interface AccessKey {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** undefined = every bucket. */
  readonly buckets: ReadonlySet<string> | undefined;
  readonly write: boolean;
}

const credentialSchema = z
  .object({
    accessKeyId: z.string().regex(/^[A-Za-z0-9_.-]{3,128}$/, 'accessKeyId must be 3-128 letters, digits, _ . -'),
    secretAccessKey: z.string().min(8, 'secretAccessKey must be at least 8 characters'),
    buckets: z.array(z.string().min(1)).optional(),
    access: z.enum(['read', 'read-write']).optional(),
  })
  .strict();
const fileSchema = z.union([z.array(credentialSchema), z.object({ keys: z.array(credentialSchema) }).strict()]);

/** Validates and resolves access keys; duplicate ids and an empty list are refused. */
export function resolveCredentials(list: readonly S3Credential[], where = 'credentials'): Map<string, AccessKey> {
  const parsed = z.array(credentialSchema).safeParse(list);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${where}${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}: ${i.message}`);
  }
  if (parsed.data.length === 0) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${where}: at least one access key is needed (the gateway refuses anonymous requests)`);
  const out = new Map<string, AccessKey>();
  for (const c of parsed.data) {
    if (out.has(c.accessKeyId)) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${where}: access key id '${c.accessKeyId}' appears twice`);
    out.set(c.accessKeyId, Object.freeze({ accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, buckets: c.buckets ? new Set(c.buckets) : undefined, write: c.access !== 'read' }));
  }
  return out;
}

/**
 * Reads a credentials file: a YAML or JSON list of {accessKeyId, secretAccessKey, buckets?, access?},
 * or `{keys: [...]}`.
 */
export function loadCredentialsFile(path: string): S3Credential[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `cannot read the S3 credentials file '${path}': ${(cause as Error).message}`, { cause });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (cause) {
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `S3 credentials file '${path}' is not YAML or JSON: ${(cause as Error).message}`, { cause });
  }
  const r = fileSchema.safeParse(data);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `S3 credentials file '${path}' at ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return (Array.isArray(r.data) ? r.data : r.data.keys) as S3Credential[];
}

/** True when `key` may use `bucket` (with write access when `write`). */
export function allows(key: AccessKey, bucket: string | undefined, write: boolean): boolean {
  if (write && !key.write) return false;
  return bucket === undefined || key.buckets === undefined || key.buckets.has(bucket);
}
