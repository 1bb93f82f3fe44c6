/**
 * TLS material from files, checked at the boundary, for every server sluice runs where traffic leaves
 * the process (control API, console, S3 gateway, HTTP ingress) and for clients that present a
 * certificate (NATS mTLS). `loadTls()` returns what `https.createServer` / `tls.createServer` take;
 * `controller/grpc/tls.ts` turns it into gRPC server credentials.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { SluiceError } from '../bindings/errors.ts';

/** Certificate files of a server (or of a client presenting one). */
export interface TlsFiles {
  /** PEM certificate chain. */
  certFile: string;
  /** PEM private key of the certificate. */
  keyFile: string;
  /** PEM CA bundle to verify peers with (the clients, on a server). @default none — the system CAs */
  caFile?: string;
  /** Server: refuse clients without a certificate signed by `caFile` (mTLS). @default false */
  requireClientCert?: boolean;
}

/** Loaded TLS material: options for `https.createServer` and `tls.createServer`. */
export interface LoadedTls {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  requestCert: boolean;
  rejectUnauthorized: boolean;
}

function read(path: string, what: string): Buffer {
  if (typeof path !== 'string' || path === '') throw new SluiceError('SLUICE_INVALID_ARGUMENT', `tls.${what} must be a file path`);
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `tls.${what}: cannot read '${path}': ${(cause as Error).message}`, { cause });
  }
}

/** Reads and checks the files (the key must match the certificate). */
export function loadTls(o: TlsFiles): LoadedTls {
  const cert = read(o.certFile, 'certFile');
  const key = read(o.keyFile, 'keyFile');
  const ca = o.caFile !== undefined ? read(o.caFile, 'caFile') : undefined;
  if (o.requireClientCert && ca === undefined) throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'tls.requireClientCert needs tls.caFile (the CA that signs client certificates)');
  try {
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
  } catch (cause) {
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `tls: certificate '${o.certFile}' and key '${o.keyFile}' do not form a usable pair: ${(cause as Error).message}`, { cause });
  }
  return { cert, key, ...(ca ? { ca } : {}), requestCert: o.requireClientCert ?? false, rejectUnauthorized: o.requireClientCert ?? false };
}
