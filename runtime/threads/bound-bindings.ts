/**
 * `ctx.data`: the bindings a function declares, each reaching only its resource with its access
 * (DESIGN invariant 5). A `read` binding refuses every write with SLUICE_ACCESS_DENIED naming the
 * binding and the method; a stream binding reaches only its own stream; names not declared are absent.
 *
 * Facades are explicit objects delegating to the backend's binding (not Proxies): backends keep state
 * in `#private` fields, which a Proxy receiver cannot reach, and explicit members keep the types honest.
 */
import { BindingError } from '../../bindings/errors.ts';
import type {
  Backend,
  Cursor,
  FileBinding,
  FileHandle,
  KvBinding,
  ObjectBinding,
  StreamBinding,
} from '../../bindings/types.ts';
import type { BoundBinding } from '../../functions/types.ts';
import type { BindingSpec } from '../batch-types.ts';

function denied(spec: BindingSpec, method: string, why = 'is read-only'): BindingError {
  return new BindingError('SLUICE_ACCESS_DENIED', `binding '${spec.name}' (${spec.kind} '${spec.resource}') ${why}: ${method} refused`, {
    details: { binding: spec.name, method },
  });
}

/** Builds `ctx.data` from the declared bindings (frozen; undeclared names absent). */
export async function bindAll(backend: Backend, specs: readonly BindingSpec[]): Promise<Readonly<Record<string, BoundBinding>>> {
  const out: Record<string, BoundBinding> = Object.create(null) as Record<string, BoundBinding>;
  for (const spec of specs) {
    if (Object.hasOwn(out, spec.name)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `binding '${spec.name}' is declared twice`);
    out[spec.name] = await bindOne(backend, spec);
  }
  return Object.freeze(out);
}

/** One declared binding, guarded by its access. */
export async function bindOne(backend: Backend, spec: BindingSpec): Promise<BoundBinding> {
  if (spec.access !== 'read' && spec.access !== 'read-write')
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `binding '${spec.name}': access must be 'read' or 'read-write', not ${JSON.stringify(spec.access)}`);
  switch (spec.kind) {
    case 'object':
      return guardObject(await backend.objects(spec.resource), spec);
    case 'kv':
      return guardKv(await backend.kv(spec.resource), spec);
    case 'stream':
      return guardStream(backend.streams(), spec);
    case 'file':
      return guardFile(await backend.files(spec.resource), spec);
    default:
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `binding '${(spec as BindingSpec).name}': unknown kind ${JSON.stringify((spec as BindingSpec).kind)}`);
  }
}

export function guardObject(b: ObjectBinding, spec: BindingSpec): ObjectBinding {
  const ro = spec.access === 'read';
  return Object.freeze<ObjectBinding>({
    bucket: b.bucket,
    info: () => b.info(),
    put: (key, body, o) => (ro ? Promise.reject(denied(spec, 'put')) : b.put(key, body, o)),
    get: (key, o) => b.get(key, o),
    getStream: (key, o) => b.getStream(key, o),
    head: (key, o) => b.head(key, o),
    delete: (key, o) => (ro ? Promise.reject(denied(spec, 'delete')) : b.delete(key, o)),
    list: (o) => b.list(o),
    getAttrs: (key, o) => b.getAttrs(key, o),
    updateAttrs: (key, u, o) => (ro ? Promise.reject(denied(spec, 'updateAttrs')) : b.updateAttrs(key, u, o)),
    query: (o) => b.query(o),
  });
}

export function guardKv(b: KvBinding, spec: BindingSpec): KvBinding {
  const ro = spec.access === 'read';
  return Object.freeze<KvBinding>({
    table: b.table,
    getItem: (key, o) => b.getItem(key, o),
    getItems: (o) => b.getItems(o),
    putItem: (key, item, o) => (ro ? Promise.reject(denied(spec, 'putItem')) : b.putItem(key, item, o)),
    updateItem: (key, u, o) => (ro ? Promise.reject(denied(spec, 'updateItem')) : b.updateItem(key, u, o)),
    deleteItem: (key, o) => (ro ? Promise.reject(denied(spec, 'deleteItem')) : b.deleteItem(key, o)),
  });
}

/** The stream namespace narrowed to the declared stream. */
export function guardStream(b: StreamBinding, spec: BindingSpec): StreamBinding {
  const ro = spec.access === 'read';
  const own = (name: string, method: string): BindingError | undefined =>
    name === spec.resource ? undefined : denied(spec, `${method}('${name}')`, `reaches only stream '${spec.resource}'`);
  const check = (name: string, method: string, write: boolean): BindingError | undefined => own(name, method) ?? (write && ro ? denied(spec, method) : undefined);
  const guarded = <T>(err: BindingError | undefined, call: () => Promise<T>): Promise<T> => (err ? Promise.reject(err) : call());
  return Object.freeze<StreamBinding>({
    create: (name, o) => guarded(check(name, 'create', true), () => b.create(name, o)),
    info: (name, o) => guarded(check(name, 'info', false), () => b.info(name, o)),
    delete: (name) => guarded(check(name, 'delete', true), () => b.delete(name)),
    putRecords: (name, recs, o) => guarded(check(name, 'putRecords', true), () => b.putRecords(name, recs, o)),
    seek: (name, shard, pos, o) => guarded(check(name, 'seek', false), () => b.seek(name, shard, pos, o)),
    getRecords: (cursor: Cursor, o) => guarded(check(cursor.stream, 'getRecords', false), () => b.getRecords(cursor, o)),
    group: (name, group, o) => guarded(check(name, 'group', false), () => b.group(name, group, o)),
  });
}

export function guardFile(b: FileBinding, spec: BindingSpec): FileBinding {
  const ro = spec.access === 'read';
  const deny = (m: string): Promise<never> => Promise.reject(denied(spec, m));
  return Object.freeze<FileBinding>({
    root: b.root,
    open: async (path, o) => {
      const mode = o?.mode ?? 'r';
      if (ro && mode !== 'r') return deny(`open('${path}', { mode: '${mode}' })`);
      const h = await b.open(path, o);
      return ro ? readOnlyHandle(h, spec) : h;
    },
    readFile: (path) => b.readFile(path),
    writeFile: (path, data) => (ro ? deny('writeFile') : b.writeFile(path, data)),
    stat: (path) => b.stat(path),
    readdir: (path) => b.readdir(path),
    mkdir: (path, o) => (ro ? deny('mkdir') : b.mkdir(path, o)),
    rename: (from, to) => (ro ? deny('rename') : b.rename(from, to)),
    remove: (path, o) => (ro ? deny('remove') : b.remove(path, o)),
  });
}

function readOnlyHandle(h: FileHandle, spec: BindingSpec): FileHandle {
  return Object.freeze<FileHandle>({
    path: h.path,
    read: (pos, len) => h.read(pos, len),
    write: () => Promise.reject(denied(spec, 'write')),
    stat: () => h.stat(),
    close: () => h.close(),
  });
}
