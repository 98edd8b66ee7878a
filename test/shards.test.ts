// SOURCE_SLOTS, SHARD_COUNT and SHARD_INDEX (or Kubernetes' JOB_COMPLETION_INDEX): one migration split over
// processes by hash slot. Each key copied by exactly one shard, from a standalone source (every reader), a
// cluster source (only the masters owning the shard's slots are read), a file; compare and checkpoints per shard.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { keySlot } from '../lib/net/cluster.js';
import { parseSettings, SettingsError, shardRange } from '../lib/settings.js';
import { keyspaceOf, startCluster, type TestCluster } from './helpers/cluster.js';
import { allKeys, calls, commandStats, describeRun, fullSyncs, parseSummary } from './helpers/inspect.js';
import { endpoints, runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer } from './helpers/servers.js';


describe('the settings', () => {
  it('SHARD_COUNT cuts the 16,384 slots into contiguous ranges that cover each slot once', () => {
    for (const count of [1, 2, 3, 7, 40, 16384]) {
      let next = 0;
      for (let index = 0; index < count; index++) {
        const [low, high] = shardRange(index, count);
        expect(low).toBe(next);
        expect(high).toBeGreaterThanOrEqual(low);
        next = high + 1;
      }
      expect(next).toBe(16384);
    }
  });

  it('SHARD_INDEX comes from JOB_COMPLETION_INDEX when not set; SOURCE_SLOTS is merged and meets the shard', () => {
    expect(parseSettings({ SHARD_COUNT: '4', JOB_COMPLETION_INDEX: '2' }).sharding).toEqual({ index: 2, count: 4, slots: [[8192, 12287]] });
    expect(parseSettings({ SHARD_COUNT: '4', SHARD_INDEX: '1', JOB_COMPLETION_INDEX: '2' }).sharding.index).toBe(1);
    expect(parseSettings({ SOURCE_SLOTS: '10923-16383, 5,0-4,100' }).sharding.slots).toEqual([[0, 5], [100, 100], [10923, 16383]]);
    expect(parseSettings({ SOURCE_SLOTS: '0-5460,10923-16383', SHARD_COUNT: '2', SHARD_INDEX: '1' }).sharding.slots).toEqual([[10923, 16383]]);
    expect(parseSettings({}).sharding).toEqual({ index: 0, count: 1 });
  });

  it('a bad value fails before connecting, naming the variable and what it expects', () => {
    const refusal = (env: Record<string, string>): string => {
      try {
        parseSettings(env);
      } catch (err) {
        expect(err).toBeInstanceOf(SettingsError);
        return (err as Error).message;
      }
      throw new Error('no refusal');
    };
    expect(refusal({ SOURCE_SLOTS: '0-16384' })).toMatch(/^SOURCE_SLOTS must be hash slots or ranges from 0 to 16383/);
    expect(refusal({ SOURCE_SLOTS: '9-3' })).toMatch(/^SOURCE_SLOTS must be/);
    expect(refusal({ SHARD_COUNT: '3', SHARD_INDEX: '3' })).toBe('SHARD_INDEX must be a whole number from 0 to 2 (SHARD_COUNT=3), got "3"');
    expect(refusal({ SHARD_COUNT: '3', JOB_COMPLETION_INDEX: '5' })).toMatch(/^JOB_COMPLETION_INDEX \(read for SHARD_INDEX\) must be a whole number from 0 to 2/);
    expect(refusal({ SHARD_COUNT: '0' })).toMatch(/^SHARD_COUNT must be a whole number from 1 to 16384/);
    expect(refusal({ SOURCE_SLOTS: '0-100', SHARD_COUNT: '2', SHARD_INDEX: '1' })).toMatch(/have no slot in common/);
  });
});

/** Source keys by shard of `count`, from the keys' own slots. */
function keysByShard(keys: readonly Buffer[], count: number): number[] {
  return Array.from({ length: count }, (_, i) => {
    const [low, high] = shardRange(i, count);
    return keys.filter((key) => keySlot(key) >= low && keySlot(key) <= high).length;
  });
}

