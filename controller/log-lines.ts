/** One line a worker wrote, as a {@link LogLine}: pino JSON records parsed, anything else kept as raw output. */
import type { LogLine } from './control-plane.ts';

function levelName(l: unknown): string {
  if (typeof l === 'string') return l;
  const n = typeof l === 'number' ? l : 30;
  return n >= 60 ? 'fatal' : n >= 50 ? 'error' : n >= 40 ? 'warn' : n >= 30 ? 'info' : n >= 20 ? 'debug' : 'trace';
}

/**
 * Parses one line. A pino record (an object with `msg` or `level`) keeps its level, message, time and
 * fields; anything else — a handler's console.log, a stack Node printed — is the worker's raw output,
 * level 'output', labelled with the stream it came from rather than passed off as an info line.
 */
export function toLogLine(raw: string, ordinal: number, stream: string, at?: string): LogLine | undefined {
  if (!raw.trim()) return undefined;
  if (raw.startsWith('{')) {
    try {
      const j = JSON.parse(raw) as Record<string, unknown>;
      if (j !== null && typeof j === 'object' && !Array.isArray(j) && ('msg' in j || 'level' in j)) {
        const { level, msg, time, ...fields } = j;
        const err = fields.err as { message?: unknown } | undefined;
        const message = String(msg ?? '') || (typeof err?.message === 'string' ? err.message : '');
        return { at: typeof time === 'number' ? new Date(time).toISOString() : (at ?? new Date().toISOString()), ordinal, level: levelName(level), message, fields };
      }
    } catch {
      // not JSON after all: raw output
    }
  }
  return { at: at ?? new Date().toISOString(), ordinal, level: 'output', message: raw, fields: { stream } };
}
