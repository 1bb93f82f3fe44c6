/**
 * The S3 gateway of `sluice dev`: on `--s3 <host:port>` (default 127.0.0.1:9000; `0` = a free port), with
 * the key pair from SLUICE_S3_ACCESS_KEY_ID / SLUICE_S3_SECRET_ACCESS_KEY or one generated under the data
 * directory. When the default port is taken the platform still starts, without the gateway, and says so;
 * an address given explicitly must work.
 */
import type { Backend } from '../../../bindings/types.ts';
import { ensureDevCredentials, startS3Gateway } from '../../s3/index.ts';

/** Starts the dev gateway; `line` is what the first output line says about it. */
export async function startDevS3(backend: Backend, dataDir: string, flag: string | undefined): Promise<{ line: string; url?: string; close(): Promise<void> }> {
  const address = flag === undefined ? '127.0.0.1:9000' : flag === '0' ? '127.0.0.1:0' : flag;
  const { credential, source } = ensureDevCredentials(dataDir);
  try {
    const gw = await startS3Gateway({ backend, address, credentials: [credential] });
    const keys = source === 'environment' ? 'keys from $SLUICE_S3_ACCESS_KEY_ID/$SLUICE_S3_SECRET_ACCESS_KEY' : `keys in ${source}`;
    return { line: `S3 on ${gw.url} (${keys})`, url: gw.url, close: () => gw.close() };
  } catch (e) {
    if (flag !== undefined) throw e;
    return { line: `S3 gateway off (${address} is in use; --s3 0 picks a free port)`, close: async () => undefined };
  }
}
