/**
 * `sluice logs [-f]` on the Kubernetes driver: the worker containers' logs of a function's pods,
 * read through the API server (`GET …/pods/<pod>/log`, with `follow` for -f), one line at a time,
 * merged over the pods in arrival order and parsed like the local driver's lines (log-lines.ts).
 * Pods that start after a followed read began are not picked up (run the command again).
 */
import { PassThrough } from 'node:stream';
import { Log, type CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { LogLine } from '../control-plane.ts';
import { toLogLine } from '../log-lines.ts';
import { FunctionLabel, PodIndexLabel } from './render.ts';

/** Options of {@link podLogs}. */
export interface PodLogsOptions {
  follow: boolean;
  signal?: AbortSignal;
  /** Lines per pod before following. @default 500 */
  tailLines?: number;
  /** Container of the worker. @default 'worker' */
  container?: string;
}

/** Lines of the function's worker pods; ends when every pod's log ends, or when `signal` aborts. */
export async function* podLogs(kc: KubeConfig, core: CoreV1Api, namespace: string, fn: string, o: PodLogsOptions): AsyncIterable<LogLine> {
  const pods = (await core.listNamespacedPod({ namespace, labelSelector: `${FunctionLabel}=${fn}` })).items;
  const queue: LogLine[] = [];
  let open = 0;
  let wake: (() => void) | undefined;
  const aborts: AbortController[] = [];
  const failures: Error[] = [];
  const kick = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const log = new Log(kc);
  for (const p of pods) {
    const pod = p.metadata?.name ?? '';
    const ordinal = Number(p.metadata?.labels?.[PodIndexLabel] ?? /-(\d+)$/.exec(pod)?.[1] ?? -1);
    const out = new PassThrough();
    let buf = '';
    open++;
    out.setEncoding('utf8');
    out.on('data', (d: string) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        // timestamps=true: "2026-01-01T00:00:00.123456789Z <line>"
        const sp = l.indexOf(' ');
        const ts = sp > 0 ? Date.parse(l.slice(0, sp)) : NaN;
        const line = Number.isNaN(ts) ? toLogLine(l, ordinal, pod) : toLogLine(l.slice(sp + 1), ordinal, pod, new Date(ts).toISOString());
        // Bounded: a reader that stopped reading does not grow the controller's memory without end.
        if (line && queue.length < 10_000) queue.push(line);
      }
      kick();
    });
    out.on('end', () => {
      open--;
      kick();
    });
    const ac = await log
      .log(namespace, pod, o.container ?? 'worker', out, { follow: o.follow, tailLines: o.tailLines ?? 500, timestamps: true })
      .catch((e: unknown) => {
        failures.push(e as Error);
        out.end();
        return undefined;
      });
    if (ac) aborts.push(ac);
  }
  const onAbort = () => {
    for (const a of aborts) a.abort();
    kick();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      while (queue.length > 0) yield queue.shift()!;
      if (open === 0 || o.signal?.aborted) break;
      await new Promise<void>((r) => (wake = r));
    }
    if (failures.length > 0 && failures.length === pods.length) throw failures[0];
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    for (const a of aborts) a.abort();
  }
}
