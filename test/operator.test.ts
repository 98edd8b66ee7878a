// What an operator sees and relies on around a copy: progress lines on stderr, warnings for misspelt
// settings, DRY_RUN writing nothing and reporting what a copy would do, SCAN_TYPE and KEY_EXCLUDE_PATTERN
// (in copy and compare), the JSON summary, the elapsed-time line after the parity lines, and the README pictures.
// Real redis-server processes and the real script; nothing mocked.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { formatDuration, progressLine, type ProgressSnapshot } from '../lib/report/progress.js';
import { formatBytes } from '../lib/report/summary.js';
import { SETTINGS, unknownSettingWarnings } from '../lib/settings.js';
import { runDir, serverPair, type Pair } from './helpers/fixtures.js';
import { allKeys, calls, commandStats, countOf, parseSummary } from './helpers/inspect.js';
import { digest, seedEveryType } from './helpers/sample-data.js';
import { endpoints, ROOT, runMigrator, SCRIPT, tempDir, TSX, type RedisServer, type RunResult } from './helpers/servers.js';

const execFileAsync = promisify(execFile);

/** Every end-to-end test here must finish well inside this. */
const TEST_MS = 15_000;
const RUN_MS = 14_000;

type Run = RunResult & { cwd: string; output: string; ms: number };

/** Runs the migrator against the pair in a fresh directory; `output` is everything, for failure messages. */
async function migrate(pair: Pair, settings: Record<string, string | number>): Promise<Run> {
  const cwd = runDir();
  const started = Date.now();
  const run = await runMigrator({ ...endpoints(pair.source, pair.target), ...settings }, cwd, RUN_MS);
  const ms = Date.now() - started;
  return { ...run, cwd, ms, output: `exit ${run.code} after ${ms} ms\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}` };
}

/** Empties the target and zeroes its command statistics, so each test sees only its own run. */
async function freshTarget(target: RedisServer): Promise<void> {
  await target.cmd('FLUSHALL');
  await target.cmd('CONFIG', 'RESETSTAT');
}

async function dbsize(server: RedisServer): Promise<number> {
  return Number(await server.cmd('DBSIZE'));
}

const hexSet = (keys: Buffer[]): string[] => keys.map((k) => k.toString('hex')).sort();

async function keyType(server: RedisServer, key: Buffer): Promise<string> {
  return String(await server.client.sendCommand(['TYPE', key]));
}

/** Copies the source keys `keep` accepts straight to the target (DUMP, PTTL, RESTORE), without the migrator. */
async function copyDirect(pair: Pair, keep: (key: Buffer, type: string) => boolean): Promise<number> {
  let copied = 0;
  for (const key of await allKeys(pair.source)) {
    if (!keep(key, await keyType(pair.source, key))) continue;
    const dump: unknown = await pair.source.client.sendCommand(['DUMP', key]);
    const ttl = Number(await pair.source.client.sendCommand(['PTTL', key]));
    if (!Buffer.isBuffer(dump)) throw new Error('DUMP gave no payload');
    await pair.target.client.sendCommand(['RESTORE', key, String(Math.max(ttl, 0)), dump, 'REPLACE']);
    copied += 1;
  }
  return copied;
}

/** `count` string keys `prefix1`.. written by one script call. */
async function seedStrings(server: RedisServer, prefix: string, count: number): Promise<void> {
  await server.cmd('EVAL', "for i = 1, tonumber(ARGV[2]) do redis.call('SET', ARGV[1] .. i, 'value-' .. i) end", 0, prefix, count);
}

function infoField(info: unknown, field: string): string {
  const match = new RegExp(`^${field}:(.*)$`, 'm').exec(String(info));
  if (!match) throw new Error(`no ${field} in INFO`);
  return (match[1] ?? '').trim();
}

/** Dirty counter: every write to the dataset adds to it, whatever the persistence settings. */
async function rdbChanges(server: RedisServer): Promise<number> {
  return Number(infoField(await server.cmd('INFO', 'persistence'), 'rdb_changes_since_last_save'));
}

/** The commands the server ran (INFO commandstats, Lua's inner calls included) that COMMAND INFO flags as writes. */
async function writeCommandsRun(server: RedisServer): Promise<string[]> {
  const written: string[] = [];
  for (const [name, stat] of await commandStats(server)) {
    if (stat.calls === 0) continue;
    const info = await server.cmd('COMMAND', 'INFO', name);
    const entry: unknown = Array.isArray(info) ? info[0] : undefined;
    const flags: unknown = Array.isArray(entry) ? entry[2] : undefined;
    if (!Array.isArray(flags)) throw new Error(`COMMAND INFO ${name} gave no flags: ${JSON.stringify(info)}`);
    if (flags.map(String).includes('write')) written.push(name);
  }
  return written;
}

const ELAPSED_LINE = /^Elapsed time: (\d+(\.\d)? s|\d+ min \d+ s|\d+ h \d+ min), [\d,]+ keys\/s, \d+\.\d MB\/s$/;
/** The Python script's summary lines and the ones this tool adds to that block. */
const PARITY_LINE =
  /^(Number of (restored|skipped|failed|vanished|excluded) keys: \d+|Keys of other types than \S+ were not scanned \(SCAN_TYPE\)|Errors occurred during the execution\. Check \|.*\| for details)$/;

