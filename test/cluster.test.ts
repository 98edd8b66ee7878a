// Redis Cluster on either side, against real 3-master clusters on loopback: every combination and method
// copies every type with its TTL, skips what exists, follows a resharding mid-run, and fails clearly when misused.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calls, commandStats, describeRun, parseSummary } from './helpers/inspect.js';
import { keyspaceOf, ownerOf, restoreInto, startCluster, type TestCluster } from './helpers/cluster.js';
import { seedEveryType } from './helpers/sample-data.js';
import { runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer, type RunResult } from './helpers/servers.js';

const BULK_KEYS = 3000;
/** Small bounds, so big keys go the chunked way on a cluster too. */
const SMALL_BOUNDS = { COLLECTION_CHUNK_SIZE: 100, DUMP_MAX_BYTES: 4000, SLEEP_TIME: 0 };

let reference: RedisServer;
let standaloneTarget: RedisServer;
let sourceCluster: TestCluster;
let targetCluster: TestCluster;
let expected: Map<string, string>;

beforeAll(async () => {
  [reference, standaloneTarget, sourceCluster, targetCluster] = await Promise.all([startRedis(), startRedis(), startCluster(), startCluster()]);
  await seedEveryType(reference);
  await reference.cmd('DEBUG', 'POPULATE', BULK_KEYS, 'bulk', 16);
  await reference.cmd('RPUSH', 'big:list', ...Array.from({ length: 550 }, (_, i) => `item-${i}`));
  await reference.cmd('HSET', 'big:hash', ...Array.from({ length: 450 }, (_, i) => [`f${i}`, `v${i}`]).flat());
  await reference.cmd('PEXPIRE', 'big:hash', 3_600_000);
  expected = await keyspaceOf([reference]);
  expect(await restoreInto(sourceCluster, reference)).toBe(expected.size);
}, 90_000);

afterAll(async () => {
  await Promise.all([reference?.stop(), standaloneTarget?.stop(), sourceCluster?.stop(), targetCluster?.stop()]);
});

const standalone = (server: RedisServer, prefix: 'SOURCE' | 'DESTINATION'): Record<string, string | number> => ({
  [`${prefix}_REDIS_HOST`]: '127.0.0.1',
  [`${prefix}_REDIS_PORT`]: server.port,
});

async function emptied(servers: readonly RedisServer[]): Promise<void> {
  await Promise.all(servers.map((s) => s.cmd('FLUSHALL')));
}


interface Combination {
  name: string;
  source: () => Record<string, string | number>;
  target: () => Record<string, string | number>;
  targetNodes: () => RedisServer[];
}

const COMBINATIONS: Combination[] = [
  { name: 'standalone to cluster', source: () => standalone(reference, 'SOURCE'), target: () => targetCluster.settings('DESTINATION'), targetNodes: () => targetCluster.nodes },
  { name: 'cluster to standalone', source: () => sourceCluster.settings('SOURCE'), target: () => standalone(standaloneTarget, 'DESTINATION'), targetNodes: () => [standaloneTarget] },
  { name: 'cluster to cluster', source: () => sourceCluster.settings('SOURCE'), target: () => targetCluster.settings('DESTINATION'), targetNodes: () => targetCluster.nodes },
];

describe.each(COMBINATIONS)('$name', (combination) => {
  it.each(['dump', 'type'])('COPY_METHOD=%s copies every key, type, value and expiry; big keys in chunks', async (method) => {
    await emptied(combination.targetNodes());
    const run = await runMigrator({ ...combination.source(), ...combination.target(), ...SMALL_BOUNDS, COPY_METHOD: method }, tempDir());
    expect(run.code, describeRun(run)).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: expected.size, skipped: 0, failed: 0, vanished: 0 });
    expect(await keyspaceOf(combination.targetNodes())).toEqual(expected);
  });
});

describe('an .rdb file read natively into a cluster', () => {
  it('each key is RESTOREd on the node owning its slot, every type, value and expiry; a second run skips them all', async () => {
    await reference.cmd('SAVE');
    const file = { SOURCE_RDB_FILE: `${reference.dir}/dump.rdb`, RDB_READER: 'native', SOURCE_REDIS_DB_INDEX: 0, SLEEP_TIME: 0 };
    await emptied(targetCluster.nodes);
    const run = await runMigrator({ ...file, ...targetCluster.settings('DESTINATION') }, tempDir());
    expect(run.code, describeRun(run)).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: expected.size, skipped: 0, failed: 0, vanished: 0 });
    expect(await keyspaceOf(targetCluster.nodes)).toEqual(expected);
    const again = await runMigrator({ ...file, ...targetCluster.settings('DESTINATION') }, tempDir());
    expect(parseSummary(again.stdout)).toEqual({ restored: 0, skipped: expected.size, failed: 0, vanished: 0 });
  });
});

