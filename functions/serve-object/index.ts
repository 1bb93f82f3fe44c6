/**
 * serve-object: an HTTP-triggered function that answers `GET /files/<key>` with the body of object `<key>`
 * from the bucket bound as `files` (read-only), its content type and etag; 404 when there is none.
 * `If-None-Match` with the current etag answers 304.
 */
import type { ObjectBinding } from '../../bindings/types.ts';
import { defineHttpFunction } from '../types.ts';

export default defineHttpFunction({
  async http(req, ctx) {
    const files = ctx.data.files as ObjectBinding;
    const key = decodeURIComponent(req.path.replace(/^\/files\/?/, ''));
    if (key === '') return { status: 400, body: 'GET /files/<key>' };
    const head = await files.head(key);
    if (!head) return { status: 404, body: `no object ${key}` };
    const etag = `"${head.etag}"`;
    if (req.headers['if-none-match'] === etag) return { status: 304, headers: { etag } };
    const obj = await files.get(key);
    return { status: 200, headers: { 'content-type': obj.contentType || 'application/octet-stream', etag }, body: obj.body };
  },
});
