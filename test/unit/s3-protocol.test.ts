/**
 * The S3 gateway's protocol pieces without a server: aws-chunked chunk signatures against the worked
 * example AWS publishes (so the chain is AWS-correct, not merely self-consistent), checksum vectors,
 * the XML reader, Range and conditional-header rules, credentials and address validation.
 */
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AwsChunkedDecoder } from '../../controller/s3/aws-chunked.ts';
import { Checksum } from '../../controller/s3/checksums.ts';
import { resolveCredentials } from '../../controller/s3/credentials.ts';
import { conditionalStatus, parseRange } from '../../controller/s3/object-handlers.ts';
import { attrText, metaHeaders } from '../../controller/s3/object-meta.ts';
import { parseAddress } from '../../controller/s3/options.ts';
import { operationOf, resolveAddress } from '../../controller/s3/router.ts';
import { canonicalQuery, signingKey } from '../../controller/s3/sigv4.ts';
import { parseXml } from '../../controller/s3/xml.ts';

// AWS "Signature Calculations for the Authorization Header: Transferring Payload in Multiple Chunks", example PUT Object.
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const SEED = '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9';
const SIGS = [
  'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648',
  '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
  'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9',
];

function awsExampleBody(tamper = false): Buffer {
  const a = Buffer.alloc(65536, 'a');
  if (tamper) a[100] = 'b'.charCodeAt(0);
  return Buffer.concat([
    Buffer.from(`10000;chunk-signature=${SIGS[0]}\r\n`),
    a,
    Buffer.from(`\r\n400;chunk-signature=${SIGS[1]}\r\n`),
    Buffer.alloc(1024, 'a'),
    Buffer.from(`\r\n0;chunk-signature=${SIGS[2]}\r\n\r\n`),
  ]);
}

function decode(body: Buffer, pieceBytes: number, signed = true): Buffer {
  const d = new AwsChunkedDecoder({
    trailer: false,
    ...(signed ? { signing: { signingKey: signingKey(SECRET, '20130524', 'us-east-1'), amzDate: '20130524T000000Z', scope: '20130524/us-east-1/s3/aws4_request', seedSignature: SEED } } : {}),
  });
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += pieceBytes) d.push(body.subarray(i, i + pieceBytes), (b) => out.push(Buffer.from(b)));
  d.end();
  return Buffer.concat(out);
}