/** One `Elapsed time:` line, directly after the block of parity lines, with no parity line after it. */
function expectElapsedAfterParity(stdout: string): void {
  const lines = stdout.trimEnd().split('\n');
  const elapsed = lines.filter((line) => line.startsWith('Elapsed time:'));
  expect(elapsed, stdout).toHaveLength(1);
  expect(elapsed[0], stdout).toMatch(ELAPSED_LINE);
  const at = lines.indexOf(elapsed[0] as string);
  const first = lines.findIndex((line) => PARITY_LINE.test(line));
  expect(lines[first], stdout).toMatch(/^Number of restored keys: \d+$/);
  expect(at - first, stdout).toBeGreaterThanOrEqual(4);
  expect(lines.slice(first, at).every((line) => PARITY_LINE.test(line)), stdout).toBe(true);
  expect(lines.slice(at + 1).some((line) => PARITY_LINE.test(line)), stdout).toBe(false);
}

/** The stdout of a plain successful copy of `restored` keys: the parity lines, unchanged, then the timing. */
function expectPlainCopyStdout(stdout: string, restored: number): void {
  const lines = stdout.trimEnd().split('\n');
  expect(lines.slice(0, -1), stdout).toEqual([
    'Connected to Redis instances successfully',
    expect.stringMatching(/^Reading the source as its replica: one snapshot by PSYNC from source 127\.0\.0\.1:\d+$/),
    `Number of restored keys: ${restored}`,
    'Number of skipped keys: 0',
    'Number of failed keys: 0',
    'Number of vanished keys: 0',
  ]);
  expect(lines.at(-1), stdout).toMatch(ELAPSED_LINE);
}

// ---------------------------------------------------------------------------------------------------------
// Progress

const PROGRESS_LINE =
  /^Progress: ([\d,]+)\/([\d,]+) keys \((\d+\.\d)%\), ([\d,]+) keys\/s, (\d+\.\d) MB\/s, ETA (\?|\d+(?:\.\d)? s|\d+ min \d+ s|\d+ h \d+ min); restored ([\d,]+), skipped ([\d,]+), failed ([\d,]+), vanished ([\d,]+)$/;

interface ParsedProgress {
  scanned: number;
  total: number;
  percent: string;
  restored: number;
  skipped: number;
  failed: number;
  vanished: number;
}

function parseProgress(line: string): ParsedProgress {
  const m = PROGRESS_LINE.exec(line);
  if (!m) throw new Error(`not a progress line: ${JSON.stringify(line)}`);
  const n = (i: number): number => Number((m[i] ?? '').replace(/,/g, ''));
  return { scanned: n(1), total: n(2), percent: m[3] ?? '', restored: n(7), skipped: n(8), failed: n(9), vanished: n(10) };
}

describe('progressLine', () => {
  const snapshot = (s: Partial<ProgressSnapshot>): ProgressSnapshot => ({
    scanned: 0, total: 0, bytes: 0, restored: 0, skipped: 0, failed: 0, vanished: 0, ...s,
  });

  it('shows scanned of total, percentage, rates, ETA and the counts', () => {
    const line = progressLine(snapshot({ scanned: 12_000, total: 100_000, bytes: 1_800_000, restored: 11_000, skipped: 900, failed: 7, vanished: 3 }), 1.5);
    expect(line).toBe('12,000/100,000 keys (12.0%), 8,000 keys/s, 1.2 MB/s, ETA 11 s; restored 11,000, skipped 900, failed 7, vanished 3');
  });

  it('rounds the percentage to one decimal', () => {
    expect(progressLine(snapshot({ scanned: 1, total: 3 }), 1)).toMatch(/^1\/3 keys \(33\.3%\)/);
    expect(progressLine(snapshot({ scanned: 2, total: 3 }), 1)).toMatch(/^2\/3 keys \(66\.7%\)/);
    expect(progressLine(snapshot({ scanned: 999, total: 1000 }), 1)).toMatch(/\(99\.9%\)/);
  });

  it('gives the ETA in seconds, minutes or hours from the rate so far', () => {
    expect(progressLine(snapshot({ scanned: 100, total: 105 }), 10)).toContain('10 keys/s, 0.0 MB/s, ETA 0.5 s;');
    expect(progressLine(snapshot({ scanned: 100, total: 1000 }), 10)).toContain('ETA 1 min 30 s;');
    expect(progressLine(snapshot({ scanned: 1000, total: 1_000_000 }), 10)).toContain('100 keys/s, 0.0 MB/s, ETA 2 h 46 min;');
  });

  it('never shows more scanned than total, nor NaN, when keys were added meanwhile or nothing happened yet', () => {
    expect(progressLine(snapshot({ scanned: 150, total: 100 }), 1)).toMatch(/^150\/150 keys \(100\.0%\), 150 keys\/s, 0\.0 MB\/s, ETA 0\.0 s;/);
    const idle = progressLine(snapshot({ total: 500 }), 0);
    expect(idle).toBe('0/500 keys (0.0%), 0 keys/s, 0.0 MB/s, ETA ?; restored 0, skipped 0, failed 0, vanished 0');
    expect(progressLine(snapshot({}), 0)).not.toMatch(/NaN|Infinity/);
  });

  it('says what it is reconnecting to, and for how long, while a server is lost', () => {
    const waiting = { reason: 'destination 10.0.0.6:6379 (Socket closed unexpectedly)', since: Date.now() - 12_000 };
    expect(progressLine(snapshot({ total: 500, waiting }), 1)).toMatch(/; reconnecting: destination 10\.0\.0\.6:6379 \(Socket closed unexpectedly\), for 1[23] s$/);
    const down = { reason: 'a cluster that is down (CLUSTERDOWN The cluster is down)', since: Date.now() - 3_000, doing: 'waiting' as const };
    expect(progressLine(snapshot({ total: 500, waiting: down }), 1)).toMatch(/; waiting: a cluster that is down \(CLUSTERDOWN The cluster is down\), for [34](\.\d)? s$/);
  });
});