describe('shards of a standalone source', () => {
  let source: RedisServer;
  let target: RedisServer;
  let keys: Buffer[];
  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await source.cmd('DEBUG', 'POPULATE', 3000, 'key', 8);
    // Hash tags and binary names: the slot is the tag's, and names are bytes.
    await source.cmd('EVAL', "for i = 1, 200 do redis.call('SET', '{user' .. (i % 7) .. '}:' .. i, i) end return 1", 0);
    await source.cmd('SET', Buffer.from([0xff, 0x00, 0x7b, 0x41, 0x7d]), 'binary');
    await source.cmd('HSET', 'a:hash', 'f', 'v');
    keys = await allKeys(source);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  for (const reader of ['scan', 'replication']) {
    it(`SOURCE_READER=${reader}: three shards at once (JOB_COMPLETION_INDEX 0 to 2) copy every key exactly once`, async () => {
      const expected = keysByShard(keys, 3);
      const runs = await Promise.all([0, 1, 2].map((index) => runMigrator({ ...endpoints(source, target), SOURCE_READER: reader, SHARD_COUNT: 3, JOB_COMPLETION_INDEX: index }, tempDir())));
      runs.forEach((run, index) => {
        expect(run.code, describeRun(run)).toBe(0);
        expect(run.stdout).toContain(`Shard ${index} of 3 (0 to 2): the keys in hash slots ${shardRange(index, 3).join('-')}`);
        // Every key restored, none skipped: no key was copied by two shards.
        expect(parseSummary(run.stdout), describeRun(run)).toEqual({ restored: expected[index], skipped: 0, failed: 0, vanished: 0 });
      });
      expect(await keyspaceOf([target])).toEqual(await keyspaceOf([source]));
    }, 60_000);
  }

  it('compare and checkpoints are per shard: a shard copied compares equal, the next one finds its keys missing; a checkpoint refuses another shard', async () => {
    const dir = tempDir();
    const shard = (index: number): Record<string, string | number> => ({ ...endpoints(source, target), SHARD_COUNT: 3, SHARD_INDEX: index });
    const copied = await runMigrator({ ...shard(0), CHECKPOINT_FILE: 'shard.json', SUMMARY_JSON_FILE: 'summary.json' }, dir);
    expect(copied.code, describeRun(copied)).toBe(0);
    const summary = JSON.parse((await import('node:fs')).readFileSync(`${dir}/summary.json`, 'utf8')) as { shard: unknown };
    expect(summary.shard).toEqual({ index: 0, count: 3, slots: '0-5460' });

    const same = await runMigrator({ ...shard(0), MIGRATION_MODE: 'compare' }, dir);
    expect(same.code, describeRun(same)).toBe(0);
    const next = await runMigrator({ ...shard(1), MIGRATION_MODE: 'compare' }, dir);
    expect(next.code, describeRun(next)).not.toBe(0);
    expect(next.stdout).toMatch(new RegExp(`${keysByShard(keys, 3)[1]} missing`));

    const other = await runMigrator({ ...shard(1), CHECKPOINT_FILE: 'shard.json' }, dir);
    expect(other.code, describeRun(other)).toBe(1);
    expect(other.stdout).toMatch(/SOURCE_SLOTS/);
  }, 60_000);

  it('live per shard: another shard\'s keys on the target neither refuse the run nor get touched; its own changes are applied', async () => {
    await source.cmd('CONFIG', 'SET', 'notify-keyspace-events', 'KEA');
    const [mine, theirs] = [0, 1].map((index) => keys.find((k) => keySlot(k) >= shardRange(index, 2)[0] && keySlot(k) <= shardRange(index, 2)[1]) as Buffer);
    // Shard 1's key is on the target already, as another pod would have put it there.
    await target.cmd('SET', theirs as Buffer, 'copied by shard 1');
    const run = spawnMigrator({ ...endpoints(source, target), SHARD_COUNT: 2, SHARD_INDEX: 0, MIGRATION_MODE: 'live', SOURCE_READER: 'scan', LIVE_SWEEP_RATE: 0 }, tempDir());
    await run.waitFor('Live: applying changes', 30_000);
    // Their change first: by the time mine is applied, theirs has been seen (and left alone).
    await source.cmd('SET', theirs as Buffer, 'changed on the source');
    await source.cmd('SET', mine as Buffer, 'changed on the source');
    await waitUntil(async () => String(await target.cmd('GET', mine as Buffer)) === 'changed on the source', 'shard 0\'s change applied', 20_000, 50);
    run.signalScript('SIGINT');
    const result = await run.done;
    expect(result.code, describeRun(result)).toBe(0);
    expect(String(await target.cmd('GET', theirs as Buffer)), 'shard 1\'s key, left to shard 1').toBe('copied by shard 1');
  }, 60_000);

  it('SOURCE_SLOTS on an .rdb file read by our reader: only those slots copied', async () => {
    await source.cmd('SAVE');
    const file = { SOURCE_RDB_FILE: `${source.dir}/dump.rdb`, SOURCE_REDIS_DB_INDEX: 0, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0 };
    const run = await runMigrator({ ...file, SOURCE_SLOTS: '0-99,16000-16383' }, tempDir());
    const inside = keys.filter((k) => keySlot(k) <= 99 || keySlot(k) >= 16000);
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stdout).toContain('Only the keys in hash slots 0-99,16000-16383 (SOURCE_SLOTS)');
    expect(parseSummary(run.stdout).restored).toBe(inside.length);
    expect((await allKeys(target)).map(String).sort()).toEqual(inside.map(String).sort());
  }, 60_000);
});

