// Helpers for the verification tests: read the tally lines, the SHOW_DIFFS lines and the JSON report
// back as data, tell whether a server executed any write command, and build big collections server-side.
import { readFileSync } from 'node:fs';
import { commandStats } from './inspect.js';
import type { RedisServer } from './servers.js';

export interface Tally {
  missing: number;
  type: number;
  value: number;
  ttl: number;
  checked: number;
  identical: number;
  /** 0 when the `, N gone from the source meanwhile` part is absent. */
  vanished: number;
}

const TALLY = /^(\d+) missing, (\d+) type, (\d+) value, (\d+) ttl \((\d+) keys checked, (\d+) identical(?:, (\d+) gone from the source meanwhile)?\)$/;

/**
 * The tally on the line that is exactly `prefix` followed by a tally (compare mode: no prefix).
 * Throws when there is no such line, so a crashed run cannot pass.
 */
export function tallyOf(stdout: string, prefix = ''): Tally {
  const line = stdout.split('\n').find((l) => l.startsWith(prefix) && TALLY.test(l.slice(prefix.length)));
  const match = line === undefined ? null : TALLY.exec(line.slice(prefix.length));
  if (!match) throw new Error(`no tally line starting with ${JSON.stringify(prefix)} in:\n${stdout}`);
  const n = (i: number): number => Number(match[i] ?? 0);
  return { missing: n(1), type: n(2), value: n(3), ttl: n(4), checked: n(5), identical: n(6), vanished: n(7) };
}

export interface ShownDiff {
  category: string;
  key: string;
  hint: string;
}

/** The `<category> |<escaped key>|: <hint>` lines SHOW_DIFFS prints. */
export function shownDiffs(stdout: string): ShownDiff[] {
  const out: ShownDiff[] = [];
  for (const line of stdout.split('\n')) {
    const match = /^(missing|type|value|ttl) \|(.*)\|: (.*)$/.exec(line);
    if (match) out.push({ category: match[1] ?? '', key: match[2] ?? '', hint: match[3] ?? '' });
  }
  return out;
}

export interface ReportLine {
  key: string;
  key_base64: string;
  category: string;
  detail: string;
  heading: string;
}

function isReportLine(value: unknown): value is ReportLine {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return ['key', 'key_base64', 'category', 'detail', 'heading'].every((name) => typeof record[name] === 'string');
}

/** DIFF_REPORT_FILE: one JSON object per line, each checked to have exactly the documented string fields. */
export function readReport(path: string): ReportLine[] {
  const text = readFileSync(path, 'utf8');
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new Error(`report does not end with a newline: ${JSON.stringify(text)}`);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => {
      const parsed: unknown = JSON.parse(line);
      if (!isReportLine(parsed)) throw new Error(`report line lacks a field: ${line}`);
      const names = Object.keys(parsed).sort();
      if (names.join(',') !== 'category,detail,heading,key,key_base64') throw new Error(`report line has other fields: ${line}`);
      return parsed;
    });
}

/** Commands in INFO commandstats (since CONFIG RESETSTAT) that carry the `write` flag in COMMAND INFO. */
export async function writeCommandsRun(server: RedisServer): Promise<string[]> {
  const writes: string[] = [];
  for (const name of (await commandStats(server)).keys()) {
    const info = (await server.cmd('COMMAND', 'INFO', name)) as unknown[];
    const entry = info[0];
    if (!Array.isArray(entry)) throw new Error(`COMMAND INFO ${name} returned ${JSON.stringify(info)}`);
    const flags = entry[2];
    if (Array.isArray(flags) && flags.includes('write')) writes.push(name);
  }
  return writes;
}

/** INFO persistence's rdb_changes_since_last_save: every write to the dataset increments it. */
export async function rdbChanges(server: RedisServer): Promise<number> {
  const match = /^rdb_changes_since_last_save:(\d+)/m.exec(String(await server.cmd('INFO', 'persistence')));
  if (!match) throw new Error('no rdb_changes_since_last_save in INFO persistence');
  return Number(match[1]);
}

/**
 * Builds a collection of n elements server-side, 1000 per command: list element-1..n, set member-1..n,
 * hash field-i = value-i, zset member-i with score i (so changing one score by less than 1 keeps every rank).
 */
const SEED_BIG = `
local k, kind, n = KEYS[1], ARGV[1], tonumber(ARGV[2])
local command = ({ list = 'RPUSH', set = 'SADD', hash = 'HSET', zset = 'ZADD' })[kind]
for first = 1, n, 1000 do
  local args = {}
  for i = first, math.min(first + 999, n) do
    if kind == 'list' then args[#args + 1] = 'element-' .. i
    elseif kind == 'set' then args[#args + 1] = 'member-' .. i
    elseif kind == 'hash' then args[#args + 1] = 'field-' .. i; args[#args + 1] = 'value-' .. i
    else args[#args + 1] = tostring(i); args[#args + 1] = 'member-' .. i end
  end
  redis.call(command, k, unpack(args))
end
return redis.call('TYPE', k)['ok']
`;

export type BigKind = 'list' | 'set' | 'hash' | 'zset';

export async function seedBig(server: RedisServer, key: string, kind: BigKind, n: number): Promise<void> {
  const made = await server.cmd('EVAL', SEED_BIG, 1, key, kind, n);
  if (made !== kind) throw new Error(`seeding ${key} made a ${String(made)}`);
}