describe('PROGRESS on stderr', () => {
  const pair = serverPair();
  const KEYS = 3000;
  // 30 batches of 100 with a 0.2 s pause between them: a little under 6 s, so the 5 s line comes once.
  const slow = { PIPELINE_BATCH_SIZE: 100, SLEEP_TIME: 0.2 };

  beforeAll(async () => {
    await seedStrings(pair.source, 'user:', KEYS);
  });
  beforeEach(async () => freshTarget(pair.target));

  it('PROGRESS=plain prints a consistent line every 5 s on stderr; stdout keeps the summary lines unchanged', async () => {
    const total = await dbsize(pair.source);
    expect(total).toBe(KEYS);
    const run = await migrate(pair, { ...slow, PROGRESS: 'plain' });
    expect(run.code, run.output).toBe(0);
    expect(run.ms, `the run must last over 5 s to show a line\n${run.output}`).toBeGreaterThan(5500);

    const progress = run.stderr.split('\n').filter((line) => line.startsWith('Progress'));
    expect(progress.length, run.output).toBeGreaterThanOrEqual(1);
    expect(progress.length, run.output).toBeLessThanOrEqual(Math.ceil(run.ms / 5000));
    expect(run.stderr, 'plain mode draws no carriage returns or escapes').not.toMatch(/[\r\x1b]/);
    for (const line of progress) expect(line).toMatch(PROGRESS_LINE);

    const parsed = progress.map(parseProgress);
    for (let i = 1; i < parsed.length; i++) expect(parsed[i]?.scanned).toBeGreaterThanOrEqual(parsed[i - 1]?.scanned ?? 0);
    const last = parsed.at(-1) as ParsedProgress;
    expect(last.total, run.output).toBe(total);
    expect(last.scanned, run.output).toBeGreaterThan(0);
    expect(last.scanned, run.output).toBeLessThanOrEqual(last.total);
    expect(last.restored, run.output).toBeGreaterThan(0);
    expect(last.restored, run.output).toBeLessThanOrEqual(last.scanned);
    expect(last.restored + last.skipped + last.failed + last.vanished).toBeLessThanOrEqual(last.scanned);
    expect({ skipped: last.skipped, failed: last.failed, vanished: last.vanished }).toEqual({ skipped: 0, failed: 0, vanished: 0 });
    expect(last.percent).toBe(((100 * last.scanned) / last.total).toFixed(1));

    expect(run.stdout).not.toContain('Progress');
    expectPlainCopyStdout(run.stdout, KEYS);
    expect(await dbsize(pair.target)).toBe(KEYS);
  }, TEST_MS);

  it('PROGRESS=off prints no progress at all, even in a run over 5 s; stdout is the same', async () => {
    const run = await migrate(pair, { ...slow, PROGRESS: 'off' });
    expect(run.code, run.output).toBe(0);
    expect(run.ms, `the run must last over 5 s for the test to mean anything\n${run.output}`).toBeGreaterThan(5500);
    expect(run.stderr, run.output).not.toContain('Progress');
    expectPlainCopyStdout(run.stdout, KEYS);
    expect(await dbsize(pair.target)).toBe(KEYS);
  }, TEST_MS);
});

// ---------------------------------------------------------------------------------------------------------
// Misspelt settings

describe('unknownSettingWarnings', () => {
  it('names a misspelt setting and the one it probably means', () => {
    expect(unknownSettingWarnings({ SOURCE_REDIS_PROT: '1' })).toEqual([
      'Unknown setting SOURCE_REDIS_PROT is ignored; did you mean SOURCE_REDIS_PORT?',
    ]);
    expect(unknownSettingWarnings({ DESTINATION_REDIS_PASWORD: 'x' })).toEqual([
      'Unknown setting DESTINATION_REDIS_PASWORD is ignored; did you mean DESTINATION_REDIS_PASSWORD?',
    ]);
    expect(unknownSettingWarnings({ SLEEP_TIMES: '1' })).toEqual(['Unknown setting SLEEP_TIMES is ignored; did you mean SLEEP_TIME?']);
  });

  it('gives one warning per misspelt variable', () => {
    const warnings = unknownSettingWarnings({ SOURCE_REDIS_PROT: '1', HOME_DIR: '/x', SCAN_MATCH_PATERN: 'a*' });
    expect(warnings).toEqual([
      'Unknown setting SOURCE_REDIS_PROT is ignored; did you mean SOURCE_REDIS_PORT?',
      'Unknown setting SCAN_MATCH_PATERN is ignored; did you mean SCAN_MATCH_PATTERN?',
    ]);
  });

  it('says nothing about real settings or unrelated variables', () => {
    const env: Record<string, string> = { HOME_DIR: '/home/x', PATH: '/bin', HOME: '/root', NODE_ENV: 'production', TERM: 'xterm' };
    for (const s of SETTINGS) env[s.name] = s.default;
    expect(unknownSettingWarnings(env)).toEqual([]);
  });
});

