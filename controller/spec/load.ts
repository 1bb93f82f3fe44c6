/**
 * Loading a function spec from YAML text: parse keeping positions, validate against the one schema,
 * and report every problem with its path and `line:column` in the file — a spec error that says
 * only "invalid" makes the author bisect their YAML by hand.
 */
import { readFileSync } from 'node:fs';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { SluiceError } from '../../bindings/errors.ts';
import { SpecError } from './errors.ts';
import { functionSpecSchema } from './schema.ts';
import type { FunctionSpec, SpecProblem } from './types.ts';

type PathSeg = PropertyKey;

/** `spec.triggers[0].object.bucket` from `['spec', 'triggers', 0, 'object', 'bucket']`. */
export function formatPath(path: readonly PathSeg[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : `${out ? '.' : ''}${String(seg)}`;
  return out;
}

/** Messages for the issues a field's own schema does not word itself. */
const errorMap = (iss: z.core.$ZodRawIssue): string => {
  switch (iss.code) {
    case 'invalid_type': {
      const words: Record<string, string> = { object: 'must be a map', array: 'must be a list', string: 'must be a string', number: 'must be a number', int: 'must be an integer', boolean: 'must be true or false' };
      return words[iss.expected] ?? `must be ${iss.expected}`;
    }
    case 'unrecognized_keys':
      return 'unknown key';
    case 'invalid_value':
      return `must be one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return iss.origin === 'array' ? `must have at least ${String(iss.minimum)} entries` : iss.origin === 'string' ? 'must not be empty' : `must be at least ${String(iss.minimum)}`;
    case 'too_big':
      return iss.origin === 'array' ? `must have at most ${String(iss.maximum)} entries` : iss.origin === 'string' ? `must be at most ${String(iss.maximum)} characters` : `must be at most ${String(iss.maximum)}`;
    case 'invalid_union':
      return 'matches none of the accepted shapes';
    default:
      return iss.message ?? 'is invalid';
  }
};

/** Where a path points in the document: the key of the last map entry found, or the list item. */
function locate(doc: Document, path: readonly PathSeg[]): number | undefined {
  let node: unknown = doc.contents;
  let at: number | undefined = (doc.contents as Node | null)?.range?.[0];
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
      if (!pair) return at; // missing key: point at its parent entry
      at = (pair.key as Node | null)?.range?.[0] ?? at;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item) return at;
      at = item.range?.[0] ?? at;
      node = item;
    } else return at;
  }
  return at;
}

/** The plain value at `path` in `data`, and whether the last key was present at all. */
function valueAt(data: unknown, path: readonly PathSeg[]): { present: boolean; value: unknown } {
  let v: unknown = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, seg)) return { present: false, value: undefined };
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return { present: true, value: v };
}

function shown(v: unknown): string | undefined {
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return undefined; // maps and lists: the path already says which
}

/** Turns zod issues into problems with paths, positions and the offending value (never a secret's). */
function problemsOf(issues: readonly z.core.$ZodIssue[], data: unknown, doc: Document | undefined, lc: LineCounter | undefined): SpecProblem[] {
  const out: (SpecProblem & { offset: number })[] = [];
  const push = (path: readonly PathSeg[], message: string) => {
    // An empty document has no node at all: its problems are at the start of the file.
    const offset = doc ? (locate(doc, path) ?? 0) : undefined;
    const p: SpecProblem & { offset: number } = { path: formatPath(path), message, offset: offset ?? Number.MAX_SAFE_INTEGER };
    if (offset !== undefined && lc) {
      const pos = lc.linePos(offset);
      p.line = pos.line;
      p.column = pos.col;
    }
    out.push(p);
  };
  for (const iss of issues) {
    if (iss.code === 'unrecognized_keys') {
      for (const k of iss.keys) push([...iss.path, k], 'unknown key');
      continue;
    }
    const { present, value } = valueAt(data, iss.path);
    const secret = iss.path[0] === 'spec' && iss.path[1] === 'secrets';
    let message = iss.message;
    if (!present && iss.path.length > 0 && ['invalid_type', 'invalid_value', 'invalid_union'].includes(iss.code)) message = 'is required';
    else if (!secret && present && !message.includes('(got') && !(iss.code === 'custom' && iss.params?.['quiet'] === true)) {
      const s = shown(value);
      if (s !== undefined) message += ` (got ${s})`;
    }
    push(iss.path, message);
  }
  // File order reads best; problems without a position (none expected) go last.
  return out.sort((a, b) => a.offset - b.offset).map(({ offset: _offset, ...p }) => p);
}

/** Validates an already parsed spec (a plain object); errors carry paths but no positions. */
export function parseFunctionSpec(data: unknown, file?: string): FunctionSpec {
  const r = functionSpecSchema.safeParse(data, { error: errorMap });
  if (!r.success) throw new SpecError(problemsOf(r.error.issues, data, undefined, undefined), file);
  return r.data;
}

/**
 * Parses and validates a spec from YAML text. Throws {@link SpecError} (`SLUICE_SPEC_INVALID`) listing
 * every problem as `file:line:col path: message`, YAML syntax errors included.
 * @param file name used in messages. @default '<spec>'
 */
export function loadFunctionSpec(text: string, file?: string): FunctionSpec {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e): SpecProblem => {
      const pos = lc.linePos(e.pos[0]);
      return { path: '', line: pos.line, column: pos.col, message: `YAML ${e.code}: ${e.message.split('\n')[0] ?? ''}` };
    });
    throw new SpecError(problems, file ?? '<spec>');
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new SpecError([{ path: '', line: 1, column: 1, message: `YAML: ${(e as Error).message}` }], file ?? '<spec>', { cause: e });
  }
  const r = functionSpecSchema.safeParse(data, { error: errorMap });
  if (!r.success) throw new SpecError(problemsOf(r.error.issues, data, doc, lc), file ?? '<spec>');
  return r.data;
}

/** Reads and validates a spec file; messages name the file as given. */
export function loadFunctionSpecFile(path: string): FunctionSpec {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ENOENT') throw new SluiceError('SLUICE_FILE_NOT_FOUND', `function spec ${path} does not exist`, { cause: e });
    throw new SluiceError('SLUICE_SPEC_INVALID', `cannot read function spec ${path}: ${(e as Error).message}`, { cause: e });
  }
  return loadFunctionSpec(text, path);
}
