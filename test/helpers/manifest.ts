// The RDB fixtures' manifests (test/fixtures/rdb/README.md): what each real server held before it saved its
// file, and a key-by-key check of a server's content against them, read with plain commands (not the tool).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, type RedisServer } from './servers.js';

export const RDB_FIXTURES = join(ROOT, 'test', 'fixtures', 'rdb');
export const rdbFixture = (name: string): string => join(RDB_FIXTURES, `${name}.rdb`);

export interface ManifestGroup {
  name: string;
  last_delivered_id: string;
  entries_read: number | null;
  pending: [string, string, number][];
  consumers: string[];
}

export interface ManifestEntry {
  type: 'string' | 'list' | 'set' | 'zset' | 'hash' | 'stream';
  encoding: string;
  /** Absent for servers before 2.6, which had no DUMP. */
  dump?: string;
  expire_at_ms: number | 'relative';
  value: unknown;
  field_expire_at_ms?: Record<string, number>;
  /** Set to expire just after the SAVE: any later load finds it expired (redis-3.2's expired:at-load). */
  expired_at_load?: boolean;
  last_id?: string;
  entries_added?: number;
  max_deleted_entry_id?: string;
  groups?: ManifestGroup[];
}

export interface Manifest {
  rdb_header: string;
  server: { version: string; valkey: boolean };
  functions?: string[];
  databases: Record<string, Record<string, ManifestEntry>>;
}

/** The RDB version a header declares: "REDIS" and 4 digits, or "VALKEY" and 3 (Valkey 9). */
export const headerVersion = (header: string): number => Number(header.startsWith('VALKEY') ? header.slice(6) : header.slice(5));

export const readManifest = (name: string): Manifest => JSON.parse(readFileSync(join(RDB_FIXTURES, `${name}.json`), 'utf8')) as Manifest;

/** The db's entries as [key bytes, entry]. */
export function manifestKeys(manifest: Manifest, db = '0'): [Buffer, ManifestEntry][] {
  return Object.entries(manifest.databases[db] ?? {}).map(([key64, entry]) => [Buffer.from(key64, 'base64'), entry]);
}

const b64 = (items: unknown): string[] => (items as string[]).map((s) => Buffer.from(s, 'base64').toString('latin1'));
const text = (reply: unknown): string[] => (reply as Buffer[]).map((b) => Buffer.from(b).toString('latin1'));
const send = (server: RedisServer, args: (string | Buffer)[]): Promise<unknown> => server.client.sendCommand(args);

/** The first way `key` on `server` differs from the manifest's entry (type, expiry, content, stream state), or null. */
export async function differenceFromManifest(server: RedisServer, key: Buffer, entry: ManifestEntry): Promise<string | null> {
  const type = String(await send(server, ['TYPE', key]));
  if (type !== entry.type) return `type ${type}, manifest ${entry.type}`;
  const expireAt = Number(await send(server, ['PEXPIRETIME', key]));
  if (entry.expire_at_ms !== 'relative' && expireAt !== entry.expire_at_ms) return `expiry ${expireAt}, manifest ${entry.expire_at_ms}`;
  const [ours, theirs] = await contentOf(server, key, entry);
  return JSON.stringify(ours) === JSON.stringify(theirs) ? null : `content ${JSON.stringify(ours).slice(0, 200)}, manifest ${JSON.stringify(theirs).slice(0, 200)}`;
}

async function contentOf(server: RedisServer, key: Buffer, entry: ManifestEntry): Promise<[unknown, unknown]> {
  switch (entry.type) {
    case 'string':
      return [Buffer.from((await send(server, ['GET', key])) as Buffer).toString('latin1'), Buffer.from(entry.value as string, 'base64').toString('latin1')];
    case 'list':
      return [text(await send(server, ['LRANGE', key, '0', '-1'])), b64(entry.value)];
    case 'set':
      return [text(await send(server, ['SMEMBERS', key])).sort(), b64(entry.value).sort()];
    case 'zset': {
      const flat = text(await send(server, ['ZRANGE', key, '0', '-1', 'WITHSCORES']));
      const ours = [];
      for (let i = 0; i < flat.length; i += 2) ours.push([flat[i], Number(flat[i + 1])]);
      const theirs = (entry.value as [string, string][]).map(([m, score]) => [Buffer.from(m, 'base64').toString('latin1'), Number(score)]);
      return [ours, theirs];
    }
    case 'hash': {
      const flat = text(await send(server, ['HGETALL', key]));
      const ours: Record<string, string> = {};
      for (let i = 0; i < flat.length; i += 2) ours[flat[i] as string] = flat[i + 1] as string;
      const theirs = Object.fromEntries(Object.entries(entry.value as Record<string, string>).map(([f, v]) => [Buffer.from(f, 'base64').toString('latin1'), Buffer.from(v, 'base64').toString('latin1')]));
      return [sortedObject(ours), sortedObject(theirs)];
    }
    case 'stream':
      return [await streamOf(server, key), streamOfManifest(entry)];
    default:
      throw new Error(`no check for type ${entry.type}`);
  }
}

function sortedObject(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

async function streamOf(server: RedisServer, key: Buffer): Promise<unknown> {
  const entries = ((await send(server, ['XRANGE', key, '-', '+'])) as [Buffer, Buffer[]][]).map(([id, fields]) => [String(id), text(fields)]);
  const info = pairs((await send(server, ['XINFO', 'STREAM', key])) as unknown[]);
  const groups = [];
  for (const group of (await send(server, ['XINFO', 'GROUPS', key])) as unknown[][]) {
    const g = pairs(group);
    const name = String(g.get('name'));
    const pending = ((await send(server, ['XPENDING', key, name, '-', '+', '100000'])) as unknown[][]).map(([id, consumer, , count]) => [String(id), String(consumer), Number(count)]);
    const consumers = ((await send(server, ['XINFO', 'CONSUMERS', key, name])) as unknown[][]).map((c) => String(pairs(c).get('name'))).sort();
    groups.push({ name, last_delivered_id: String(g.get('last-delivered-id')), pending, consumers });
  }
  return { entries, last_id: String(info.get('last-generated-id')), entries_added: Number(info.get('entries-added')), max_deleted_entry_id: String(info.get('max-deleted-entry-id')), groups };
}

function streamOfManifest(entry: ManifestEntry): unknown {
  const entries = (entry.value as [string, string[]][]).map(([id, fields]) => [id, b64(fields)]);
  const groups = (entry.groups ?? []).map((g) => ({ name: g.name, last_delivered_id: g.last_delivered_id, pending: g.pending, consumers: [...g.consumers].sort() }));
  return { entries, last_id: entry.last_id, entries_added: entry.entries_added, max_deleted_entry_id: entry.max_deleted_entry_id, groups };
}

function pairs(flat: unknown[]): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), flat[i + 1]);
  return map;
}