describe('misspelt settings at run time', () => {
  const pair = serverPair();
  let keys = 0;
  beforeAll(async () => {
    keys = await seedEveryType(pair.source);
  });
  beforeEach(async () => freshTarget(pair.target));

  it('SOURCE_REDIS_PROT=1 warns once on stderr and the run goes on with the real settings', async () => {
    const run = await migrate(pair, { SOURCE_REDIS_PROT: 1, PROGRESS: 'off' });
    expect(run.code, run.output).toBe(0);
    const warnings = run.stderr.split('\n').filter((line) => line.includes('Warning'));
    expect(warnings, run.output).toEqual(['Warning: Unknown setting SOURCE_REDIS_PROT is ignored; did you mean SOURCE_REDIS_PORT?']);
    expect(run.stdout).not.toContain('Warning');
    expect(parseSummary(run.stdout)).toEqual({ restored: keys, skipped: 0, failed: 0, vanished: 0 });
  }, TEST_MS);

  it('an unrelated variable such as HOME_DIR gives no warning', async () => {
    const run = await migrate(pair, { HOME_DIR: '/tmp', PROGRESS: 'off' });
    expect(run.code, run.output).toBe(0);
    expect(run.stderr, run.output).not.toContain('Warning');
    expect(parseSummary(run.stdout)).toEqual({ restored: keys, skipped: 0, failed: 0, vanished: 0 });
  }, TEST_MS);
});

// ---------------------------------------------------------------------------------------------------------
// DRY_RUN

describe('DRY_RUN=true', () => {
  const pair = serverPair();
  const BIG = Buffer.from('big:blob');
  const ON_TARGET = ['string', 'hash'];

  interface Expected {
    total: number;
    withTtl: number;
    bytes: number;
    byType: Map<string, { keys: number; bytes: number }>;
    /** MEMORY USAGE of every key, largest first. */
    sizes: number[];
  }
  const expected: Expected = { total: 0, withTtl: 0, bytes: 0, byType: new Map(), sizes: [] };

  beforeAll(async () => {
    await seedEveryType(pair.source);
    await pair.source.cmd('SET', BIG, randomBytes(300_000)); // clearly the biggest key
    await pair.source.cmd('SET', 'ttl:extra', 'soon', 'EX', 3600);
    await seedStrings(pair.source, 'bulk:', 200);
    await pair.target.cmd('SET', 'string', 'different on the target');
    await pair.target.cmd('HSET', 'hash', 'other', 'field');
    await pair.target.cmd('SET', 'only-on-target', '1');

    for (const key of await allKeys(pair.source)) {
      const type = await keyType(pair.source, key);
      const bytes = Number(await pair.source.client.sendCommand(['MEMORY', 'USAGE', key]));
      const ttl = Number(await pair.source.client.sendCommand(['PTTL', key]));
      expected.total += 1;
      expected.bytes += bytes;
      if (ttl >= 0) expected.withTtl += 1;
      const tally = expected.byType.get(type) ?? { keys: 0, bytes: 0 };
      tally.keys += 1;
      tally.bytes += bytes;
      expected.byType.set(type, tally);
      expected.sizes.push(bytes);
    }
    expected.sizes.sort((a, b) => b - a);
    expect(expected.withTtl).toBe(3);
    expect(expected.byType.size).toBe(6);
  });

  it('writes nothing: target keys, data, dirty counter and command statistics show no write', async () => {
    await pair.target.cmd('CONFIG', 'RESETSTAT');
    const before = {
      targetKeys: await dbsize(pair.target),
      targetDigest: await digest(pair.target),
      targetChanges: await rdbChanges(pair.target),
      sourceDigest: await digest(pair.source),
      sourceChanges: await rdbChanges(pair.source),
    };
    const run = await migrate(pair, { DRY_RUN: 'true', PIPELINE_BATCH_SIZE: 50 });
    expect(run.code, run.output).toBe(0);
    expect(run.stdout).toContain('Dry run: nothing was written.');
    expect({
      targetKeys: await dbsize(pair.target),
      targetDigest: await digest(pair.target),
      targetChanges: await rdbChanges(pair.target),
      sourceDigest: await digest(pair.source),
      sourceChanges: await rdbChanges(pair.source),
    }).toEqual(before);

    const stats = await commandStats(pair.target);
    // The dry run did ask the target (EXISTS inside a script), so the statistics can see its commands.
    expect(calls(stats, 'exists'), run.output).toBeGreaterThan(0);
    expect(await writeCommandsRun(pair.target)).toEqual([]);
    for (const command of ['set', 'restore', 'del', 'unlink', 'hset', 'rpush', 'sadd', 'zadd', 'xadd', 'pexpire', 'pexpireat', 'pfadd', 'setbit', 'xgroup|create', 'xsetid']) {
      expect(calls(stats, command), command).toBe(0);
    }
  }, TEST_MS);

  it('reports what a copy would do: counts, skips, expiries, memory, per type, and the largest keys biggest first', async () => {
    const run = await migrate(pair, { DRY_RUN: 'true', PIPELINE_BATCH_SIZE: 50 });
    expect(run.code, run.output).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    const start = lines.indexOf('Dry run: nothing was written.');
    expect(start, run.output).toBeGreaterThanOrEqual(0);
    expect(lines[start + 1]).toBe(
      `Would copy ${expected.total - ON_TARGET.length} keys; ${ON_TARGET.length} already on the target would be skipped; ` +
        `${expected.withTtl} have an expiry; ${formatBytes(expected.bytes)} in memory on the source (MEMORY USAGE).`,
    );

    const largestAt = lines.indexOf('Largest keys:');
    expect(largestAt, run.output).toBeGreaterThan(start + 1);
    const typeLines = lines.slice(start + 2, largestAt);
    const byType = typeLines.map((line) => {
      const m = /^ {2}(\S+)\s+(\d+) keys\s+(\d+(?:\.\d)? [KMGT]?B)$/.exec(line);
      if (!m) throw new Error(`not a per-type line: ${JSON.stringify(line)}\n${run.output}`);
      return { type: m[1] ?? '', keys: Number(m[2]), bytes: m[3] ?? '' };
    });
    expect(byType.map((t) => t.keys), 'most keys first').toEqual([...byType.map((t) => t.keys)].sort((a, b) => b - a));
    const wanted = [...expected.byType.entries()].map(([type, t]) => ({ type, keys: t.keys, bytes: formatBytes(t.bytes) }));
    const byName = (a: { type: string }, b: { type: string }): number => a.type.localeCompare(b.type);
    expect([...byType].sort(byName)).toEqual(wanted.sort(byName));

    const largest = lines.slice(largestAt + 1).map((line) => {
      const m = /^\s+(\d+(?:\.\d)? [KMGT]?B) {2}(\S+)\s+\|(.*)\|$/.exec(line);
      if (!m) throw new Error(`not a largest-key line: ${JSON.stringify(line)}\n${run.output}`);
      return { bytes: m[1] ?? '', type: m[2] ?? '', key: m[3] ?? '' };
    });
    expect(largest.length, run.output).toBe(10);
    expect(largest[0], run.output).toEqual({ bytes: formatBytes(expected.sizes[0] ?? 0), type: 'string', key: 'big:blob' });
    expect(largest.map((k) => k.bytes)).toEqual(expected.sizes.slice(0, 10).map(formatBytes));
  }, TEST_MS);

  it('with OVERWRITE_EXISTING_KEYS=true, the keys already on the target would be replaced', async () => {
    const run = await migrate(pair, { DRY_RUN: 'true', OVERWRITE_EXISTING_KEYS: 'true' });
    expect(run.code, run.output).toBe(0);
    expect(run.stdout).toContain(
      `Would copy ${expected.total} keys; ${ON_TARGET.length} already on the target would be replaced; ${expected.withTtl} have an expiry;`,
    );
    expect(await dbsize(pair.target)).toBe(ON_TARGET.length + 1);
  }, TEST_MS);
});

