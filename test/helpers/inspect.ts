// Reading what a run did: the console summary, a server's command statistics, and a stream's whole
// observable state (counters, groups, consumers, pending entries) in a form two servers can be compared by.
import type { RedisServer, RunResult } from './servers.js';

/** A run's exit code and output, for an assertion's message. */
export const describeRun = (run: RunResult): string => `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;

/** Every key of db 0 as a Buffer (binary keys intact), by SCAN. */
export async function allKeys(server: RedisServer): Promise<Buffer[]> {
  const keys: Buffer[] = [];
  let cursor = '0';
  do {
    const [next, batch] = (await server.client.sendCommand(['SCAN', cursor, 'COUNT', '1000'])) as unknown as [Buffer, Buffer[]];
    cursor = next.toString();
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

/** Full resyncs the server has served (INFO stats sync_full). */
export async function fullSyncs(server: RedisServer): Promise<number> {
  return Number(/^sync_full:(\d+)/m.exec(String(await server.cmd('INFO', 'stats')))?.[1] ?? 0);
}

/** The four counts of a run's summary (lib/report.ts summaryLines), as `Number of <label> keys: N` lines. */
export interface Summary {
  restored: number;
  skipped: number;
  failed: number;
  vanished: number;
}

/** The number on the `Number of <label> keys: N` line (the first, if a run prints several); throws when there is none. */
export function countOf(stdout: string, label: keyof Summary | 'excluded'): number {
  const match = new RegExp(`^Number of ${label} keys: (\\d+)$`, 'm').exec(stdout);
  if (!match) throw new Error(`no "Number of ${label} keys" line in the output:\n${stdout}`);
  return Number(match[1]);
}

/** The run's summary counts; throws when a line is missing, so a crashed run cannot pass. The one parser of them. */
export function parseSummary(stdout: string): Summary {
  return { restored: countOf(stdout, 'restored'), skipped: countOf(stdout, 'skipped'), failed: countOf(stdout, 'failed'), vanished: countOf(stdout, 'vanished') };
}

export interface CommandStat {
  calls: number;
  rejected: number;
  failed: number;
}

/** INFO commandstats as a map from command name (lower case, `xgroup|create` for subcommands). */
export async function commandStats(server: RedisServer): Promise<Map<string, CommandStat>> {
  const text = String(await server.cmd('INFO', 'commandstats'));
  const stats = new Map<string, CommandStat>();
  for (const line of text.split(/\r?\n/)) {
    const match = /^cmdstat_([^:]+):(.*)$/.exec(line);
    if (!match) continue;
    const fields = new Map<string, number>();
    for (const pair of (match[2] ?? '').split(',')) {
      const [name, value] = pair.split('=');
      if (name !== undefined && value !== undefined) fields.set(name, Number(value));
    }
    stats.set(match[1] ?? '', { calls: fields.get('calls') ?? 0, rejected: fields.get('rejected_calls') ?? 0, failed: fields.get('failed_calls') ?? 0 });
  }
  return stats;
}

/** Successful calls of one command since the last CONFIG RESETSTAT (0 when never called). */
export function calls(stats: Map<string, CommandStat>, command: string): number {
  return stats.get(command)?.calls ?? 0;
}

export function asList(reply: unknown): unknown[] {
  if (!Array.isArray(reply)) throw new Error(`expected an array reply, got ${JSON.stringify(reply)}`);
  return reply;
}

/** A flat name, value, name, value... reply as a plain object. */
export function pairs(reply: unknown): Record<string, unknown> {
  const items = asList(reply);
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < items.length; i += 2) out[String(items[i])] = items[i + 1];
  return out;
}

function pick(record: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of names) out[name] = record[name];
  return out;
}

/** XINFO STREAM fields that must survive a copy (the radix tree layout may differ, so it is left out). */
const STREAM_FIELDS = [
  'length', 'last-generated-id', 'max-deleted-entry-id', 'entries-added', 'recorded-first-entry-id', 'groups', 'first-entry', 'last-entry',
] as const;

export interface StreamState {
  stream: Record<string, unknown>;
  entries: unknown;
  groups: {
    info: Record<string, unknown>;
    /** XPENDING summary form: count, smallest id, greatest id, per-consumer counts. */
    pendingSummary: unknown;
    consumers: { name: unknown; pending: unknown }[];
    /** XPENDING extended form without the idle time: id, consumer, delivery count. */
    pending: unknown[][];
  }[];
}

/** Everything about a stream that a copy must keep, idle times excepted (they tick while we look). */
export async function streamState(server: RedisServer, key: string): Promise<StreamState> {
  const c = server.cmd;
  const stream = pick(pairs(await c('XINFO', 'STREAM', key)), STREAM_FIELDS);
  const entries = await c('XRANGE', key, '-', '+');
  const groups: StreamState['groups'] = [];
  for (const groupReply of asList(await c('XINFO', 'GROUPS', key))) {
    const info = pairs(groupReply);
    const name = String(info.name);
    const consumers = asList(await c('XINFO', 'CONSUMERS', key, name)).map((reply) => {
      const consumer = pairs(reply);
      return { name: consumer.name, pending: consumer.pending };
    });
    const pending = asList(await c('XPENDING', key, name, '-', '+', 1_000_000)).map((item) => {
      const [id, consumer, , deliveries] = asList(item);
      return [id, consumer, deliveries];
    });
    groups.push({ info, pendingSummary: await c('XPENDING', key, name), consumers, pending });
  }
  return { stream, entries, groups };
}

/** The keys a big key of this name is being built under on `server` (lib/writers/by-type.ts buildingName), via SCAN. */
export async function buildKeysOf(server: RedisServer, key: string): Promise<Buffer[]> {
  const found: Buffer[] = [];
  let cursor = '0';
  do {
    const [next, keys] = (await server.client.sendCommand(['SCAN', cursor, 'MATCH', 'redis-keys-migrator:tmp:*', 'COUNT', '1000'])) as [Buffer, Buffer[]];
    cursor = next.toString();
    found.push(...keys.filter((k) => k.toString('latin1').endsWith(`:${key}`)));
  } while (cursor !== '0');
  return found;
}

/**
 * The first key on which two servers differ, or null: TYPE, PEXPIRETIME and DEBUG DIGEST-VALUE for every key but
 * streams; streams by entries, groups (last-delivered ID) and pending entries (ID, consumer, delivery count), leaving
 * out delivery times, which a copy by type can only approximate. Keys of both sides are looked at; one that
 * expires within two seconds may be gone on one side already (each server expires keys on its own) and is passed
 * over. Read with plain commands, not the tool.
 */
export async function firstKeyspaceDifference(a: RedisServer, b: RedisServer): Promise<string | null> {
  for (const [one, other] of [[a, b], [b, a]] as const) {
    let cursor = '0';
    do {
      const [next, keys] = (await one.client.sendCommand(['SCAN', cursor, 'COUNT', '1000'])) as [Buffer, Buffer[]];
      cursor = next.toString();
      for (const key of keys) {
        const [mine, theirs] = await Promise.all([keyState(one, key), keyState(other, key)]);
        if (mine.state === theirs.state || [mine, theirs].some((k) => k.expireAt > 0 && k.expireAt < Date.now() + 2000)) continue;
        return `${key.toString()}: ${mine.state.slice(0, 200)} | ${theirs.state.slice(0, 200)}`;
      }
    } while (cursor !== '0');
  }
  return null;
}

/** A key changing while it is read (renamed away mid-look) reads as gone. */
async function keyState(server: RedisServer, key: Buffer): Promise<{ state: string; expireAt: number }> {
  try {
    return await keyStateNow(server, key);
  } catch (err) {
    if (err instanceof Error && /no such key/i.test(err.message)) return { state: 'none', expireAt: -2 };
    throw err;
  }
}

async function keyStateNow(server: RedisServer, key: Buffer): Promise<{ state: string; expireAt: number }> {
  const send = (...args: (string | Buffer)[]): Promise<unknown> => server.client.sendCommand(args);
  const type = String(await send('TYPE', key));
  const expireAt = String(await send('PEXPIRETIME', key));
  if (type === 'none') return { state: 'none', expireAt: -2 };
  if (type !== 'stream') return { state: `${type} ${expireAt} ${String(((await send('DEBUG', 'DIGEST-VALUE', key)) as Buffer[])[0])}`, expireAt: Number(expireAt) };
  const entries = JSON.stringify(await send('XRANGE', key, '-', '+'));
  const groups = (await send('XINFO', 'GROUPS', key)) as unknown[][];
  const state = [];
  for (const group of groups) {
    const fields = new Map<string, unknown>();
    for (let i = 0; i + 1 < group.length; i += 2) fields.set(String(group[i]), group[i + 1]);
    const name = String(fields.get('name'));
    const pending = ((await send('XPENDING', key, name, '-', '+', '100000')) as unknown[][]).map(([id, consumer, , count]) => `${String(id)}/${String(consumer)}/${String(count)}`);
    state.push(`${name}@${String(fields.get('last-delivered-id'))}:${pending.join(',')}`);
  }
  return { state: `stream ${expireAt} ${entries} ${state.sort().join(';')}`, expireAt: Number(expireAt) };
}
