/** The S3-compatible gateway over the Object binding (see docs/S3.md). */
export { startS3Gateway, type S3Gateway } from './gateway.ts';
export type { S3GatewayOptions, ResolvedS3GatewayOptions } from './options.ts';
export { parseAddress } from './options.ts';
export { loadCredentialsFile, type S3Credential } from './credentials.ts';
export { ensureDevCredentials } from './dev-credentials.ts';
export { ATTR_HEADER_PREFIX, META_ATTR } from './object-meta.ts';