describe('s3/protocol', () => {
  it('s3/protocol - aws-chunked: the AWS worked example verifies, in any split of the body', () => {
    for (const piece of [1 << 20, 7, 65536 + 3]) expect(decode(awsExampleBody(), piece).equals(Buffer.alloc(66560, 'a'))).toBe(true);
  });

  it('s3/protocol - aws-chunked: one changed byte fails its chunk signature', () => {
    expect(() => decode(awsExampleBody(true), 4096)).toThrow(expect.objectContaining({ code: 'SignatureDoesNotMatch' }));
  });

  it('s3/protocol - aws-chunked: a body cut before its final chunk is IncompleteBody', () => {
    const b = awsExampleBody();
    expect(() => decode(b.subarray(0, b.length - 90), 4096)).toThrow(expect.objectContaining({ code: 'IncompleteBody' }));
  });

  it('s3/protocol - aws-chunked: unsigned chunks with a checksum trailer', () => {
    const d = new AwsChunkedDecoder({ trailer: true });
    const out: Buffer[] = [];
    d.push(Buffer.from('3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n'), (b) => out.push(Buffer.from(b)));
    expect(d.end().get('x-amz-checksum-crc32')).toBe('NSRBwg==');
    expect(Buffer.concat(out).toString()).toBe('abc');
  });

  it('s3/protocol - aws-chunked: signed chunks with a signed checksum trailer (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER)', () => {
    // Chunk and trailer signatures computed here from the algorithm in the AWS docs (not by the decoder).
    const key = signingKey(SECRET, '20130524', 'us-east-1');
    const scope = '20130524/us-east-1/s3/aws4_request';
    const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
    const hmac = (sts: string) => createHmac('sha256', key).update(sts).digest('hex');
    const data = Buffer.from('hello trailer');
    const s1 = hmac(`AWS4-HMAC-SHA256-PAYLOAD\n20130524T000000Z\n${scope}\n${SEED}\n${sha('')}\n${sha(data)}`);
    const s2 = hmac(`AWS4-HMAC-SHA256-PAYLOAD\n20130524T000000Z\n${scope}\n${s1}\n${sha('')}\n${sha('')}`);
    const crc = new Checksum('crc32');
    crc.update(data);
    const trailer = `x-amz-checksum-crc32:${crc.digestBase64()}`;
    const ts = hmac(`AWS4-HMAC-SHA256-TRAILER\n20130524T000000Z\n${scope}\n${s2}\n${sha(`${trailer}\n`)}`);
    const body = (sig: string) => Buffer.from(`${data.length.toString(16)};chunk-signature=${s1}\r\n${data}\r\n0;chunk-signature=${s2}\r\n${trailer}\r\nx-amz-trailer-signature:${sig}\r\n\r\n`);
    const run = (b: Buffer) => {
      const d = new AwsChunkedDecoder({ trailer: true, signing: { signingKey: key, amzDate: '20130524T000000Z', scope, seedSignature: SEED } });
      const out: Buffer[] = [];
      d.push(b, (x) => out.push(Buffer.from(x)));
      return { trailers: d.end(), data: Buffer.concat(out) };
    };
    const ok = run(body(ts));
    expect(ok.data.toString()).toBe('hello trailer');
    expect(ok.trailers.get('x-amz-checksum-crc32')).toBe(crc.digestBase64());
    expect(() => run(body('0'.repeat(64)))).toThrow(expect.objectContaining({ code: 'SignatureDoesNotMatch' }));
  });

  it('s3/protocol - checksums: CRC32, CRC32C, CRC64NVME, SHA-256 of "123456789"', () => {
    const v = Buffer.from('123456789');
    const hex = (alg: 'crc32' | 'crc32c' | 'crc64nvme') => {
      const c = new Checksum(alg);
      c.update(v.subarray(0, 4));
      c.update(v.subarray(4));
      return Buffer.from(c.digestBase64(), 'base64').toString('hex');
    };
    expect(hex('crc32')).toBe('cbf43926');
    expect(hex('crc32c')).toBe('e3069283');
    expect(hex('crc64nvme')).toBe('ae8b14860a799888');
    const s = new Checksum('sha256');
    s.update(v);
    expect(Buffer.from(s.digestBase64(), 'base64').toString('hex')).toBe('15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225');
  });

  it('s3/protocol - xml: DeleteObjects document with entities and a namespace', () => {
    const n = parseXml('<?xml version="1.0"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet><Object><Key>a&amp;b&#x20;c</Key></Object></Delete>');
    expect(n.name).toBe('Delete');
    expect(n.children[1]!.children[0]!.text).toBe('a&b c');
    expect(() => parseXml('<Delete><Object></Delete>')).toThrow(expect.objectContaining({ code: 'MalformedXML' }));
  });

  it('s3/protocol - range: single ranges parse, multi-range and malformed are ignored', () => {
    expect(parseRange('bytes=0-9')).toEqual({ first: 0, last: 9 });
    expect(parseRange('bytes=5-')).toEqual({ first: 5 });
    expect(parseRange('bytes=-3')).toEqual({ suffix: 3 });
    expect(parseRange('bytes=0-1,4-5')).toBeUndefined();
    expect(parseRange('bytes=9-2')).toBeUndefined();
  });

  it('s3/protocol - conditionals: RFC 7232 precedence as S3 applies it', () => {
    const t = new Date('2026-01-01T00:00:00.500Z');
    expect(conditionalStatus({ 'if-match': '"e"' }, 'e', t)).toBeUndefined();
    expect(conditionalStatus({ 'if-match': '"x"' }, 'e', t)).toBe(412);
    expect(conditionalStatus({ 'if-none-match': '"e"' }, 'e', t)).toBe(304);
    expect(conditionalStatus({ 'if-modified-since': t.toUTCString() }, 'e', t)).toBe(304);
    expect(conditionalStatus({ 'if-unmodified-since': new Date(t.getTime() - 5000).toUTCString() }, 'e', t)).toBe(412);
    // If-Match true wins over a failing If-Unmodified-Since.
    expect(conditionalStatus({ 'if-match': '"e"', 'if-unmodified-since': new Date(0).toUTCString() }, 'e', t)).toBeUndefined();
  });

  it('s3/protocol - addressing: path style, virtual-host style, sub-resources pick the operation', () => {
    expect(resolveAddress('/b/dir/a%20b.txt?x=1', '127.0.0.1:9000', ['localhost'])).toMatchObject({ bucket: 'b', key: 'dir/a b.txt' });
    expect(resolveAddress('/dir/k', 'b.localhost:9000', ['localhost'])).toMatchObject({ bucket: 'b', key: 'dir/k' });
    expect(resolveAddress('/', 'localhost:9000', ['localhost'])).toMatchObject({ bucket: undefined, key: undefined });
    const op = (m: string, u: string, h: Record<string, string> = {}) => operationOf(m, resolveAddress(u, 'h', []), h);
    expect(op('GET', '/b?list-type=2')).toBe('ListObjectsV2');
    expect(op('GET', '/b')).toBe('ListObjects');
    expect(op('GET', '/b?versions')).toBe('ListObjectVersions');
    expect(op('POST', '/b?delete')).toBe('DeleteObjects');
    expect(op('PUT', '/b/k?partNumber=1&uploadId=u', { 'x-amz-copy-source': 'b/x' })).toBe('UploadPartCopy');
    expect(op('PUT', '/b/k', { 'x-amz-copy-source': 'b/x' })).toBe('CopyObject');
    expect(() => op('GET', '/b?policy')).toThrow(expect.objectContaining({ code: 'NotImplemented' }));
  });

  it('s3/protocol - sigv4: canonical query sorts and re-encodes, leaving out the signature', () => {
    expect(canonicalQuery('b=2&a=x%2Fy&X-Amz-Signature=zz&c', 'X-Amz-Signature')).toBe('a=x%2Fy&b=2&c=');
  });

  it('s3/protocol - attributes: shown as x-amz-meta-sluice-attr-*, internal ones hidden', () => {
    const h = metaHeaders({ has_ssn: true, n: 3, label: 'ok', 'x-amz-meta': { owner: 'ann' }, '$sluice.scan-sensitive': 7, '$sluice.s3.object': { etag: 'x' }, 'not a token': 1 });
    expect(h).toEqual({ 'x-amz-meta-owner': 'ann', 'x-amz-meta-sluice-attr-has_ssn': 'true', 'x-amz-meta-sluice-attr-n': '3', 'x-amz-meta-sluice-attr-label': 'ok' });
    expect(attrText('naïve')).toBe('"na\\u00efve"');
    expect(attrText(new Uint8Array([1, 2]))).toBe('{"$bytes":"AQI="}');
  });

  it('s3/protocol - options: credentials and addresses are validated with the path named', () => {
    expect(() => resolveCredentials([])).toThrow(/at least one access key/);
    expect(() => resolveCredentials([{ accessKeyId: 'ab', secretAccessKey: 'secretsecret' }])).toThrow(/credentials\[0\]\.accessKeyId/);
    expect(() => resolveCredentials([{ accessKeyId: 'abc', secretAccessKey: 'secretsecret', access: 'admin' as 'read' }])).toThrow(/credentials\[0\]\.access/);
    expect(parseAddress('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseAddress('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
    expect(() => parseAddress('localhost')).toThrow(expect.objectContaining({ code: 'SLUICE_INVALID_ARGUMENT' }));
  });
});