// ---------------------------------------------------------------------------------------------------------
// SCAN_TYPE and KEY_EXCLUDE_PATTERN

describe('SCAN_TYPE and KEY_EXCLUDE_PATTERN', () => {
  const pair = serverPair();
  const TMP_BINARY = Buffer.concat([Buffer.from('tmp:'), Buffer.from([0xff, 0x00])]);
  const HASHES = 8; // hash, ttl-hash, h:1..h:5, tmp:h
  const EXCLUDED = 8; // tmp:1..tmp:6, tmp:<ff 00>, tmp:h
  let total = 0;

  const isExcluded = (key: Buffer): boolean => key.subarray(0, 4).equals(Buffer.from('tmp:'));

  beforeAll(async () => {
    await seedEveryType(pair.source);
    for (let i = 1; i <= 5; i++) await pair.source.cmd('HSET', `h:${i}`, 'field', `value ${i}`);
    await seedStrings(pair.source, 'tmp:', 6);
    await pair.source.cmd('SET', TMP_BINARY, 'binary tmp');
    await pair.source.cmd('HSET', 'tmp:h', 'field', 'excluded hash');
    await pair.source.cmd('SET', 'tmpx', 'not excluded: no colon');
    await pair.source.cmd('SET', 'x:tmp:1', 'not excluded: tmp: not at the start');
    total = await dbsize(pair.source);
    const keys = await allKeys(pair.source);
    const types = await Promise.all(keys.map((key) => keyType(pair.source, key)));
    expect(types.filter((t) => t === 'hash')).toHaveLength(HASHES);
    expect(keys.filter(isExcluded)).toHaveLength(EXCLUDED);
  });
  beforeEach(async () => freshTarget(pair.target));

  it('SCAN_TYPE=hash copies only the hashes and says other types were not scanned', async () => {
    const run = await migrate(pair, { SCAN_TYPE: 'hash' });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: HASHES, skipped: 0, failed: 0, vanished: 0 });
    expect(run.stdout.split('\n')).toContain('Keys of other types than hash were not scanned (SCAN_TYPE)');
    expect(run.stdout).not.toContain('Number of excluded keys');
    const copied = await allKeys(pair.target);
    expect(copied).toHaveLength(HASHES);
    for (const key of copied) expect(await keyType(pair.target, key)).toBe('hash');
    expectElapsedAfterParity(run.stdout);
  }, TEST_MS);

  it("KEY_EXCLUDE_PATTERN='tmp:*' leaves exactly those keys out and counts them", async () => {
    const run = await migrate(pair, { KEY_EXCLUDE_PATTERN: 'tmp:*' });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: total - EXCLUDED, skipped: 0, failed: 0, vanished: 0 });
    expect(run.stdout.split('\n')).toContain(`Number of excluded keys: ${EXCLUDED}`);
    expect(run.stdout).not.toContain('were not scanned');
    const sourceKeys = await allKeys(pair.source);
    expect(hexSet(await allKeys(pair.target))).toEqual(hexSet(sourceKeys.filter((key) => !isExcluded(key))));
    expectElapsedAfterParity(run.stdout);
  }, TEST_MS);

  it('both together: only hashes, less the excluded hash; the elapsed line follows all the parity lines, before verification', async () => {
    const run = await migrate(pair, { SCAN_TYPE: 'hash', KEY_EXCLUDE_PATTERN: 'tmp:*', VERIFY: 'true' });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: HASHES - 1, skipped: 0, failed: 0, vanished: 0 });
    const lines = run.stdout.trimEnd().split('\n');
    const vanishedAt = lines.indexOf('Number of vanished keys: 0');
    expect(lines.slice(vanishedAt + 1, vanishedAt + 3), run.output).toEqual([
      'Number of excluded keys: 1',
      'Keys of other types than hash were not scanned (SCAN_TYPE)',
    ]);
    expect(lines[vanishedAt + 3], run.output).toMatch(ELAPSED_LINE);
    expect(lines.slice(vanishedAt + 4).some((line) => line.startsWith('Verification of copied keys:')), run.output).toBe(true);
    expectElapsedAfterParity(run.stdout);
    expect(await dbsize(pair.target)).toBe(HASHES - 1);
  }, TEST_MS);

  it('MIGRATION_MODE=compare with SCAN_TYPE=hash checks only the hashes', async () => {
    expect(await copyDirect(pair, (_key, type) => type === 'hash')).toBe(HASHES);
    const compare = await migrate(pair, { MIGRATION_MODE: 'compare', SCAN_TYPE: 'hash' });
    expect(compare.code, compare.output).toBe(0);
    expect(compare.stdout, compare.output).toContain(`0 missing, 0 type, 0 value, 0 ttl (${HASHES} keys checked, ${HASHES} identical)`);
    // Without the filter the same target is missing every other key: the filter is what made it pass.
    const unfiltered = await migrate(pair, { MIGRATION_MODE: 'compare' });
    expect(unfiltered.code, unfiltered.output).toBe(4);
    expect(unfiltered.stdout).toContain(`${total - HASHES} missing, 0 type, 0 value, 0 ttl (${total} keys checked, ${HASHES} identical)`);
    expect(await dbsize(pair.target), 'compare writes nothing').toBe(HASHES);
  }, TEST_MS);

  it("MIGRATION_MODE=compare with KEY_EXCLUDE_PATTERN='tmp:*' checks only the selected keys", async () => {
    const selected = total - EXCLUDED;
    expect(await copyDirect(pair, (key) => !isExcluded(key))).toBe(selected);
    const compare = await migrate(pair, { MIGRATION_MODE: 'compare', KEY_EXCLUDE_PATTERN: 'tmp:*' });
    expect(compare.code, compare.output).toBe(0);
    expect(compare.stdout, compare.output).toContain(`0 missing, 0 type, 0 value, 0 ttl (${selected} keys checked, ${selected} identical)`);
    const unfiltered = await migrate(pair, { MIGRATION_MODE: 'compare' });
    expect(unfiltered.code, unfiltered.output).toBe(4);
    expect(unfiltered.stdout).toContain(`${EXCLUDED} missing, 0 type, 0 value, 0 ttl (${total} keys checked, ${selected} identical)`);
    expect(await dbsize(pair.target), 'compare writes nothing').toBe(selected);
  }, TEST_MS);
});

