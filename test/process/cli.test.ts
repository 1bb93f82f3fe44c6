/**
 * The `sluice` command line end to end: one real `sluice dev` process (embedded backend, controller,
 * worker processes, control API on a free port), and every CLI command run as its own child process
 * against it, checking stdout (text and `--json`), stderr messages and the documented exit codes
 * (controller/cli/context.ts `ExitCodes`, docs/CLI.md). Independent scenarios run concurrently to keep
 * the file short; the ones that change the deployed functions run afterwards, in order.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCodes } from '../../controller/cli/context.ts';
import type { FunctionStatus } from '../../controller/control-plane.ts';
import { until } from '../support/poll.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sluiceBin = join(root, 'controller/cli/sluice.mjs');
const handler = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const FN = 'counter';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of the children: no SLUICE_* from the caller, so only the flags decide. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const k of Object.keys(env)) if (k.startsWith('SLUICE_')) delete env[k];
  return env;
}

/** A function spec whose handler is the rt-count fixture (absolute path) on bucket 'uploads'. */
function spec(name: string, extra: string): string {
  return [
    'apiVersion: sluice.dev/v1',
    'kind: Function',
    'metadata:',
    `  name: ${name}`,
    'spec:',
    `  handler: ${handler}`,
    '  triggers:',
    '    - object:',
    '        bucket: uploads',
    extra,
  ].join('\n');
}

let work: string;
let data: string;
let server = '';
let dev: ChildProcess | undefined;
let devOut = '';
let devExit: Promise<number | null>;

