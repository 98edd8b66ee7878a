// One key's value as a logical comparison reads it, from either kind of side: a server, read command by
// command in chunks, or a value already in memory (decoded from an .rdb file). compare-key.ts compares two views.
import type { RdbValue, StreamValue } from '../rdb/decode.js';
import { parseScore } from '../rdb/encodings.js';
import { asArray, asMap, asNumber, asText, type Reply } from '../net/reply.js';
import type { Connection } from '../net/connections.js';
import { concatAll } from '../concurrency.js';

interface ScoredMember {
  member: Buffer;
  score: number;
  /** The score as the side shows it: a server's text, `inf` and `-inf` as Redis writes them. */
  shown: string;
}

/** A stream entry: its ID, and its fields and values alternating. */
export type StreamEntry = [string, Buffer[]];

/** What the comparison checks of a consumer group: XINFO GROUPS's counters, and each consumer's pending count. */
interface GroupSummary {
  name: string;
  fields: Record<(typeof GROUP_FIELDS)[number], string>;
  /** `name:pending` of every consumer, sorted, comma-separated. */
  consumers: string;
}

export const GROUP_FIELDS = ['last-delivered-id', 'pending', 'consumers'] as const;

export interface ValueView {
  /** STRLEN, LLEN, SCARD, ZCARD, HLEN or XLEN, as `kind` asks. */
  length(kind: string): Promise<number>;
  /** A string's bytes from `from`, `size` of them at most. */
  bytes(from: number, size: number): Promise<Buffer>;
  listRange(from: number, size: number): Promise<Buffer[]>;
  /** ZRANGE's order: by score, then member bytes. */
  zsetRange(from: number, size: number): Promise<ScoredMember[]>;
  /** Set members, or hash fields and values alternating, page by page in no particular order. */
  pages(kind: 'set' | 'hash', size: number): AsyncIterable<Buffer[]>;
  hasMembers(members: readonly Buffer[]): Promise<boolean[]>;
  /** Each field's value, null where the hash has no such field. */
  fieldValues(fields: readonly Buffer[]): Promise<(Buffer | null)[]>;
  /** Whether this side can hold hash-field expiries (a Redis 7.4+ server, a 7.4 file's hash that has some). */
  fieldExpiry: boolean;
  /** Each field's absolute expiry in ms, -1 for none (or no such field). */
  fieldExpiries(fields: readonly Buffer[]): Promise<number[]>;
  /** Up to `size` entries from the start (`after` undefined) or after the ID `after`, in ID order. */
  streamEntries(after: string | undefined, size: number): Promise<StreamEntry[]>;
  streamGroups(): Promise<GroupSummary[]>;
}

const LENGTH_COMMAND: Record<string, string> = { string: 'STRLEN', list: 'LLEN', set: 'SCARD', zset: 'ZCARD', hash: 'HLEN', stream: 'XLEN' };

/** The types a logical comparison reads. */
export const COMPARABLE_TYPES = Object.keys(LENGTH_COMMAND);

const consumerSummary = (consumers: { name: string; pending: number }[]): string =>
  consumers.map((c) => `${c.name}:${c.pending}`).sort().join(',');

/** A key on a server, read in windows and pages of the size asked. */
export function serverView(server: Connection, key: Buffer): ValueView {
  const send = (...args: (string | Buffer)[]): Promise<Reply> => server.send(args);
  return {
    length: async (kind) => asNumber(await send(LENGTH_COMMAND[kind] as string, key)),
    bytes: async (from, size) => (await send('GETRANGE', key, String(from), String(from + size - 1))) as Buffer,
    listRange: async (from, size) => asArray(await send('LRANGE', key, String(from), String(from + size - 1))) as Buffer[],
    zsetRange: async (from, size) => {
      const items = asArray(await send('ZRANGE', key, String(from), String(from + size - 1), 'WITHSCORES'));
      const out: ScoredMember[] = [];
      for (let i = 0; i + 1 < items.length; i += 2) {
        const shown = asText(items[i + 1]);
        out.push({ member: items[i] as Buffer, score: parseScore(shown), shown });
      }
      return out;
    },
    pages: async function* (kind, size) {
      let cursor = '0';
      do {
        const [next, items] = asArray(await send(kind === 'set' ? 'SSCAN' : 'HSCAN', key, cursor, 'COUNT', String(size)));
        cursor = asText(next);
        yield asArray(items as Reply) as Buffer[];
      } while (cursor !== '0');
    },
    hasMembers: async (members) => (members.length === 0 ? [] : asArray(await send('SMISMEMBER', key, ...members)).map((p) => p === 1)),
    fieldValues: async (fields) => (fields.length === 0 ? [] : (asArray(await send('HMGET', key, ...fields)) as (Buffer | null)[])),
    fieldExpiry: server.capabilities.fieldExpiry,
    fieldExpiries: async (fields) => {
      if (!server.capabilities.fieldExpiry || fields.length === 0) return fields.map(() => -1);
      return asArray(await send('HPEXPIRETIME', key, 'FIELDS', String(fields.length), ...fields)).map(asNumber);
    },
    streamEntries: async (after, size) => {
      const entries = asArray(await send('XRANGE', key, after === undefined ? '-' : `(${after}`, '+', 'COUNT', String(size)));
      return entries.map((entry): StreamEntry => {
        const [id, fields] = asArray(entry);
        return [asText(id), asArray(fields ?? null) as Buffer[]];
      });
    },
    streamGroups: async () => {
      const groups = asArray(await send('XINFO', 'GROUPS', key)).map(asMap);
      return Promise.all(groups.map(async (group): Promise<GroupSummary> => {
        const name = asText(group.get('name'));
        const consumers = asArray(await send('XINFO', 'CONSUMERS', key, name)).map(asMap);
        return {
          name,
          fields: { 'last-delivered-id': asText(group.get('last-delivered-id')), pending: asText(group.get('pending')), consumers: asText(group.get('consumers')) },
          consumers: consumerSummary(consumers.map((c) => ({ name: asText(c.get('name')), pending: asNumber(c.get('pending')) }))),
        };
      }));
    },
  };
}

