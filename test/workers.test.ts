// WORKERS=N: one run as N processes of this machine, each a share of the slots. The real script against real
// servers: every key copied once, one summary adding theirs up, the worst exit status, Ctrl-C reaching all.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { keySlot } from '../lib/net/cluster.js';
import { ALL_SLOTS, parseSettings, slotRangesText, splitSlots } from '../lib/settings.js';
import { keyspaceOf } from './helpers/cluster.js';
import { allKeys, describeRun, parseSummary } from './helpers/inspect.js';
import { endpoints, runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer } from './helpers/servers.js';


describe('splitSlots', () => {
  it('cuts the run\'s slots into contiguous shares of even size that cover each slot once', () => {
    expect(splitSlots(ALL_SLOTS, 3).map(slotRangesText)).toEqual(['0-5460', '5461-10921', '10922-16383']);
    // Across the gap between two ranges: a share may hold two ranges.
    expect(splitSlots([[0, 9], [100, 109]], 3).map(slotRangesText)).toEqual(['0-5', '6-9,100-102', '103-109']);
  });

  it('WORKERS out of bounds fails before connecting', () => {
    expect(() => parseSettings({ WORKERS: '0' })).toThrow(/^WORKERS must be a whole number from 1 to 256/);
    expect(() => parseSettings({ WORKERS: '4', SOURCE_SLOTS: '7-9' })).toThrow('WORKERS must be at most the number of slots this run copies (3), got 4');
  });
});

describe('WORKERS against real servers', () => {
  let source: RedisServer;
  let target: RedisServer;
  let keys: Buffer[];
  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await source.cmd('DEBUG', 'POPULATE', 10_000, 'key', 8);
    keys = await allKeys(source);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  it('WORKERS=3: each worker copies its share, every key once; one summary adds them up (also as JSON); exit 0', async () => {
    const dir = tempDir();
    const run = await runMigrator({ ...endpoints(source, target), WORKERS: 3, SUMMARY_JSON_FILE: 'summary.json' }, dir);
    expect(run.code, describeRun(run)).toBe(0);
    const shares = splitSlots(ALL_SLOTS, 3);
    shares.forEach((share, i) => {
      const [[low, high]] = share as [[number, number]];
      const mine = keys.filter((k) => keySlot(k) >= low && keySlot(k) <= high).length;
      expect(run.stdout).toContain(`[worker ${i}] Number of restored keys: ${mine}\n`);
    });
    expect(run.stdout).toContain('All 3 workers ended: exit status 0 (worker 0), 0 (worker 1), 0 (worker 2)');
    expect(parseSummary(run.stdout)).toEqual({ restored: keys.length, skipped: 0, failed: 0, vanished: 0 });
    expect(await keyspaceOf([target])).toEqual(await keyspaceOf([source]));
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as { exit_status: number; counts: { restored: number }; workers: { slots: string; exit_status: number }[] };
    expect(summary.exit_status).toBe(0);
    expect(summary.counts.restored).toBe(keys.length);
    expect(summary.workers.map((w) => w.slots)).toEqual(shares.map(slotRangesText));
  }, 60_000);

  it('the worst exit status wins: a comparison in which one worker finds a difference exits 4, and says so', async () => {
    const copied = await runMigrator({ ...endpoints(source, target), WORKERS: 2 }, tempDir());
    expect(copied.code, describeRun(copied)).toBe(0);
    const changed = keys.find((k) => keySlot(k) > 8191) as Buffer; // worker 1's share
    await target.cmd('SET', changed, 'another value');
    const run = await runMigrator({ ...endpoints(source, target), WORKERS: 2, MIGRATION_MODE: 'compare' }, tempDir());
    expect(run.code, describeRun(run)).toBe(4);
    expect(run.stdout).toContain('All 2 workers ended: exit status 0 (worker 0), 4 (worker 1)');
    expect(run.stdout).toMatch(new RegExp(`^Verification \\(compare\\), all workers: 0 missing, 0 type, 1 value, 0 ttl \\(${keys.length} keys checked, ${keys.length - 1} identical\\)$`, 'm'));
  }, 60_000);

  it('Ctrl-C (SIGINT to the whole group, as a terminal sends it) stops every worker: each drains and reports, exit 130', async () => {
    const run = spawnMigrator({ ...endpoints(source, target), WORKERS: 3, MAX_KEYS_PER_SECOND: 1000, SOURCE_READER: 'scan' }, tempDir());
    await waitUntil(async () => Number(await target.cmd('DBSIZE')) > 300, 'every worker under way', 30_000, 50);
    run.signalAll('SIGINT');
    const result = await run.done;
    expect(result.code, describeRun(result)).toBe(130);
    expect(result.stdout).toContain('All 3 workers ended: exit status 130 (worker 0), 130 (worker 1), 130 (worker 2)');
    const counts = parseSummary(result.stdout);
    expect(counts.restored, describeRun(result)).toBeLessThan(keys.length);
    // What the summary counts is what the target holds: the workers drained what they had started.
    expect(Number(await target.cmd('DBSIZE'))).toBe(counts.restored);
  }, 60_000);
});
