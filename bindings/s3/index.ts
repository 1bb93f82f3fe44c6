export { S3BodyStore } from './s3-body-store.ts';
export { isNoSuchKey, toBindingError } from './s3-errors.ts';
