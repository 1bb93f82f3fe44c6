/**
 * `ctx.data`: the bindings a function declares, and nothing else (DESIGN invariant 5). A binding
 * declared `read` refuses every writing method with SLUICE_ACCESS_DENIED, naming the binding and the
 * method; an undeclared name is simply absent.
 */
import { BindingError } from '../bindings/errors.ts';
import type { Backend, FileBinding, OpenOptions } from '../bindings/types.ts';
import type { BoundBinding } from '../functions/types.ts';
import type { BindingSpec } from './batch-types.ts';

/** Writing methods of each binding kind. */
const WRITERS: Record<BindingSpec['kind'], readonly string[]> = {
  object: ['put', 'delete', 'updateAttrs'],
  kv: ['putItem', 'updateItem', 'deleteItem'],
  stream: ['create', 'delete', 'putRecords'],
  file: ['writeFile', 'mkdir', 'rename', 'remove'],
};

function readOnly<T extends object>(target: T, spec: BindingSpec): T {
  const writers = new Set(WRITERS[spec.kind]);
  return new Proxy(target, {
    get(t, prop, receiver) {
      const v = Reflect.get(t, prop, receiver) as unknown;
      if (typeof prop === 'string' && writers.has(prop)) {
        return () => Promise.reject(new BindingError('SLUICE_ACCESS_DENIED', `binding '${spec.name}' (${spec.kind} ${spec.resource}) is declared read-only: ${prop} is not allowed`));
      }
      if (spec.kind === 'file' && prop === 'open') {
        return (path: string, o?: OpenOptions) => {
          if ((o?.mode ?? 'r') !== 'r')
            return Promise.reject(new BindingError('SLUICE_ACCESS_DENIED', `binding '${spec.name}' (file ${spec.resource}) is declared read-only: open in mode '${o?.mode}' is not allowed`));
          return (t as unknown as FileBinding).open(path, o);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

/** A stream binding limited to the declared stream: every call naming another stream is refused. */
function scopedStream<T extends object>(target: T, spec: BindingSpec): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      const v = Reflect.get(t, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const a = args[0];
        const name = typeof a === 'string' ? a : (a as { stream?: unknown } | undefined)?.stream;
        if (name !== spec.resource)
          return Promise.reject(new BindingError('SLUICE_ACCESS_DENIED', `binding '${spec.name}' reaches only stream '${spec.resource}', not ${JSON.stringify(name)}`));
        return (v as (...x: unknown[]) => unknown).apply(t, args);
      };
    },
  });
}

/** Opens every declared binding on `backend`, wrapped for its access. */
export async function bindData(backend: Backend, specs: readonly BindingSpec[]): Promise<Readonly<Record<string, BoundBinding>>> {
  const out: Record<string, BoundBinding> = {};
  for (const s of specs) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(s.name)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `binding name ${JSON.stringify(s.name)} must be an identifier`);
    if (Object.hasOwn(out, s.name)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `binding '${s.name}' is declared twice`);
    if (s.access !== 'read' && s.access !== 'read-write') throw new BindingError('SLUICE_INVALID_ARGUMENT', `binding '${s.name}': access must be 'read' or 'read-write'`);
    let b: BoundBinding;
    switch (s.kind) {
      case 'object':
        b = await backend.objects(s.resource);
        break;
      case 'kv':
        b = await backend.kv(s.resource);
        break;
      case 'stream':
        b = scopedStream(backend.streams(), s);
        break;
      case 'file':
        b = await backend.files(s.resource);
        break;
      default:
        throw new BindingError('SLUICE_INVALID_ARGUMENT', `binding '${(s as BindingSpec).name}': unknown kind ${JSON.stringify((s as BindingSpec).kind)}`);
    }
    out[s.name] = s.access === 'read' ? readOnly(b, s) : b;
  }
  return Object.freeze(out);
}
