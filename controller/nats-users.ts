/**
 * Per-function NATS identities: one NATS user per function (user/password in the server's
 * `authorization` block — no auth callout, no accounts, works on nats-server 2.9), whose
 * permissions allow exactly the subjects the function's workers need: its trigger, its dead-letter
 * stream, the state table, and the declared bindings with their access (`read`: reads, consumers and
 * acks; `read-write`: also publishes). Anything else — another function's bucket, an undeclared
 * table — is refused by the server itself, whatever code runs in the worker.
 *
 * Why users in the server config rather than accounts: every function shares the streams of one
 * account (the platform's state table, the buckets several functions read), and JetStream exports
 * between accounts would be needed for each of those. The cost: changing the users needs a config
 * reload (`nats-server --signal reload`, or SIGHUP), which the operator or the test does.
 *
 * What the permissions cannot separate: `_INBOX.>` is shared by every user of the account (replies
 * are addressed to random inboxes), and JetStream API calls are allowed per stream name, so a function
 * with read access to a stream may create consumers on it (that is what reading a stream means here).
 */
import { randomBytes } from 'node:crypto';
import type { WorkerOptions } from '../runtime/index.ts';

/** NATS permissions of one user. */
export interface NatsPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

/** A minted user: what goes in the server config, and what the workers connect with. */
export interface NatsFunctionUser {
  user: string;
  password: string;
  permissions: NatsPermissions;
}

type Access = 'read' | 'read-write';

/** JetStream API subjects to read stream `s` (info, gets, consumers, pulls, acks) and, for write, to create it. */
function streamApi(s: string, access: Access, api: string): string[] {
  const read = [
    `${api}.STREAM.INFO.${s}`,
    `${api}.STREAM.MSG.GET.${s}`,
    `${api}.DIRECT.GET.${s}`,
    `${api}.DIRECT.GET.${s}.>`,
    `${api}.CONSUMER.CREATE.${s}`,
    `${api}.CONSUMER.CREATE.${s}.>`,
    `${api}.CONSUMER.DURABLE.CREATE.${s}.>`,
    `${api}.CONSUMER.INFO.${s}.>`,
    `${api}.CONSUMER.DELETE.${s}.>`,
    `${api}.CONSUMER.MSG.NEXT.${s}.>`,
    `$JS.ACK.${s}.>`,
  ];
  return access === 'read' ? read : [...read, `${api}.STREAM.CREATE.${s}`];
}

/**
 * The permissions of the workers of one function (from its worker options, as the controller
 * derives them from the spec). `prefix` is the backend's resource prefix.
 */
export function functionNatsPermissions(o: Pick<WorkerOptions, 'function' | 'trigger' | 'bindings' | 'retries'>, prefix = 'sluice', api = '$JS.API'): NatsPermissions {
  const pub = new Set<string>([`${api}.INFO`]);
  const sub = new Set<string>(['_INBOX.>']);
  const bucket = (b: string, access: Access) => {
    for (const s of streamApi(`KV_${prefix}_obj_${b}`, access, api)) pub.add(s);
    for (const s of streamApi(`OBJ_${prefix}_body_${b}`, access, api)) pub.add(s);
    if (access === 'read-write') {
      pub.add(`$KV.${prefix}_obj_${b}.>`);
      pub.add(`$O.${prefix}_body_${b}.>`);
    }
  };
  const table = (t: string, access: Access) => {
    for (const s of streamApi(`KV_${prefix}_kv_${t}`, access, api)) pub.add(s);
    if (access === 'read-write') pub.add(`$KV.${prefix}_kv_${t}.>`);
  };
  const stream = (st: string, access: Access) => {
    for (const s of streamApi(`${prefix}_st_${st}`, access, api)) pub.add(s);
    if (access === 'read-write') pub.add(`${prefix}.st.${st}.*`);
  };
  // The trigger: reading its change feed, committing attributes on its objects (object trigger).
  // A scheduled query also appends its runs to its feed; a cron trigger its ticks to its tick stream.
  if (o.trigger.type === 'object') {
    bucket(o.trigger.bucket, 'read-write');
    if (o.trigger.feed !== undefined) stream(o.trigger.feed, 'read-write');
  } else if (o.trigger.type === 'stream') stream(o.trigger.stream, o.trigger.cron !== undefined ? 'read-write' : 'read');
  // What every worker keeps: leases and checkpoints, consumer-group positions, its dead letters.
  table('sluice-state', 'read-write');
  for (const s of streamApi(`KV_${prefix}_meta`, 'read-write', api)) pub.add(s);
  pub.add(`$KV.${prefix}_meta.>`);
  stream(o.retries?.deadLetterStream ?? `dlq-${o.function}`, 'read-write');
  for (const b of o.bindings ?? []) {
    if (b.kind === 'object') bucket(b.resource, b.access);
    else if (b.kind === 'kv') table(b.resource, b.access);
    else if (b.kind === 'stream') stream(b.resource, b.access);
    // 'file' bindings are local paths, not NATS subjects.
  }
  return { publish: { allow: [...pub].sort() }, subscribe: { allow: [...sub].sort() } };
}

/** Mints the NATS user of a function: name `sluice-fn-<function>`, a random password, its permissions. */
export function mintFunctionUser(o: Pick<WorkerOptions, 'function' | 'trigger' | 'bindings' | 'retries'>, prefix = 'sluice'): NatsFunctionUser {
  return { user: `sluice-fn-${o.function}`, password: randomBytes(24).toString('base64url'), permissions: functionNatsPermissions(o, prefix) };
}

/**
 * The `authorization` block of a nats-server config holding these users (JSON is valid NATS config
 * syntax). Write it to a file the server config includes (`include sluice-users.conf`), then reload.
 * The file holds passwords: write it 0600.
 */
export function renderAuthorization(users: readonly (NatsFunctionUser | { user: string; password: string; permissions?: NatsPermissions })[]): string {
  return `authorization ${JSON.stringify({ users: users.map((u) => ({ user: u.user, password: u.password, ...(u.permissions ? { permissions: u.permissions } : {}) })) }, null, 2)}\n`;
}