const showScore = (score: number): string => (score === Infinity ? 'inf' : score === -Infinity ? '-inf' : String(score));

/** A decoded value in memory (an .rdb file's): every read answers at once, in the same form a server's does. */
export function storedView(decoded: RdbValue): ValueView {
  const { type, value } = decoded;
  const lists = (): Buffer[] => (type === 'list' || type === 'set' ? value : []);
  const pairs = (): [Buffer, Buffer][] => (type === 'hash' ? value : []);
  const stream = (): StreamValue | undefined => (type === 'stream' ? value : undefined);
  let members: Set<string> | undefined;
  let fields: Map<string, Buffer> | undefined;
  let expiries: Map<string, number> | undefined;
  const fieldExpireAt = type === 'hash' ? decoded.fieldExpireAt : undefined;
  return {
    length: async () => {
      if (type === 'string' || type === 'list' || type === 'set' || type === 'zset' || type === 'hash') return value.length;
      return stream()?.length ?? 0;
    },
    bytes: async (from, size) => (type === 'string' ? value.subarray(from, from + size) : Buffer.alloc(0)),
    listRange: async (from, size) => lists().slice(from, from + size),
    zsetRange: async (from, size) =>
      (type === 'zset' ? value.slice(from, from + size) : []).map(([member, score]) => ({ member, score, shown: showScore(score) })),
    pages: async function* (kind, size) {
      const flat = kind === 'set' ? lists() : concatAll(pairs());
      const step = kind === 'set' ? size : 2 * size;
      for (let from = 0; from < flat.length; from += step) yield flat.slice(from, from + step);
    },
    hasMembers: async (asked) => {
      members ??= new Set(lists().map((m) => m.toString('latin1')));
      const known = members;
      return asked.map((m) => known.has(m.toString('latin1')));
    },
    fieldValues: async (asked) => {
      fields ??= new Map(pairs().map(([f, v]) => [f.toString('latin1'), v]));
      const known = fields;
      return asked.map((f) => known.get(f.toString('latin1')) ?? null);
    },
    fieldExpiry: fieldExpireAt !== undefined,
    fieldExpiries: async (asked) => {
      expiries ??= new Map(pairs().map(([f], i) => [f.toString('latin1'), fieldExpireAt?.[i] ?? -1]));
      const known = expiries;
      return asked.map((f) => known.get(f.toString('latin1')) ?? -1);
    },
    streamEntries: async (after, size) => {
      const entries = stream()?.entries ?? [];
      const from = after === undefined ? 0 : firstAfter(entries, after);
      return entries.slice(from, from + size);
    },
    streamGroups: async () =>
      (stream()?.groups ?? []).map((group) => ({
        name: group.name.toString(),
        fields: { 'last-delivered-id': group.lastDeliveredId, pending: String(group.pending.length), consumers: String(group.consumers.length) },
        consumers: consumerSummary(group.consumers.map((c) => ({ name: c.name.toString(), pending: c.pending.length }))),
      })),
  };
}

/** The index of the first entry whose ID is past `id` (entries are in ID order). */
function firstAfter(entries: readonly StreamEntry[], id: string): number {
  let [low, high] = [0, entries.length];
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareIds((entries[middle] as StreamEntry)[0], id) > 0) high = middle;
    else low = middle + 1;
  }
  return low;
}

/** Orders stream IDs `ms-seq` numerically. */
function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : as < bs ? -1 : 1;
}
