/** `sluice stream put|tail`: records of a user stream. */
import type { Command } from 'commander';
import { ExitCodes, intArg, out, withBackend, type GlobalOptions } from '../context.ts';

export function register(program: Command, g: () => GlobalOptions): void {
  const stream = program.command('stream').description('records of a stream: put, tail');
  stream
    .command('put')
    .description('append records (one per data argument, or one per line of stdin with -)')
    .argument('<stream>')
    .argument('<data...>')
    .option('--key <partitionKey>', 'partition key (default: the data itself)')
    .option('--create <shards>', 'create the stream with this many shards when missing', intArg(1))
    .option('--replicas <n>', 'with --create: copies kept, 1-5 (NATS: JetStream replicas; default 3 on a cluster, else 1; local: ignored)', intArg(0))
    .action(async (name: string, data: string[], o: { key?: string; create?: number; replicas?: number }) => {
      let lines = data;
      if (data.length === 1 && data[0] === '-') lines = (await new Response(process.stdin as unknown as ReadableStream).text()).split('\n').filter(Boolean);
      await withBackend(g(), async (b) => {
        const s = b.streams();
        if (o.create !== undefined) await s.create(name, { shards: o.create, ...(o.replicas !== undefined ? { replicas: o.replicas } : {}) });
        const res = await s.putRecords(name, lines.map((d) => ({ data: d, partitionKey: o.key ?? d })));
        out(g(), res, () => res.map((r, i) => (r.ok ? `record ${i} → shard ${r.shard} seq ${r.seq}` : `record ${i} failed: ${r.error.message}`)).join('\n'));
        if (res.some((r) => !r.ok)) process.exitCode = ExitCodes.invalid;
      });
    });
  stream
    .command('tail')
    .description('print records as they arrive (all shards); Ctrl-C to stop')
    .argument('<stream>')
    .option('--from <pos>', "'latest' or 'earliest'", 'latest')
    .option('--count <n>', 'stop after n records', intArg(1))
    .action(async (name: string, o: { from: 'latest' | 'earliest'; count?: number }) => {
      await withBackend(g(), async (b) => {
        const s = b.streams();
        const info = await s.info(name);
        const cursors = await Promise.all(Array.from({ length: info.shards }, (_, i) => s.seek(name, i, o.from)));
        const ac = new AbortController();
        process.once('SIGINT', () => ac.abort());
        let n = 0;
        while (!ac.signal.aborted && (o.count === undefined || n < o.count)) {
          let any = false;
          for (let i = 0; i < cursors.length; i++) {
            const page = await s.getRecords(cursors[i]!, { limit: 100 });
            cursors[i] = page.next;
            for (const r of page.records) {
              any = true;
              n++;
              const text = Buffer.from(r.data).toString('utf8');
              out(g(), { ...r, data: text }, () => `[${r.shard}:${r.seq}] ${r.partitionKey ?? ''} ${text}`);
              if (o.count !== undefined && n >= o.count) return;
            }
          }
          if (!any) await new Promise((r) => setTimeout(r, 50));
        }
      });
    });
}
