/** gRPC server credentials from certificate files (see runtime/tls.ts): TLS, or mTLS with `requireClientCert`. */
import { ServerCredentials } from '@grpc/grpc-js';
import { loadTls, type TlsFiles } from '../../runtime/tls.ts';

export function grpcServerCredentials(o: TlsFiles): ServerCredentials {
  const t = loadTls(o);
  return ServerCredentials.createSsl(t.ca ?? null, [{ cert_chain: t.cert, private_key: t.key }], t.requestCert);
}