describe('cluster to cluster, again', () => {
  it('a second run skips every key and leaves a changed one alone; compare mode then finds exactly that key', async () => {
    const settings = { ...sourceCluster.settings('SOURCE'), ...targetCluster.settings('DESTINATION'), SLEEP_TIME: 0 };
    await emptied(targetCluster.nodes);
    expect((await runMigrator(settings, tempDir())).code).toBe(0);
    await (await ownerOf(targetCluster, 'string')).cmd('SET', 'string', 'changed on the target');

    const again = await runMigrator(settings, tempDir());
    expect(again.code, describeRun(again)).toBe(0);
    expect(parseSummary(again.stdout)).toEqual({ restored: 0, skipped: expected.size, failed: 0, vanished: 0 });
    expect(await (await ownerOf(targetCluster, 'string')).cmd('GET', 'string')).toBe('changed on the target');

    const compare = await runMigrator({ ...settings, MIGRATION_MODE: 'compare', SHOW_DIFFS: 'true' }, tempDir());
    expect(compare.code, describeRun(compare)).toBe(4);
    expect(compare.stdout).toContain(`0 missing, 0 type, 1 value, 0 ttl (${expected.size} keys checked, ${expected.size - 1} identical)`);
    expect(compare.stdout).toMatch(/^value \|string\|/m);
  });
});

describe('a cluster source with filters, and a dry run', () => {
  it('SCAN_MATCH_PATTERN and SCAN_TYPE apply on every master', async () => {
    await emptied([standaloneTarget]);
    const run = await runMigrator(
      { ...sourceCluster.settings('SOURCE'), ...standalone(standaloneTarget, 'DESTINATION'), SLEEP_TIME: 0, SCAN_MATCH_PATTERN: 'bulk:1*', SCAN_TYPE: 'string' },
      tempDir(),
    );
    const matching = [...expected.keys()].filter((hex) => Buffer.from(hex, 'hex').toString().startsWith('bulk:1')).length;
    expect(matching).toBeGreaterThan(1000);
    expect(run.code, describeRun(run)).toBe(0);
    expect(parseSummary(run.stdout).restored).toBe(matching);
    expect(Number(await standaloneTarget.cmd('DBSIZE'))).toBe(matching);
  });

  it('DRY_RUN=true on cluster to cluster reads every master and writes nothing', async () => {
    await emptied(targetCluster.nodes);
    const run = await runMigrator({ ...sourceCluster.settings('SOURCE'), ...targetCluster.settings('DESTINATION'), DRY_RUN: 'true' }, tempDir());
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stdout).toContain(`Would copy ${expected.size} keys; 0 already on the target would be skipped`);
    const sizes = await Promise.all(targetCluster.nodes.map((n) => n.cmd('DBSIZE')));
    expect(sizes.map(Number)).toEqual([0, 0, 0]);
  });
});

describe('resharding the target during a copy', () => {
  it('keys whose slot moves mid-run follow MOVED and ASK: none failed, none lost; a later run skips them all', async () => {
    await emptied(targetCluster.nodes);
    await Promise.all(targetCluster.nodes.map((n) => n.cmd('CONFIG', 'RESETSTAT')));
    // Big keys in chunks of 100, so some may be half written when their slot moves.
    const settings = { ...standalone(reference, 'SOURCE'), ...targetCluster.settings('DESTINATION'), ...SMALL_BOUNDS };
    const run = await copyWhileResharding(settings, targetCluster, targetCluster.nodes);

    expect(run.code, describeRun(run)).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: expected.size, skipped: 0, failed: 0, vanished: 0 });
    // redis-cli moves keys with MIGRATE, which carries expiries as relative TTLs: a moved key's may shift a ms.
    expectSameKeys(await keyspaceOf(targetCluster.nodes), expected, 5);
    // The tool read the slot map again after a MOVED (once at start would be one CLUSTER SLOTS call).
    const stats = await Promise.all(targetCluster.nodes.map(commandStats));
    expect(stats.reduce((sum, s) => sum + calls(s, 'cluster|slots'), 0)).toBeGreaterThan(1);

    const again = await runMigrator({ ...settings, SLEEP_TIME: 0 }, tempDir());
    expect(parseSummary(again.stdout)).toEqual({ restored: 0, skipped: expected.size, failed: 0, vanished: 0 });
  }, 120_000);
});