describe('a shard of a cluster source', () => {
  let cluster: TestCluster;
  let target: RedisServer;
  beforeAll(async () => {
    [cluster, target] = await Promise.all([startCluster(), startRedis()]);
    const seed = await startRedis();
    try {
      await seed.cmd('DEBUG', 'POPULATE', 3000, 'key', 8);
      const ranges = (await (cluster.masters[0] as RedisServer).cmd('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      const ownerOf = (key: Buffer): RedisServer => {
        const slot = keySlot(key);
        const port = Number(ranges.find(([low, high]) => slot >= low && slot <= high)?.[2][1]);
        return cluster.nodes.find((n) => n.port === port) as RedisServer;
      };
      await Promise.all((await allKeys(seed)).map((key) => ownerOf(key).cmd('SET', key, 'value')));
    } finally {
      await seed.stop();
    }
  }, 90_000);
  afterAll(async () => {
    await Promise.all([cluster?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  for (const reader of ['scan', 'replication']) {
    it(`SOURCE_READER=${reader}: shard 1 of 2 reads only the masters owning slots 8192-16383, and copies only their keys there`, async () => {
      const first = cluster.masters[0] as RedisServer; // slots 0-5460: none of the shard's
      const before = await commandStats(first);
      const syncsBefore = await fullSyncs(first);
      const run = await runMigrator({ ...cluster.settings('SOURCE'), DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0, SOURCE_READER: reader, SHARD_COUNT: 2, SHARD_INDEX: 1 }, tempDir());
      expect(run.code, describeRun(run)).toBe(0);
      // Read before this test's own SCANs (allKeys) reach that master.
      expect(calls(await commandStats(first), 'scan') - calls(before, 'scan'), 'SCANs on a master with none of the slots').toBe(0);
      expect((await fullSyncs(first)) - syncsBefore, 'snapshots asked of that master').toBe(0);
      const all = (await Promise.all(cluster.masters.map(allKeys))).flat();
      const inside = all.filter((k) => keySlot(k) >= 8192);
      expect(parseSummary(run.stdout), describeRun(run)).toEqual({ restored: inside.length, skipped: 0, failed: 0, vanished: 0 });
      expect((await allKeys(target)).map(String).sort()).toEqual(inside.map(String).sort());
    }, 60_000);
  }
});

