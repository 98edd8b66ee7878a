// KEY_PREFIX_STRIP and KEY_PREFIX_ADD: keys renamed on the way, byte for byte. The real script against real
// servers: every reader and method, big keys in chunks, verification and compare under the new names, a file,
// a cluster target (the new name decides the slot) and live mode; keys without the prefix left out and counted.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KeyNames } from '../lib/records.js';
import { parseSettings } from '../lib/settings.js';
import { keyspaceOf, startCluster, type TestCluster } from './helpers/cluster.js';
import { countOf, describeRun, parseSummary } from './helpers/inspect.js';
import { seedEveryType } from './helpers/sample-data.js';
import { endpoints, runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer } from './helpers/servers.js';

const RENAME = { KEY_PREFIX_STRIP: 'app:', KEY_PREFIX_ADD: 'v2:' };
const names = new KeyNames(Buffer.from('app:'), Buffer.from('v2:'));

/** The source's keys the run covers, under their new names, as keyspaceOf shows them. */
function renamed(source: Map<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [hex, value] of source) {
    const key = Buffer.from(hex, 'hex');
    if (names.covers(key)) out.set(names.toTarget(key).toString('hex'), value);
  }
  return out;
}

describe('KeyNames', () => {
  it('strips and adds byte for byte, and knows which target keys are the run\'s', () => {
    const binary = Buffer.from([0x61, 0x70, 0x70, 0x3a, 0xff, 0x00, 0x7b]);
    expect(names.covers(binary)).toBe(true);
    expect(names.toTarget(binary)).toEqual(Buffer.from([0x76, 0x32, 0x3a, 0xff, 0x00, 0x7b]));
    expect(names.toSource(names.toTarget(binary))).toEqual(binary);
    expect(names.covers(Buffer.from('ap'))).toBe(false);
    expect(names.toSource(Buffer.from('other:1'))).toBeUndefined();
    const none = parseSettings({}).names;
    expect(none.renames).toBe(false);
    expect(none.toTarget(binary)).toBe(binary);
    // A prefix only added: every key is the run's.
    const added = parseSettings({ KEY_PREFIX_ADD: 'copy:' }).names;
    expect(added.covers(Buffer.from('x'))).toBe(true);
    expect(String(added.toTarget(Buffer.from('x')))).toBe('copy:x');
  });
});

describe('renaming between two servers', () => {
  let source: RedisServer;
  let target: RedisServer;
  let others: number;
  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await seedEveryType(source, 'app:');
    others = await seedEveryType(source, 'other:');
    // Big enough for chunks with the bounds below.
    await source.cmd('HSET', 'app:big', ...Array.from({ length: 600 }, (_, i) => [`f${i}`, `v${i}`]).flat());
    await source.cmd('PEXPIRE', 'app:big', 3_600_000);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  for (const [reader, method] of [['scan', 'dump'], ['scan', 'type'], ['replication', 'auto']] as const) {
    it(`SOURCE_READER=${reader}, COPY_METHOD=${method}: each app: key as v2:, values and expiries exact, big keys in chunks; the others left out and counted; verified`, async () => {
      const run = await runMigrator({ ...endpoints(source, target), ...RENAME, SOURCE_READER: reader, COPY_METHOD: method, DUMP_MAX_BYTES: 2000, COLLECTION_CHUNK_SIZE: 100, VERIFY: 'true' }, tempDir());
      expect(run.code, describeRun(run)).toBe(0);
      const expected = renamed(await keyspaceOf([source]));
      expect(parseSummary(run.stdout)).toEqual({ restored: expected.size, skipped: 0, failed: 0, vanished: 0 });
      expect(countOf(run.stdout, 'excluded')).toBe(others);
      expect(run.stdout).toMatch(/^Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl/m);
      expect(await keyspaceOf([target])).toEqual(expected);
    }, 60_000);
  }

  it('compare reads the target under the new names: equal after a copy, a changed key found; a second copy skips every key', async () => {
    const copied = await runMigrator({ ...endpoints(source, target), ...RENAME }, tempDir());
    expect(copied.code, describeRun(copied)).toBe(0);
    const again = await runMigrator({ ...endpoints(source, target), ...RENAME }, tempDir());
    expect(parseSummary(again.stdout).skipped).toBe(parseSummary(copied.stdout).restored);
    const same = await runMigrator({ ...endpoints(source, target), ...RENAME, MIGRATION_MODE: 'compare' }, tempDir());
    expect(same.code, describeRun(same)).toBe(0);
    await target.cmd('HSET', 'v2:big', 'f1', 'changed');
    const changed = await runMigrator({ ...endpoints(source, target), ...RENAME, MIGRATION_MODE: 'compare' }, tempDir());
    expect(changed.code, describeRun(changed)).toBe(4);
    expect(changed.stdout).toMatch(/0 missing, 0 type, 1 value, 0 ttl/);
  }, 60_000);

  it('an .rdb file read by our reader: renamed the same way', async () => {
    await source.cmd('SAVE');
    const run = await runMigrator({ SOURCE_RDB_FILE: `${source.dir}/dump.rdb`, SOURCE_REDIS_DB_INDEX: 0, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0, ...RENAME, VERIFY: 'true' }, tempDir());
    expect(run.code, describeRun(run)).toBe(0);
    expect(await keyspaceOf([target])).toEqual(renamed(await keyspaceOf([source])));
  }, 60_000);

  it('live: a change to app:x reaches v2:x, a deletion deletes v2:x; other keys of the target are not the run\'s', async () => {
    await source.cmd('CONFIG', 'SET', 'notify-keyspace-events', 'KEA');
    await source.cmd('SET', 'app:live', 'first');
    await target.cmd('SET', 'unrelated', 'stays');
    const run = spawnMigrator({ ...endpoints(source, target), ...RENAME, MIGRATION_MODE: 'live', SOURCE_READER: 'scan', LIVE_SWEEP_RATE: 0 }, tempDir());
    await run.waitFor('Live: applying changes', 30_000);
    await source.cmd('SET', 'app:live', 'second');
    await source.cmd('DEL', 'app:string');
    await waitUntil(async () => String(await target.cmd('GET', 'v2:live')) === 'second' && Number(await target.cmd('EXISTS', 'v2:string')) === 0, 'the change and the deletion applied under v2:', 20_000, 50);
    run.signalScript('SIGINT');
    const result = await run.done;
    expect(result.code, describeRun(result)).toBe(0);
    expect(String(await target.cmd('GET', 'unrelated'))).toBe('stays');
    // The snapshot's summary counts the keys without the prefix, as a copy's does.
    expect(result.stdout).toContain(`Snapshot: Number of excluded keys: ${others}\n`);
    expect(Number(await target.cmd('EXISTS', 'app:live'))).toBe(0);
    await source.cmd('DEL', 'app:live');
    await source.cmd('SET', 'app:string', 'hello');
  }, 60_000);
});