// ---------------------------------------------------------------------------------------------------------
// SUMMARY_JSON_FILE

interface TallyDoc {
  checked: number;
  identical: number;
  vanished: number;
  differences: { missing: number; type: number; value: number; ttl: number };
}

interface SummaryDoc {
  mode: string;
  exit_status: number;
  started_at: string;
  finished_at: string;
  elapsed_seconds: number;
  keys_per_second: number;
  megabytes_per_second: number;
  bytes_moved: number;
  counts: { restored: number; skipped: number; failed: number; vanished: number; excluded: number } | null;
  method: { requested: string; used: string; fallback_reason: string | null } | null;
  verification: Record<string, TallyDoc> | null;
}

const SUMMARY_FIELDS = [
  'bytes_moved', 'counts', 'crossing', 'elapsed_seconds', 'exit_status', 'finished_at', 'keys_per_second', 'live', 'megabytes_per_second', 'method', 'mode',
  'started_at', 'verification',
];

function readSummary(run: Run): SummaryDoc {
  const parsed: unknown = JSON.parse(readFileSync(join(run.cwd, 'summary.json'), 'utf8'));
  expect(typeof parsed === 'object' && parsed !== null).toBe(true);
  expect(Object.keys(parsed as object).sort()).toEqual(SUMMARY_FIELDS);
  return parsed as SummaryDoc;
}

/** Timestamps are ISO strings within the run, and the rates agree with the elapsed time. */
function expectTiming(doc: SummaryDoc, run: Run, testStarted: number, keys: number): void {
  const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
  expect(doc.started_at).toMatch(iso);
  expect(doc.finished_at).toMatch(iso);
  const started = Date.parse(doc.started_at);
  const finished = Date.parse(doc.finished_at);
  expect(new Date(started).toISOString()).toBe(doc.started_at);
  expect(started).toBeGreaterThanOrEqual(testStarted - 1000);
  expect(finished).toBeGreaterThanOrEqual(started);
  expect(finished).toBeLessThanOrEqual(Date.now());
  expect(finished - started).toBeLessThanOrEqual(run.ms);
  expect(doc.elapsed_seconds).toBeGreaterThan(0);
  expect(Math.abs(doc.elapsed_seconds - (finished - started) / 1000)).toBeLessThan(0.002);
  expect(Math.abs(doc.keys_per_second * doc.elapsed_seconds - keys)).toBeLessThan(0.01);
  expect(Math.abs(doc.megabytes_per_second * 1e6 * doc.elapsed_seconds - doc.bytes_moved)).toBeLessThan(1);
}