// After every test that compares with the source cluster's first contents: this moves its slots, and MIGRATE
// shifts a moved key's expiry by a millisecond or so.
describe('resharding the source during a copy', () => {
  it('reads moved keys where they went, and says the run may have missed keys: exit 1; a second run completes it', async () => {
    await emptied([standaloneTarget]);
    const settings = { ...sourceCluster.settings('SOURCE'), ...standalone(standaloneTarget, 'DESTINATION') };
    const run = await copyWhileResharding(settings, sourceCluster, [standaloneTarget]);

    expect(run.code, describeRun(run)).toBe(1);
    expect(run.stdout).toContain("The source cluster's slots moved during the run: keys that moved between masters may have been missed.");
    expect(parseSummary(run.stdout).failed, describeRun(run)).toBe(0);
    // What it copied is right: each key on the target equals the source's (a key MIGRATE moved after it was
    // copied may expire a millisecond later on the source now).
    const now = await keyspaceOf(sourceCluster.nodes);
    const copied = await keyspaceOf([standaloneTarget]);
    expectSameKeys(copied, new Map([...now].filter(([key]) => copied.has(key))), 5);

    const again = await runMigrator({ ...settings, SLEEP_TIME: 0 }, tempDir());
    expect(again.code, describeRun(again)).toBe(0);
    expectSameKeys(await keyspaceOf([standaloneTarget]), now, 5);
  }, 120_000);
});

/** Equal keys, types and contents; expiries within `toleranceMs`. */
function expectSameKeys(actual: Map<string, string>, wanted: Map<string, string>, toleranceMs: number): void {
  expect([...actual.keys()].sort()).toEqual([...wanted.keys()].sort());
  for (const [key, value] of wanted) {
    const [type, digest, at] = value.split(' ');
    const [theirType, theirDigest, theirAt] = (actual.get(key) ?? '').split(' ');
    expect(`${theirType} ${theirDigest}`, Buffer.from(key, 'hex').toString()).toBe(`${type} ${digest}`);
    expect(Math.abs(Number(theirAt) - Number(at)), Buffer.from(key, 'hex').toString()).toBeLessThanOrEqual(toleranceMs);
  }
}

describe('a slot being migrated on the target (ASK)', () => {
  it.each(['dump', 'type', 'native'])('COPY_METHOD=%s writes keys of a migrating slot to the importing node, with ASKING', async (method) => {
    await emptied(targetCluster.nodes);
    const moving = await startRedis();
    try {
      // Keys of one slot (one hash tag), some with an expiry.
      for (let i = 0; i < 40; i++) await moving.cmd('SET', `{moving}:${i}`, `value ${i}`, ...(i % 4 === 0 ? ['PX', '3600000'] : []));
      await moving.cmd('RPUSH', '{moving}:list', ...Array.from({ length: 300 }, (_, i) => `e${i}`));
      const owner = await ownerOf(targetCluster, '{moving}');
      const importer = targetCluster.nodes.find((n) => n !== owner) as RedisServer;
      const slot = Number(await owner.cmd('CLUSTER', 'KEYSLOT', '{moving}'));
      const [ownerId, importerId] = (await Promise.all([owner.cmd('CLUSTER', 'MYID'), importer.cmd('CLUSTER', 'MYID')])) as [string, string];
      await importer.cmd('CLUSTER', 'SETSLOT', slot, 'IMPORTING', ownerId);
      await owner.cmd('CLUSTER', 'SETSLOT', slot, 'MIGRATING', importerId);
      await importer.cmd('CONFIG', 'RESETSTAT');

      await moving.cmd('SAVE');
      // 'native': the same keys from an .rdb file by our reader, each RESTORE in the pipeline with ASKING before it.
      const source: Record<string, string | number> = method === 'native' ? { SOURCE_RDB_FILE: `${moving.dir}/dump.rdb`, RDB_READER: 'native', SOURCE_REDIS_DB_INDEX: 0 } : { ...standalone(moving, 'SOURCE'), COPY_METHOD: method };
      const run = await runMigrator({ ...source, ...targetCluster.settings('DESTINATION'), COLLECTION_CHUNK_SIZE: 100, SLEEP_TIME: 0 }, tempDir());
      // Finish the move as redis-cli would: the slot, and so the keys written there, now belong to the importer.
      for (const node of [importer, owner, ...targetCluster.nodes.filter((n) => n !== owner && n !== importer)]) {
        await node.cmd('CLUSTER', 'SETSLOT', slot, 'NODE', importerId);
      }

      expect(run.code, describeRun(run)).toBe(0);
      expect(parseSummary(run.stdout)).toEqual({ restored: 41, skipped: 0, failed: 0, vanished: 0 });
      expect(calls(await commandStats(importer), 'asking')).toBeGreaterThan(0);
      expect(Number(await importer.cmd('CLUSTER', 'COUNTKEYSINSLOT', slot))).toBe(41);
      expect(await keyspaceOf(targetCluster.nodes)).toEqual(await keyspaceOf([moving]));
    } finally {
      await moving.stop();
    }
  });
});

/**
 * A copy slowed down (10 keys a batch, 20 ms pauses) so that 3,000 slots of `cluster` move from its first
 * master to its second while keys are being copied: the resharding begins once the first keys are on the
 * `target` servers, and the test fails if the copy had ended by then.
 */
