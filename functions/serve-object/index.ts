/**
 * serve-object: an HTTP-triggered function that answers `GET /files/<key>` with the body of object `<key>`
 * from the bucket bound as `files` (read-only), its content type, length and etag; 404 when there is none.
 * `If-None-Match` with the current etag answers 304; HEAD answers the headers alone.
 *
 * Small bodies are answered whole; larger ones are streamed from the binding (`getStream`) so a 50 MiB
 * object never sits whole in the handler thread.
 */
import type { ObjectBinding } from '../../bindings/types.ts';
import { defineHttpFunction } from '../types.ts';

/** Bodies up to this size are read whole (one read, one message); larger ones stream. */
const WHOLE_MAX_BYTES = 256 * 1024;

export default defineHttpFunction({
  async http(req, ctx) {
    const files = ctx.data.files as ObjectBinding;
    const key = decodeURIComponent(req.path.replace(/^\/files\/?/, ''));
    if (key === '') return { status: 400, body: 'GET /files/<key>' };
    const head = await files.head(key);
    if (!head) return { status: 404, body: `no object ${key}` };
    const etag = `"${head.etag}"`;
    if (req.headers['if-none-match'] === etag) return { status: 304, headers: { etag } };
    const headers = { 'content-type': head.contentType || 'application/octet-stream', etag };
    if (req.method === 'HEAD') return { status: 200, headers: { ...headers, 'content-length': String(head.size) } };
    if (head.size <= WHOLE_MAX_BYTES) {
      const obj = await files.get(key);
      return { status: 200, headers: { ...headers, 'content-type': obj.contentType || 'application/octet-stream' }, body: obj.body };
    }
    const obj = await files.getStream(key, { signal: ctx.signal });
    return { status: 200, headers: { ...headers, etag: `"${obj.head.etag}"`, 'content-length': String(obj.head.size) }, body: obj.body };
  },
});