describe('renaming, live, a deletion whose event never came', () => {
  let source: RedisServer;
  let target: RedisServer;
  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(['--notify-keyspace-events', 'KEA']), startRedis()]);
    await seedEveryType(source, 'app:');
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('the repair sweep finds v2:x on the target for an app:x gone from the source, and deletes it', async () => {
    const run = spawnMigrator({ ...endpoints(source, target), ...RENAME, MIGRATION_MODE: 'live', SOURCE_READER: 'scan', LIVE_SWEEP_RATE: 0 }, tempDir());
    await run.waitFor('Live: applying changes', 30_000);
    expect(Number(await target.cmd('EXISTS', 'v2:hash'))).toBe(1);
    // A deletion with no event, then a lost subscription: a gap, which a full repair sweep covers.
    await source.cmd('CONFIG', 'SET', 'notify-keyspace-events', '');
    await source.cmd('DEL', 'app:hash');
    await source.cmd('CONFIG', 'SET', 'notify-keyspace-events', 'KEA');
    await source.cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    // No idle timeout to race: the cutover comes once the sweep has repaired the key, however slow the machine.
    await waitUntil(async () => Number(await target.cmd('EXISTS', 'v2:hash')) === 0, 'the stale key repaired away', 30_000, 50);
    run.signalScript('SIGINT');
    const result = await run.done;
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).toMatch(/each was covered by a repair sweep/);
    expect(Number(await target.cmd('EXISTS', 'v2:hash')), 'the stale key, repaired away').toBe(0);
    expect(await keyspaceOf([target])).toEqual(renamed(await keyspaceOf([source])));
  }, 60_000);
});

describe('renaming into a cluster', () => {
  let source: RedisServer;
  let cluster: TestCluster;
  beforeAll(async () => {
    [source, cluster] = await Promise.all([startRedis(), startCluster()]);
    await source.cmd('EVAL', "for i = 1, 300 do redis.call('SET', 'app:' .. i, i) end return 1", 0);
    await source.cmd('RPUSH', 'app:biglist', ...Array.from({ length: 500 }, (_, i) => `item-${i}`));
  }, 90_000);
  afterAll(async () => {
    await Promise.all([source?.stop(), cluster?.stop()]);
  });

  it('each key lands on the master of its new name\'s slot, big keys built there too; verified', async () => {
    const run = await runMigrator({ SOURCE_REDIS_HOST: '127.0.0.1', SOURCE_REDIS_PORT: source.port, ...cluster.settings('DESTINATION'), SLEEP_TIME: 0, ...RENAME, DUMP_MAX_BYTES: 1000, COLLECTION_CHUNK_SIZE: 100, VERIFY: 'true' }, tempDir());
    expect(run.code, describeRun(run)).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 301, skipped: 0, failed: 0, vanished: 0 });
    expect(await keyspaceOf(cluster.masters)).toEqual(renamed(await keyspaceOf([source])));
  }, 60_000);
});