async function copyWhileResharding(settings: Record<string, string | number>, cluster: TestCluster, target: readonly RedisServer[]): Promise<RunResult> {
  const [from, to] = (await Promise.all(cluster.nodes.slice(0, 2).map((n) => n.cmd('CLUSTER', 'MYID')))) as [string, string];
  const copying = spawnMigrator({ ...settings, PIPELINE_BATCH_SIZE: 10, SLEEP_TIME: 0.02 }, tempDir());
  let ended = false;
  void copying.done.then(() => (ended = true));
  const copied = async (): Promise<number> => (await Promise.all(target.map((s) => s.cmd('DBSIZE')))).reduce((sum: number, n) => sum + Number(n), 0);
  await waitUntil(async () => ended || (await copied()) > 0, 'the first keys on the target', 30_000, 20);
  expect(ended, `the copy ended before the resharding began\n${copying.output()}`).toBe(false);
  await reshard(cluster, from, to, 3000);
  return copying.done;
}

/** Moves `slots` slots from one master to another with redis-cli, keys and all (MIGRATE, then SETSLOT). */
function reshard(cluster: TestCluster, from: string, to: string, slots: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = ['--cluster', 'reshard', `127.0.0.1:${cluster.nodes[0]?.port}`, '--cluster-from', from, '--cluster-to', to,
      '--cluster-slots', String(slots), '--cluster-yes', '--cluster-pipeline', '10'];
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let errors = '';
    child.stderr.on('data', (d: Buffer) => (errors += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli --cluster reshard failed (${code}): ${errors}`))));
  });
}

describe('misuse, in one line with exit status 1', () => {
  it('a cluster node without DESTINATION_REDIS_CLUSTER=true', async () => {
    const run = await runMigrator({ ...standalone(reference, 'SOURCE'), ...standalone(targetCluster.nodes[0] as RedisServer, 'DESTINATION') }, tempDir());
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^Error connecting to Redis : destination 127\.0\.0\.1:\d+: this is a Redis Cluster node; set DESTINATION_REDIS_CLUSTER=true/);
  });

  it('SOURCE_REDIS_CLUSTER=true for a standalone server', async () => {
    const run = await runMigrator({ ...standalone(reference, 'SOURCE'), SOURCE_REDIS_CLUSTER: 'true', ...standalone(standaloneTarget, 'DESTINATION') }, tempDir());
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^Error connecting to Redis : source 127\.0\.0\.1:\d+: not a Redis Cluster node .*set SOURCE_REDIS_CLUSTER=false/);
  });

  it('an .rdb file with keys in two databases into a cluster (RDB_READER=server; the default reader: test/rdb-file-modes.test.ts): refused unless SOURCE_REDIS_DB_INDEX picks one', async () => {
    const saved = await startRedis();
    try {
      await saved.cmd('SET', 'in-db-0', 'zero');
      await saved.cmd('SELECT', 3);
      await saved.cmd('MSET', 'in-db-3:a', 'a', 'in-db-3:b', 'b');
      await saved.cmd('SAVE');
      const file = `${saved.dir}/dump.rdb`;
      await emptied(targetCluster.nodes);
      const refused = await runMigrator({ ...targetCluster.settings('DESTINATION'), SOURCE_RDB_FILE: file, RDB_READER: 'server', SLEEP_TIME: 0 }, tempDir());
      expect(refused.code, describeRun(refused)).toBe(1);
      expect(refused.stdout).toMatch(/^Error loading SOURCE_RDB_FILE : .*dump\.rdb has keys in databases 0, 3, and DESTINATION_REDIS_CLUSTER=true takes database 0 only: set SOURCE_REDIS_DB_INDEX/m);

      const chosen = await runMigrator({ ...targetCluster.settings('DESTINATION'), SOURCE_RDB_FILE: file, SOURCE_REDIS_DB_INDEX: 3, SLEEP_TIME: 0 }, tempDir());
      expect(chosen.code, describeRun(chosen)).toBe(0);
      expect(parseSummary(chosen.stdout).restored).toBe(2);
      expect(await (await ownerOf(targetCluster, 'in-db-3:a')).cmd('GET', 'in-db-3:a')).toBe('a');
    } finally {
      await saved.stop();
    }
  });

  it('a db index other than 0 on a cluster side, before connecting', async () => {
    const run = await runMigrator({ ...targetCluster.settings('DESTINATION'), ...standalone(reference, 'SOURCE'), DESTINATION_REDIS_DB_INDEX: 2 }, tempDir());
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('Error in settings : DESTINATION_REDIS_DB_INDEX must select database 0 with DESTINATION_REDIS_CLUSTER=true (a cluster has no other), got 2\n');
  });
});