describe('SUMMARY_JSON_FILE', () => {
  const pair = serverPair();
  const BULK = 500;
  const TMP = 3;
  let total = 0;

  beforeAll(async () => {
    await seedEveryType(pair.source);
    // Random values, so DUMP cannot compress them: the bytes moved are at least their length.
    await Promise.all(Array.from({ length: BULK }, (_, i) => pair.source.cmd('SET', `bulk:${i}`, randomBytes(1000))));
    await seedStrings(pair.source, 'tmp:', TMP);
    total = await dbsize(pair.source);
    expect(await pair.target.cmd('ACL', 'SETUSER', 'norestore', 'on', '>pw', '~*', '+@all', '-restore')).toBe('OK');
  });
  beforeEach(async () => freshTarget(pair.target));

  const asNoRestoreUser = { DESTINATION_REDIS_USERNAME: 'norestore', DESTINATION_REDIS_PASSWORD: 'pw' };

  it('after a copy: mode, exit status, ISO times, rates, bytes, counts as on stdout, method; the console timing agrees', async () => {
    await pair.target.cmd('SET', 'string', 'already here');
    await pair.target.cmd('RPUSH', 'list', 'already here');
    const testStarted = Date.now();
    const run = await migrate(pair, { KEY_EXCLUDE_PATTERN: 'tmp:*', SUMMARY_JSON_FILE: 'summary.json' });
    expect(run.code, run.output).toBe(0);
    const doc = readSummary(run);
    expect(doc.mode).toBe('copy');
    expect(doc.exit_status).toBe(run.code);

    expect(doc.counts).toEqual({ ...parseSummary(run.stdout), excluded: countOf(run.stdout, 'excluded') });
    expect(doc.counts).toEqual({ restored: total - TMP - 2, skipped: 2, failed: 0, vanished: 0, excluded: TMP });
    expect(doc.method).toEqual({ requested: 'auto', used: 'dump', fallback_reason: null });
    expect(doc.verification).toBeNull();

    expect(doc.bytes_moved).toBeGreaterThanOrEqual(BULK * 1000);
    expectTiming(doc, run, testStarted, total - TMP);
    const elapsed = run.stdout.split('\n').find((line) => line.startsWith('Elapsed time:'));
    expect(elapsed).toBe(
      `Elapsed time: ${formatDuration(doc.elapsed_seconds)}, ${Math.round(doc.keys_per_second).toLocaleString('en-US')} keys/s, ` +
        `${doc.megabytes_per_second.toFixed(1)} MB/s`,
    );
    expectElapsedAfterParity(run.stdout);
  }, TEST_MS);

  it('COPY_METHOD=auto against a user without RESTORE: method used is type, with the fallback reason', async () => {
    const run = await migrate(pair, { ...asNoRestoreUser, COPY_METHOD: 'auto', PIPELINE_BATCH_SIZE: 100, SUMMARY_JSON_FILE: 'summary.json' });
    expect(run.code, run.output).toBe(0);
    const doc = readSummary(run);
    expect(doc.exit_status).toBe(run.code);
    expect(doc.counts).toEqual({ restored: total, skipped: 0, failed: 0, vanished: 0, excluded: 0 });
    expect(doc.method?.requested).toBe('auto');
    expect(doc.method?.used).toBe('type');
    expect(typeof doc.method?.fallback_reason).toBe('string');
    expect(doc.method?.fallback_reason).not.toBe('');
    // The same reason the console gave.
    expect(run.stdout).toContain(`The target refused RESTORE (${doc.method?.fallback_reason ?? ''}); copying by type from now on`);
    expect(doc.bytes_moved).toBeGreaterThanOrEqual(BULK * 1000);
  }, TEST_MS);

  it('a copy where every key fails: exit status 2 in the JSON as in the process, failed counted', async () => {
    const testStarted = Date.now();
    const run = await migrate(pair, { ...asNoRestoreUser, COPY_METHOD: 'dump', MAX_ERRORED_KEYS_LIMIT: 0, SUMMARY_JSON_FILE: 'summary.json' });
    expect(run.code, run.output).toBe(2);
    const doc = readSummary(run);
    expect(doc.exit_status).toBe(run.code);
    expect(doc.counts).toEqual({ ...parseSummary(run.stdout), excluded: 0 });
    expect(doc.counts).toEqual({ restored: 0, skipped: 0, failed: total, vanished: 0, excluded: 0 });
    expect(doc.method).toEqual({ requested: 'dump', used: 'dump', fallback_reason: null });
    expectTiming(doc, run, testStarted, total);
    // The error line is part of the summary block; the timing comes after it.
    expect(run.stdout).toContain('Errors occurred during the execution. Check |redis-keys-migrator-error.log| for details');
    expectElapsedAfterParity(run.stdout);
  }, TEST_MS);

  it('MIGRATION_MODE=compare writes its tally under verification.compare, with its exit status', async () => {
    expect(await copyDirect(pair, (key) => !key.toString().startsWith('tmp:'))).toBe(total - TMP);
    const testStarted = Date.now();
    const run = await migrate(pair, { MIGRATION_MODE: 'compare', SUMMARY_JSON_FILE: 'summary.json' });
    expect(run.code, run.output).toBe(4);
    const doc = readSummary(run);
    expect(doc.mode).toBe('compare');
    expect(doc.exit_status).toBe(run.code);
    expect(doc.counts).toBeNull();
    expect(doc.method).toBeNull();
    expect(doc.verification).toEqual({
      compare: { checked: total, identical: total - TMP, vanished: 0, differences: { missing: TMP, type: 0, value: 0, ttl: 0 } },
    });
    expect(run.stdout).toContain(`${TMP} missing, 0 type, 0 value, 0 ttl (${total} keys checked, ${total - TMP} identical)`);
    expect(doc.bytes_moved).toBe(0);
    expectTiming(doc, run, testStarted, total);
  }, TEST_MS);
});

