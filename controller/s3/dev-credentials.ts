/**
 * The access key of `sluice dev`: SLUICE_S3_ACCESS_KEY_ID / SLUICE_S3_SECRET_ACCESS_KEY when both are
 * set, else a pair generated once and kept (mode 0600) in `<data dir>/s3-credentials.json`, so clients
 * configured once keep working across restarts.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../../bindings/errors.ts';
import type { S3Credential } from './credentials.ts';

/** The dev key pair and where it came from (the file path, or 'environment'). */
export function ensureDevCredentials(dir: string, env: NodeJS.ProcessEnv = process.env): { credential: S3Credential; source: string } {
  const id = env.SLUICE_S3_ACCESS_KEY_ID;
  const secret = env.SLUICE_S3_SECRET_ACCESS_KEY;
  if (id && secret) return { credential: { accessKeyId: id, secretAccessKey: secret }, source: 'environment' };
  if (id || secret) throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'set both SLUICE_S3_ACCESS_KEY_ID and SLUICE_S3_SECRET_ACCESS_KEY, or neither');
  const f = join(dir, 's3-credentials.json');
  if (existsSync(f)) {
    const c = JSON.parse(readFileSync(f, 'utf8')) as S3Credential;
    return { credential: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey }, source: f };
  }
  mkdirSync(dir, { recursive: true });
  const credential: S3Credential = { accessKeyId: `SLUICE${randomBytes(7).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(30).toString('base64url') };
  writeFileSync(f, `${JSON.stringify(credential, null, 2)}\n`, { mode: 0o600 });
  return { credential, source: f };
}