/** Runs `sluice --data <data> --server <dev> ...args` as a child process. */
function sluice(args: string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [sluiceBin, '--data', data, '--server', server, ...args], { cwd: root, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`sluice ${args.join(' ')} did not finish in ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed and parses its `--json` output. */
async function json<T>(args: string[]): Promise<T> {
  const r = await sluice([...args, '--json']);
  if (r.code !== 0) throw new Error(`sluice ${args.join(' ')} --json exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

describe('cli', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
    data = join(work, 'data');
    const fns = join(work, 'functions');
    mkdirSync(join(fns, FN), { recursive: true });
    writeFileSync(join(fns, FN, 'function.yaml'), spec(FN, '  batch: {maxWait: 5ms}\n  scaling: {minReplicas: 1, maxReplicas: 2}\n'));
    const p = spawn(process.execPath, [sluiceBin, 'dev', '--data', data, '--port', '0', '--functions', fns], { cwd: root, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    dev = p;
    let devErr = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (devErr = (devErr + d).slice(-8000)));
    devExit = new Promise((r) => p.on('exit', (c) => r(c)));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`sluice dev did not start in 30 s; stdout: ${devOut}; stderr: ${devErr}`)), 30_000);
      p.stdout.setEncoding('utf8').on('data', (d: string) => {
        devOut += d;
        const m = /control API on (127\.0\.0\.1:\d+) \(token in (.+)\)/.exec(devOut);
        if (m && /deployed counter \(revision 1\)/.test(devOut)) {
          expect(m[2]).toBe(join(data, 'token'));
          server = m[1]!;
          clearTimeout(t);
          resolve();
        }
      });
      void devExit.then((c) => {
        clearTimeout(t);
        reject(new Error(`sluice dev exited with ${c} before it was ready; stdout: ${devOut}; stderr: ${devErr}`));
      });
    });
    // Pinned at 1 (maxReplicas is 2 for the `scale 2` test): the autoscaler must not add a replica on
    // the lag the concurrent upload tests make while `ls`/`status` are checked (CI saw `ls` report 2).
    const pin = await sluice(['scale', FN, '1']);
    expect(pin.code, pin.stderr).toBe(ExitCodes.ok);
  });

  afterAll(async () => {
    // Only when the SIGTERM test did not run or failed: stop dev (and so its workers) anyway.
    if (dev && dev.exitCode === null && dev.signalCode === null) {
      dev.kill('SIGTERM');
      const t = setTimeout(() => dev?.kill('SIGKILL'), 15_000);
      await devExit;
      clearTimeout(t);
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it.concurrent('cli - ls --json lists the function; status --json shows replicas, owned shards and counters', async ({ expect }) => {
    expect(await json<unknown[]>(['ls'])).toEqual([{ name: FN, revision: 1, replicas: 1 }]);
    const s = await until('one ready replica owning every shard', async () => {
      const st = await json<FunctionStatus>(['status', FN]);
      return st.replicas.ready === 1 && st.shards.length > 0 && st.shards.every((x) => x.owner !== '') ? st : undefined;
    });
    expect(s).toMatchObject({ name: FN, revision: 1, replicas: { desired: 1, ready: 1 }, deadLetters: 0 });
    expect(s.shards.map((x) => x.shard)).toEqual([0, 1, 2, 3]);
    expect(new Set(s.shards.map((x) => x.owner)).size).toBe(1);
    expect(typeof s.counters).toBe('object');
    const text = await sluice(['status', FN]);
    expect(text.code).toBe(ExitCodes.ok);
    expect(text.stdout).toMatch(/^counter revision 1: 1\/1 replicas ready/);
    expect(text.stdout).toContain('SHARD  OWNER');
  });

  it.concurrent('cli - objects put uploads a folder, the function marks each object once; get, ls --delimiter, attrs --set', async ({ expect }) => {
    const folder = join(work, 'upload');
    mkdirSync(join(folder, 'sub'), { recursive: true });
    const files: Record<string, string> = { 'a.txt': 'alpha\n', 'b.json': '{"b":2}', 'sub/c.txt': 'nested body\n' };
    for (const [k, body] of Object.entries(files)) writeFileSync(join(folder, k), body);

    const put = await sluice(['objects', 'put', 'uploads', folder]);
    expect(put.code, put.stderr).toBe(ExitCodes.ok);
    const lines = put.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    for (const [i, k] of Object.keys(files).sort().entries()) expect(lines[i]).toMatch(new RegExp(`^put uploads/${k.replace('.', '\\.')} ${files[k]!.length} bytes etag=\\w+ version=\\d+$`));

    // The function ADDs 1 to n and sets len on every put: n = 1 is "handled exactly once".
    for (const [k, body] of Object.entries(files)) {
      const attrs = await until(`${k} marked by the function`, async () => {
        const a = await json<{ attrs: Record<string, unknown> }>(['attrs', 'uploads', k]);
        return a.attrs.n === undefined ? undefined : a.attrs;
      });
      // Exactly these: the function's processed-marker ($sluice.<fn>) is internal and never shown.
      expect(attrs).toEqual({ n: 1, len: Buffer.byteLength(body) });
    }

    const get = await sluice(['get', 'uploads', 'sub/c.txt']);
    expect(get.code).toBe(ExitCodes.ok);
    expect(get.stdout).toBe(files['sub/c.txt']);

    const ls = await json<{ objects: { key: string; size: number; contentType: string }[]; commonPrefixes: string[] }>(['objects', 'ls', 'uploads', '--delimiter', '/']);
    expect(ls.objects.map((o) => [o.key, o.size, o.contentType])).toEqual([
      ['a.txt', 6, 'text/plain'],
      ['b.json', 7, 'application/json'],
    ]);
    expect(ls.commonPrefixes).toEqual(['sub/']);

    const set = await sluice(['attrs', 'uploads', 'a.txt', '--set', 'color=blue']);
    expect(set.code, set.stderr).toBe(ExitCodes.ok);
    expect(set.stdout).toContain('color = "blue"');
    expect(set.stdout).not.toContain('$sluice.');
    expect((await json<{ attrs: Record<string, unknown> }>(['attrs', 'uploads', 'a.txt'])).attrs).toMatchObject({ color: 'blue', n: 1, len: 6 });

    // The function's counter is exact: three puts, three `seen`.
    const s = await until('counter seen = 3', async () => {
      const st = await json<FunctionStatus>(['status', FN]);
      return st.counters.seen === 3 ? st : undefined;
    });
    expect(s.lag).toBe(0);
  });

  it.concurrent('cli - kv put --create --set, get --json, query --json', async ({ expect }) => {
    const put = await sluice(['kv', 'put', 't', 'k', '--create', '--set', 'a=1']);
    expect(put.code, put.stderr).toBe(ExitCodes.ok);
    expect(put.stdout).toBe('k revision 1\n');
    expect(await json(['kv', 'get', 't', 'k'])).toEqual({ key: 'k', item: { a: 1 }, revision: 1 });
    expect(await json(['kv', 'query', 't', 'a = 1'])).toEqual([{ key: 'k', item: { a: 1 }, revision: 1 }]);
    expect(await json(['kv', 'query', 't', 'a = 2'])).toEqual([]);
    const missing = await sluice(['kv', 'get', 't', 'nope']);
    expect(missing.code).toBe(ExitCodes.notFound);
    const bad = await sluice(['kv', 'query', 't', 'a = = 1']);
    expect(bad.code).toBe(ExitCodes.invalid);
    expect(bad.stderr).toContain('SLUICE_EXPRESSION_SYNTAX');
  });

  it.concurrent('cli - stream put --create, tail --from earliest --count 1', async ({ expect }) => {
    const put = await sluice(['stream', 'put', 's', 'hello', '--create', '2']);
    expect(put.code, put.stderr).toBe(ExitCodes.ok);
    expect(put.stdout).toMatch(/^record 0 → shard [01] seq 1\n$/);
    const tail = await sluice(['stream', 'tail', 's', '--from', 'earliest', '--count', '1']);
    expect(tail.code, tail.stderr).toBe(ExitCodes.ok);
    expect(tail.stdout).toMatch(/^\[[01]:1\] hello hello\n$/);
    const j = await json<{ data: string; seq: number }>(['stream', 'tail', 's', '--from', 'earliest', '--count', '1']);
    expect(j).toMatchObject({ data: 'hello', seq: 1 });
  });

  it.concurrent('cli - invoke --key --data runs the handler once and prints its effects (the command option wins over the global --data)', async ({ expect }) => {
    const r = await json<{ records: { set: Record<string, unknown>; updates: { expr: string }[] }[]; counters: Record<string, number>; error: unknown }>([
      'invoke',
      FN,
      '--key',
      'x',
      '--data',
      'hi',
    ]);
    expect(r.error).toBeNull();
    expect(r.records).toHaveLength(1);
    expect(r.records[0]!.set).toEqual({ len: 2 });
    expect(r.records[0]!.updates.map((u) => u.expr)).toEqual(['ADD n :one']);
    expect(r.counters).toEqual({ seen: 1 });
    // A synthetic event: nothing was written.
    expect((await sluice(['attrs', 'uploads', 'x'])).code).toBe(ExitCodes.notFound);
  });

  it.concurrent('cli - exit codes: not found 3, wrong token 5, nothing listening 6, unknown command 2, bad argument 2', async ({ expect }) => {
    const [nope, nopeJson, token, down, unknown, badArg] = await Promise.all([
      sluice(['status', 'nope']),
      sluice(['status', 'nope', '--json']),
      sluice(['ls', '--token', 'not-the-token']),
      sluice(['ls', '--server', '127.0.0.1:1']),
      sluice(['frobnicate']),
      sluice(['scale', FN, 'many']),
    ]);
    expect(nope.code).toBe(ExitCodes.notFound);
    expect(nope.stderr).toBe("sluice: function 'nope' is not deployed (SLUICE_NOT_FOUND)\n");
    expect(nope.stdout).toBe('');
    expect(nopeJson.code).toBe(ExitCodes.notFound);
    expect(JSON.parse(nopeJson.stderr)).toEqual({ error: { code: 'SLUICE_NOT_FOUND', message: "function 'nope' is not deployed" } });
    expect(token.code).toBe(ExitCodes.unauthenticated);
    expect(token.stderr).toContain('SLUICE_UNAUTHENTICATED');
    expect(down.code).toBe(ExitCodes.unavailable);
    expect(down.stderr).toContain('cannot reach the control server at 127.0.0.1:1');
    expect(unknown.code).toBe(ExitCodes.usage);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    expect(badArg.code).toBe(ExitCodes.usage);
    expect(badArg.stderr).toContain("'many'");
  });

  it.concurrent('cli - deploy of a malformed spec exits 4 and names the file, line and path', async ({ expect }) => {
    const bad = join(work, 'bad.yaml');
    const text = spec('bad', '  batch:\n    maxRecords: 0\n');
    writeFileSync(bad, text);
    const line = text.split('\n').findIndex((l) => l.includes('maxRecords')) + 1;
    const r = await sluice(['deploy', '-f', bad]);
    expect(r.code).toBe(ExitCodes.invalid);
    expect(r.stderr).toContain(`${bad}:${line}:5 spec.batch.maxRecords: must be a positive integer (got 0)`);
    expect(r.stderr).toContain('SLUICE_SPEC_INVALID');
    const missing = await sluice(['deploy', '-f', join(work, 'missing.yaml')]);
    expect(missing.code).toBe(ExitCodes.notFound);
    expect(missing.stderr).toContain('missing.yaml does not exist');
  });

  it.concurrent('cli - render k8s -f prints StatefulSet, Service, ConfigMap, Role, ServiceMonitor and Deployment as YAML', async ({ expect }) => {
    const file = join(work, 'render.yaml');
    writeFileSync(file, spec('render-me', ''));
    const r = await sluice(['render', 'k8s', '-f', file]);
    expect(r.code, r.stderr).toBe(ExitCodes.ok);
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as { kind: string; metadata: { name: string } });
    const kinds = new Set(docs.map((d) => d.kind));
    for (const k of ['StatefulSet', 'Service', 'ConfigMap', 'Role', 'ServiceMonitor', 'Deployment']) expect(kinds, k).toContain(k);
    expect(docs.find((d) => d.kind === 'StatefulSet')?.metadata.name).toContain('render-me');
  });

  it.concurrent('cli - logs prints the workers’ log lines', async ({ expect }) => {
    const lines = await until('worker log lines', async () => {
      const r = await sluice(['logs', FN]);
      expect(r.code, r.stderr).toBe(ExitCodes.ok);
      const l = r.stdout.split('\n').filter(Boolean);
      return l.length > 0 ? l : undefined;
    });
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\S+ \[\d+\] (trace|debug|info|warn|error|fatal)\s+\S/);
    expect(lines.some((l) => l.includes('shard acquired'))).toBe(true);
  });

  it('cli - scale 2 pins two replicas; scale 9 (past maxReplicas) exits 4 naming the range and changes nothing', async () => {
    const ok = await sluice(['scale', FN, '2']);
    expect(ok.code, ok.stderr).toBe(ExitCodes.ok);
    expect(ok.stdout).toBe(`scaled ${FN} to 2\n`);
    const past = await sluice(['scale', FN, '9']);
    expect(past.code).toBe(ExitCodes.invalid);
    expect(past.stderr).toContain('9 is outside');
    expect(past.stderr).toContain('1..2');
    expect(past.stdout).toBe('');
    const s = await json<FunctionStatus>(['status', FN]);
    expect(s.replicas.desired).toBe(2);
    expect(await json(['ls'])).toEqual([{ name: FN, revision: 1, replicas: 2 }]);
  });

  it('cli - deploy -f a second spec, ls shows it, rm removes it, rm again exits 3', async () => {
    const file = join(work, 'second.yaml');
    // A prefix no upload uses: the second function must not touch the first one's objects.
    writeFileSync(file, spec('second', '        prefix: second-only/\n  scaling: {minReplicas: 1, maxReplicas: 1}\n'));
    const d = await sluice(['deploy', '-f', file]);
    expect(d.code, d.stderr).toBe(ExitCodes.ok);
    expect(d.stdout).toBe('deployed second (revision 1)\n');
    expect((await json<{ name: string }[]>(['ls'])).map((f) => f.name)).toEqual([FN, 'second']);
    const text = await sluice(['ls']);
    expect(text.stdout).toMatch(/^NAME\s+REVISION\s+REPLICAS\ncounter\s+1\s+2\nsecond\s+1\s+1\n$/);
    const rm = await sluice(['rm', 'second']);
    expect(rm.code, rm.stderr).toBe(ExitCodes.ok);
    expect(rm.stdout).toBe('removed second\n');
    const again = await sluice(['rm', 'second']);
    expect(again.code).toBe(ExitCodes.notFound);
    expect(again.stderr).toContain("function 'second' is not deployed");
    expect((await json<{ name: string }[]>(['ls'])).map((f) => f.name)).toEqual([FN]);
  });

  it('cli - sluice dev stops on SIGTERM with exit code 0', async () => {
    dev!.kill('SIGTERM');
    const code = await Promise.race([devExit, new Promise<string>((r) => setTimeout(() => r('timeout'), 20_000))]);
    expect(code).toBe(0);
    expect(devOut).toContain('stopping: workers finish their batches and commit');
  });
});
