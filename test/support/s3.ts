/**
 * Helpers of the S3 gateway tests: a gateway on a loopback free port over a given backend, the key
 * pairs the tests use, child-process runners for the real CLIs (aws-cli v2 by its full path, s3cmd,
 * rclone) with temp configs, and an independent SigV4 signer (@smithy/signature-v4, the SDK's own) for
 * presigned URLs and hand-built requests.
 */
import { execFile } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Backend } from '../../bindings/types.ts';
import { startS3Gateway, type S3Gateway } from '../../controller/s3/index.ts';

export const KEY = { accessKeyId: 'AKSLUICETEST', secretAccessKey: 'test-secret-key-0123456789' } as const;
export const READONLY = { accessKeyId: 'AKSLUICEREAD', secretAccessKey: 'read-secret-key-0123456789', access: 'read' as const };
export const LIMITED = { accessKeyId: 'AKSLUICELIM', secretAccessKey: 'lim-secret-key-0123456789', buckets: ['only-this'] };

export async function startTestGateway(backend: Backend): Promise<S3Gateway> {
  return startS3Gateway({ backend, address: '127.0.0.1:0', credentials: [KEY, READONLY, LIMITED], onError: (e) => console.error('s3 gateway 5xx', e) });
}

/** sha256 (and HMAC-sha256 with a secret) in the shape @smithy/signature-v4 wants. */
class NodeSha256 {
  #h: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  readonly #secret: Uint8Array | string | undefined;
  constructor(secret?: Uint8Array | string | ArrayBuffer | ArrayBufferView) {
    this.#secret = secret === undefined || typeof secret === 'string' || secret instanceof Uint8Array ? secret : new Uint8Array(secret instanceof ArrayBuffer ? secret : secret.buffer);
    this.#h = this.#secret === undefined ? createHash('sha256') : createHmac('sha256', this.#secret);
  }
  update(d: Uint8Array | string | ArrayBuffer | ArrayBufferView): void {
    this.#h.update(typeof d === 'string' || d instanceof Uint8Array ? d : new Uint8Array(d instanceof ArrayBuffer ? d : d.buffer));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#h.digest());
  }
  reset(): void {
    this.#h = this.#secret === undefined ? createHash('sha256') : createHmac('sha256', this.#secret);
  }
}

export function signer(secret: string = KEY.secretAccessKey, accessKeyId: string = KEY.accessKeyId): SignatureV4 {
  return new SignatureV4({ credentials: { accessKeyId, secretAccessKey: secret }, region: 'us-east-1', service: 's3', sha256: NodeSha256, uriEscapePath: false, applyChecksum: false });
}

/** A presigned URL of `method` on `/bucket/key`, made by the SDK's signer. */
export async function presign(gw: S3Gateway, method: 'GET' | 'PUT', bucket: string, key: string, expiresIn = 300, secret?: string): Promise<string> {
  const path = `/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  const req = await signer(secret).presign(
    { method, protocol: 'http:', hostname: '127.0.0.1', port: gw.port, path, query: {}, headers: { host: `127.0.0.1:${gw.port}`, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } },
    { expiresIn },
  );
  const q = Object.entries(req.query ?? {})
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  return `${gw.url}${path}?${q}`;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program; never rejects on a non-zero exit (the test checks `code`). */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Environment for aws-cli v2: temp config files, no instance metadata, no CA bundle override. */
export function awsEnv(dir: string, secret: string = KEY.secretAccessKey, accessKeyId: string = KEY.accessKeyId): NodeJS.ProcessEnv {
  const cfg = join(dir, 'aws-config');
  const creds = join(dir, 'aws-credentials');
  writeFileSync(cfg, '[default]\nregion = us-east-1\n');
  writeFileSync(creds, `[default]\naws_access_key_id = ${accessKeyId}\naws_secret_access_key = ${secret}\n`);
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_CONFIG_FILE: cfg, AWS_SHARED_CREDENTIALS_FILE: creds, AWS_EC2_METADATA_DISABLED: 'true', AWS_PAGER: '' };
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_CA_BUNDLE', 'AWS_ENDPOINT_URL', 'AWS_REGION', 'AWS_DEFAULT_REGION']) delete env[k];
  return env;
}

/** `/usr/bin/aws --endpoint-url <gw> ...args` */
export function aws(gw: S3Gateway, env: NodeJS.ProcessEnv, args: string[], timeoutMs?: number): Promise<Run> {
  return run('/usr/bin/aws', ['--endpoint-url', gw.url, '--no-cli-pager', ...args], env, timeoutMs);
}

/** A temp s3cmd config for the gateway (path style, no https). */
export function s3cmdConfig(dir: string, gw: S3Gateway, secret: string = KEY.secretAccessKey): string {
  const f = join(dir, `s3cfg-${secret.length}-${secret.slice(0, 3)}`);
  const hp = `127.0.0.1:${gw.port}`;
  writeFileSync(
    f,
    ['[default]', `access_key = ${KEY.accessKeyId}`, `secret_key = ${secret}`, `host_base = ${hp}`, `host_bucket = ${hp}`, 'use_https = False', 'signature_v2 = False', 'bucket_location = us-east-1', 'check_ssl_certificate = False', 'multipart_chunk_size_mb = 8', ''].join('\n'),
  );
  return f;
}

/** A temp rclone config with remote `gw` (provider Other). */
export function rcloneConfig(dir: string, gw: S3Gateway, secret: string = KEY.secretAccessKey): string {
  const f = join(dir, `rclone-${secret.slice(0, 3)}.conf`);
  writeFileSync(f, ['[gw]', 'type = s3', 'provider = Other', `access_key_id = ${KEY.accessKeyId}`, `secret_access_key = ${secret}`, `endpoint = ${gw.url}`, 'region = us-east-1', ''].join('\n'));
  return f;
}

/** Environment for s3cmd and rclone (rclone refuses to start with AWS_CA_BUNDLE on a plain-http endpoint). */
export function toolEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AWS_') || k.startsWith('RCLONE_')) delete env[k];
  return env;
}

/** Polls until a value (see poll.ts). */
export { until } from './poll.ts';

/** Puts `n` small objects `<prefix><i>` through the binding, `concurrency` at a time. */
export async function putMany(put: (key: string) => Promise<unknown>, keys: string[], concurrency = 32): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < keys.length; i = next++) await put(keys[i]!);
    }),
  );
}
