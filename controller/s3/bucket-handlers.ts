/** Service- and bucket-level operations: ListBuckets, Create/Delete/HeadBucket, location, versioning, ACL. */
import { drain } from './body.ts';
import { bucketOf, isoDate, OWNER, sendEmpty, sendXml, type Handler } from './context.ts';
import { allows } from './credentials.ts';
import { S3Error } from './s3-errors.ts';
import { doc, el, S3_NS } from './xml.ts';

export const listBuckets: Handler = async (ctx) => {
  const all = await ctx.state.listBuckets();
  const mine = all.filter((b) => allows(ctx.auth.key, b.name, false));
  const inner = mine.map((b) => `<Bucket>${el('Name', b.name)}${el('CreationDate', isoDate(b.created))}</Bucket>`).join('');
  sendXml(ctx, 200, doc('ListAllMyBucketsResult', `${OWNER}<Buckets>${inner}</Buckets>`));
};

export const createBucket: Handler = async (ctx) => {
  // The body may carry a CreateBucketConfiguration (LocationConstraint); every region is this one.
  drain(ctx.req);
  const name = bucketOf(ctx);
  const created = await ctx.state.createBucket(name);
  if (!created) {
    throw new S3Error('BucketAlreadyOwnedByYou', `the bucket '${name}' already exists and is yours`);
  }
  sendEmpty(ctx, 200, { location: `/${name}` });
};

export const deleteBucket: Handler = async (ctx) => {
  await ctx.state.deleteBucket(bucketOf(ctx));
  sendEmpty(ctx, 204);
};

export const headBucket: Handler = async (ctx) => {
  await ctx.state.bucket(bucketOf(ctx));
  sendEmpty(ctx, 200, { 'x-amz-bucket-region': ctx.options.region });
};

export const getBucketLocation: Handler = async (ctx) => {
  await ctx.state.bucket(bucketOf(ctx));
  // us-east-1 is reported as an empty constraint, as S3 does.
  const r = ctx.options.region === 'us-east-1' ? '' : ctx.options.region;
  sendXml(ctx, 200, `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="${S3_NS}">${r}</LocationConstraint>`);
};

export const getBucketVersioning: Handler = async (ctx) => {
  await ctx.state.bucket(bucketOf(ctx));
  // Never versioned: an empty configuration, as S3 answers for a bucket that never had versioning.
  sendXml(ctx, 200, doc('VersioningConfiguration', ''));
};

const ACL = doc(
  'AccessControlPolicy',
  `${OWNER}<AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>sluice</ID><DisplayName>sluice</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList>`,
);

export const getBucketAcl: Handler = async (ctx) => {
  await ctx.state.bucket(bucketOf(ctx));
  sendXml(ctx, 200, ACL);
};

/** The fixed ACL (the gateway's access model is its keys, not ACLs). */
export const FIXED_ACL = ACL;

/**
 * PutBucketAcl / PutObjectAcl: accepted and ignored. Access is decided by the gateway's keys alone, and
 * nothing is ever anonymous, so an ACL (even public-read) can only ask for less than the keys grant;
 * clients such as s3cmd set one after every copy and treat a refusal as a failure.
 */
export const putAcl: Handler = async (ctx) => {
  drain(ctx.req);
  const b = await ctx.state.bucket(bucketOf(ctx));
  if (ctx.key !== undefined && !(await b.head(ctx.key))) throw new S3Error('NoSuchKey', `the key '${ctx.key}' does not exist`);
  sendEmpty(ctx, 200);
};
