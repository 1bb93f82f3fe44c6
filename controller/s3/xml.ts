/**
 * The little XML the S3 protocol needs: escaping for responses built as strings (fast: LIST of 1,000
 * keys is one join), and a reader for the two small request documents clients send (DeleteObjects and
 * CompleteMultipartUpload). A full XML parser would accept far more than S3 does; this one takes
 * elements, text and entities, ignores declarations and attributes, and refuses anything else.
 */
import { S3Error } from './s3-errors.ts';

export const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n';

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Escapes text for an element body or attribute. */
export function esc(s: string): string {
  return /[&<>"']/.test(s) ? s.replace(/[&<>"']/g, (c) => ESC[c]!) : s;
}

/** `<name>escaped text</name>` */
export function el(name: string, text: string | number | boolean): string {
  return `<${name}>${esc(String(text))}</${name}>`;
}

/** A whole response document with the S3 namespace on its root. */
export function doc(root: string, inner: string): string {
  return `${XML_HEAD}<${root} xmlns="${S3_NS}">${inner}</${root}>`;
}

/** A parsed element: name, text content (concatenated), child elements. */
export interface XmlNode {
  name: string;
  text: string;
  children: XmlNode[];
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function unescape(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (m, e: string) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    const v = ENTITIES[e];
    if (v === undefined) throw new S3Error('MalformedXML', `unknown XML entity ${m}`);
    return v;
  });
}

/** Parses a small XML document (at most `maxBytes`) into its root element. */
export function parseXml(src: string, maxBytes = 1024 * 1024): XmlNode {
  if (src.length > maxBytes) throw new S3Error('MalformedXML', `XML body is longer than ${maxBytes} bytes`);
  const stack: XmlNode[] = [];
  let root: XmlNode | undefined;
  const re = /<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<!\[CDATA\[([\s\S]*?)\]\]>|<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[^\s=>/]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  while ((m = re.exec(src)) !== null) {
    pos = re.lastIndex;
    const [, cdata, close, rawName, , selfClose, text] = m;
    const top = stack[stack.length - 1];
    if (text !== undefined || cdata !== undefined) {
      const t = cdata ?? unescape(text!);
      if (top) top.text += t;
      else if (t.trim() !== '') throw new S3Error('MalformedXML', 'text outside the root element');
      continue;
    }
    if (rawName === undefined) continue; // declaration or comment
    const name = rawName.includes(':') ? rawName.slice(rawName.indexOf(':') + 1) : rawName;
    if (close) {
      if (!top || top.name !== name) throw new S3Error('MalformedXML', `unexpected </${rawName}>`);
      stack.pop();
      continue;
    }
    const node: XmlNode = { name, text: '', children: [] };
    if (top) top.children.push(node);
    else if (root) throw new S3Error('MalformedXML', 'more than one root element');
    else root = node;
    if (!selfClose) stack.push(node);
  }
  if (pos !== src.length || stack.length > 0 || !root) throw new S3Error('MalformedXML', 'the XML body is not well-formed');
  return root;
}

/** The children of `n` named `name`. */
export function childrenNamed(n: XmlNode, name: string): XmlNode[] {
  return n.children.filter((c) => c.name === name);
}

/** The text of the first child named `name`, or undefined. */
export function childText(n: XmlNode, name: string): string | undefined {
  return n.children.find((c) => c.name === name)?.text;
}