// ---------------------------------------------------------------------------------------------------------
// npm run media

describe('npm run media', () => {
  // Drawn into a temporary folder: running the tests must not rewrite the README's pictures.
  const MEDIA = tempDir();
  const PICTURES = ['full-migration', 'with-skipped-keys', 'failure', 'failure-error-log'];

  /** The text lines an SVG drawn by terminalSvg shows, unescaped, window title excluded. */
  function shownLines(svg: string): string[] {
    return [...svg.matchAll(/<text x="20" [^>]*>([^<]*)<\/text>/g)].map((m) =>
      (m[1] ?? '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'),
    );
  }

  // The generator runs three real migrations of 100,000 keys: about 17 s alone, more on a busy machine.
  it('writes the four pictures with real output, and no password', async () => {
    const started = Date.now();
    const { stdout } = await execFileAsync(join(ROOT, 'node_modules', '.bin', 'tsx'), [join(ROOT, 'tools', 'make-media.ts')], {
      cwd: ROOT, timeout: 90_000, env: { ...process.env, MEDIA_DIR: MEDIA },
    });
    for (const name of PICTURES) expect(stdout).toContain(join(MEDIA, `${name}.svg`));

    const svgs = new Map<string, string>();
    for (const name of PICTURES) {
      const path = join(MEDIA, `${name}.svg`);
      expect(statSync(path).mtimeMs, `${name}.svg was written by this run`).toBeGreaterThanOrEqual(started - 1000);
      const svg = readFileSync(path, 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'), name).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>'), name).toBe(true);
      expect(svg, name).not.toContain('app-password');
      expect(svg, name).not.toContain('Progress:');
      svgs.set(name, svg);
    }
    const lines = (name: string): string[] => shownLines(svgs.get(name) ?? '');
    const count = (name: string, label: 'restored' | 'skipped' | 'failed'): number => countOf(lines(name).join('\n'), label);

    const full = lines('full-migration');
    expect(full[0]).toMatch(/^\$ .*VERIFY=true npx tsx redis-keys-migrator\.ts$/);
    expect(full).toContain('Connected to Redis instances successfully');
    expect(count('full-migration', 'restored')).toBeGreaterThan(100_000);
    expect(count('full-migration', 'failed')).toBe(0);
    expect(full.some((l) => ELAPSED_LINE.test(l))).toBe(true);
    expect(full.some((l) => /^Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl \(\d+ keys checked, \d+ identical\)$/.test(l))).toBe(true);

    expect(count('with-skipped-keys', 'skipped')).toBe(25_000);
    expect(count('with-skipped-keys', 'restored') + 25_000).toBe(count('full-migration', 'restored'));

    const failed = count('failure', 'failed');
    expect(failed).toBeGreaterThan(0);
    expect(lines('failure')).toContain('Errors occurred during the execution. Check |redis-keys-migrator-error.log| for details');
    expect(lines('failure')[0]).toContain('DESTINATION_REDIS_PASSWORD=********');

    const log = lines('failure-error-log');
    expect(log[0]).toBe('$ cat redis-keys-migrator-error.log');
    const errors = log.filter((l) => l.includes('- ERROR - Failed to migrate key |'));
    expect(errors).toHaveLength(failed);
    for (const line of errors) expect(line).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - ERROR - Failed to migrate key \|.*\|: .+\]$/);
  }, 120_000);
});

describe('output whose reader goes away', () => {
  const pair = serverPair();

  it('`| head -1` closes stdout after the first line: the copy still finishes, exit 0, no EPIPE crash, JSON summary written', async () => {
    await Promise.all([pair.source.cmd('FLUSHALL'), pair.target.cmd('FLUSHALL')]);
    await seedEveryType(pair.source);
    const cwd = runDir();
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PROGRESS: 'off', SUMMARY_JSON_FILE: 'summary.json' };
    for (const [name, value] of Object.entries(endpoints(pair.source, pair.target))) Object.assign(env, { [name]: String(value) });
    const { stdout, stderr } = await execFileAsync('bash', ['-c', '"$0" "$1" | head -1; exit "${PIPESTATUS[0]}"', TSX, SCRIPT], { cwd, env, timeout: RUN_MS });
    expect(stdout).toBe('Connected to Redis instances successfully\n');
    expect(stderr).not.toMatch(/EPIPE|^\s+at /m);
    expect(await digest(pair.target)).toBe(await digest(pair.source));
    expect(JSON.parse(readFileSync(join(cwd, 'summary.json'), 'utf8'))).toMatchObject({ exit_status: 0, counts: { failed: 0 } });
  }, TEST_MS);
});
