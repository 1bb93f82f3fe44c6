/**
 * The gateway's per-request fast paths (round 4 of the 1 KiB PUT/GET work), each pinned by what it must
 * not change: small GET bodies go out as one latin1 string write (every byte value must survive, at the
 * sizes around the string/Buffer threshold); `x-amz-request-id` and `server` are named in each
 * `writeHead` instead of set up front (every kind of response must still carry them); the SigV4 parser
 * and canonical headers were rewritten without Set/Map/spread (folded whitespace, re-encoded paths and
 * tampered signatures must still be judged exactly as before). Local backend, real HTTP on loopback.
 */
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { S3Gateway } from '../../controller/s3/index.ts';
import { signer, startTestGateway } from '../support/s3.ts';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function send(gw: S3Gateway, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: '127.0.0.1', port: gw.port, method, path, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

/** Signs with the SDK's own signer (it canonicalises as AWS does) and sends exactly those headers. */
async function signedSend(gw: S3Gateway, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer): Promise<Reply> {
  const all: Record<string, string> = { host: `127.0.0.1:${gw.port}`, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers };
  if (body) all['content-length'] = String(body.length);
  const [p, q] = path.split('?');
  const query = Object.fromEntries(new URLSearchParams(q ?? ''));
  const s = await signer().sign({ method, protocol: 'http:', hostname: '127.0.0.1', port: gw.port, path: p!, query, headers: all });
  return send(gw, method, path, s.headers as Record<string, string>, body);
}

describe('s3/hot-path', () => {
  let dir: string;
  let backend: LocalBackend;
  let gw: S3Gateway;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-s3-hot-'));
    backend = await LocalBackend.open({ dir });
    await backend.createBucket('hot');
    gw = await startTestGateway(backend);
  });

  afterAll(async () => {
    await gw?.close();
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('s3/hot-path - GET returns every byte value exactly, below, at and above the one-write thresholds', async () => {
    // 0 … 255 repeated: a latin1 round trip that lost or re-encoded any byte would show here.
    for (const size of [0, 1, 255, 256, 1024, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 256 * 1024, 256 * 1024 + 7]) {
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
      const put = await signedSend(gw, 'PUT', `/hot/bytes/${size}`, {}, data);
      expect(put.status, `PUT ${size}`).toBe(200);
      const got = await signedSend(gw, 'GET', `/hot/bytes/${size}`);
      expect(got.status, `GET ${size}`).toBe(200);
      expect(got.headers['content-length']).toBe(String(size));
      expect(got.body.equals(data), `GET ${size} body`).toBe(true);
    }
    // A range of a small body also goes out as one write.
    const ranged = await signedSend(gw, 'GET', '/hot/bytes/1024', { range: 'bytes=250-260' });
    expect(ranged.status).toBe(206);
    expect([...ranged.body]).toEqual([...Buffer.alloc(1024).map((_, i) => (i * 7 + (i >> 8)) & 0xff).subarray(250, 261)]);
  });

  it('s3/hot-path - every kind of response carries x-amz-request-id and server', async () => {
    const data = Buffer.from('hello');
    const replies: [string, Reply][] = [
      ['PUT 200', await signedSend(gw, 'PUT', '/hot/h/k', { 'cache-control': 'no-cache' }, data)],
      ['GET 200', await signedSend(gw, 'GET', '/hot/h/k')],
      ['HEAD 200', await signedSend(gw, 'HEAD', '/hot/h/k')],
      ['GET 304', await signedSend(gw, 'GET', '/hot/h/k', { 'if-none-match': '*' })],
      ['LIST 200', await signedSend(gw, 'GET', '/hot?list-type=2&prefix=h%2F')],
      ['GET 404', await signedSend(gw, 'GET', '/hot/h/missing')],
      ['HEAD 404', await signedSend(gw, 'HEAD', '/hot/h/missing')],
      ['DELETE 204', await signedSend(gw, 'DELETE', '/hot/h/other')],
      ['unsigned 403', await send(gw, 'GET', '/hot/h/k', {})],
    ];
    const ids = new Set<string>();
    for (const [what, r] of replies) {
      expect(r.headers['x-amz-request-id'], what).toMatch(/^[0-9A-F]{16}$/);
      expect(r.headers.server, what).toBe('sluice');
      ids.add(String(r.headers['x-amz-request-id']));
    }
    expect(ids.size).toBe(replies.length);
    expect(replies[0]![1].status).toBe(200);
    expect(replies[1]![1].headers['cache-control']).toBe('no-cache');
    expect(replies[3]![1].status).toBe(304);
    expect(replies[4]![1].body.toString()).toContain('<Key>h/k</Key>');
    expect(replies[5]![1].body.toString()).toContain(`<RequestId>${String(replies[5]![1].headers['x-amz-request-id'])}</RequestId>`);
    expect(replies[8]![1].status).toBe(403);
  });

  it('s3/hot-path - SigV4: folded whitespace and re-encoded paths verify; a tampered signature, header or path does not', async () => {
    // Runs of spaces and a tab inside a signed value: canonicalised to single spaces on both sides.
    const meta = { 'x-amz-meta-note': 'a   b\tc  d' };
    expect((await signedSend(gw, 'PUT', '/hot/sig/ws', meta, Buffer.from('x'))).status).toBe(200);
    // A key with characters the path carries encoded (space, +, unicode): the canonical URI is tried both ways.
    const odd = `/hot/sig/${encodeURIComponent('a b+c ü')}`;
    expect((await signedSend(gw, 'PUT', odd, {}, Buffer.from('y'))).status).toBe(200);
    expect((await signedSend(gw, 'GET', odd)).body.toString()).toBe('y');

    const all = { host: `127.0.0.1:${gw.port}`, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'x-amz-meta-note': 'signed' };
    const s = (await signer().sign({ method: 'GET', protocol: 'http:', hostname: '127.0.0.1', port: gw.port, path: '/hot/sig/ws', query: {}, headers: all })).headers as Record<string, string>;
    expect((await send(gw, 'GET', '/hot/sig/ws', s)).status).toBe(200);
    const auth = s.authorization!;
    const flipped = auth.slice(0, -1) + (auth.endsWith('0') ? '1' : '0');
    const cases: [string, string, Record<string, string>][] = [
      ['signature', '/hot/sig/ws', { ...s, authorization: flipped }],
      ['signed header value', '/hot/sig/ws', { ...s, 'x-amz-meta-note': 'changed' }],
      ['path', '/hot/sig/other', s],
    ];
    for (const [what, path, headers] of cases) {
      const r = await send(gw, 'GET', path, headers);
      expect(r.status, what).toBe(403);
      expect(r.body.toString(), what).toContain('<Code>SignatureDoesNotMatch</Code>');
    }
    // A signed header that is missing from the request.
    const { 'x-amz-meta-note': _dropped, ...missing } = s;
    const r = await send(gw, 'GET', '/hot/sig/ws', missing);
    expect(r.status).toBe(403);
    expect(r.body.toString()).toContain('x-amz-meta-note&apos; is signed but absent');
  });
});
