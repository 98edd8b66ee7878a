// SOURCE_READ_FROM=replica|replica_preferred: every read of the source goes to a replica of each master, counted
// on each server's INFO commandstats: a standalone master with its replica (SCAN, the replication link, live
// events), a cluster whose masters each have one, and a master with none.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { onlineReplicas } from '../lib/net/side.js';
import { keyspaceOf, startCluster, type TestCluster } from './helpers/cluster.js';
import { calls, commandStats, describeRun, fullSyncs, parseSummary } from './helpers/inspect.js';
import { endpoints, runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer } from './helpers/servers.js';

const READS = ['scan', 'dump', 'eval', 'evalsha', 'type', 'pttl', 'psubscribe', 'subscribe'];
const readsOn = async (server: RedisServer): Promise<number> => {
  const stats = await commandStats(server);
  return READS.reduce((sum, command) => sum + calls(stats, command), 0);
};

describe('onlineReplicas', () => {
  it('reads INFO replication\'s replica lines, online ones only', () => {
    const info = 'role:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.5,port=6380,state=online,offset=1234,lag=0\r\nslave1:ip=10.0.0.6,port=6381,state=wait_bgsave,offset=0,lag=3\r\nmaster_repl_offset:1300\r\n';
    expect(onlineReplicas(info)).toEqual([{ host: '10.0.0.5', port: 6380, offset: 1234, lag: 0 }]);
  });
});

describe('a standalone master and its replica', () => {
  let master: RedisServer;
  let replica: RedisServer;
  let target: RedisServer;
  beforeAll(async () => {
    master = await startRedis();
    // Before the replica attaches: DEBUG POPULATE is not replicated, the full sync carries its keys.
    await master.cmd('DEBUG', 'POPULATE', 2000, 'key', 8);
    [replica, target] = await Promise.all([startRedis(['--replicaof', '127.0.0.1', String(master.port), '--notify-keyspace-events', 'KEA']), startRedis()]);
    await waitUntil(async () => Number(await replica.cmd('DBSIZE')) === 2000 && /master_link_status:up/.test(String(await replica.cmd('INFO', 'replication'))), 'the replica in sync');
  });
  afterAll(async () => {
    await Promise.all([master?.stop(), replica?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
    await Promise.all([master.cmd('CONFIG', 'RESETSTAT'), replica.cmd('CONFIG', 'RESETSTAT')]);
  });

  it('SOURCE_READER=scan: the replica serves every read, the master none; the run says which replica, and how far behind it is', async () => {
    const run = await runMigrator({ ...endpoints(master, target), SOURCE_READ_FROM: 'replica', SOURCE_READER: 'scan', VERIFY: 'true' }, tempDir());
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^Reading source 127\\.0\\.0\\.1:${replica.port}, a replica of source 127\\.0\\.0\\.1:${master.port} \\(SOURCE_READ_FROM=replica; \\d+ bytes behind\\)$`, 'm'));
    expect(parseSummary(run.stdout).restored).toBe(2000);
    expect(await readsOn(master), 'reads on the master').toBe(0);
    expect(await readsOn(replica), 'reads on the replica').toBeGreaterThan(0);
    expect(await keyspaceOf([target])).toEqual(await keyspaceOf([master]));
  }, 60_000);

  it('SOURCE_READER=replication: the snapshot comes from the replica (a chained replica), the master forks nothing', async () => {
    const [masterSyncs, replicaSyncs] = [await fullSyncs(master), await fullSyncs(replica)];
    const run = await runMigrator({ ...endpoints(master, target), SOURCE_READ_FROM: 'replica', SOURCE_READER: 'replication' }, tempDir());
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stdout).toContain(`one snapshot by PSYNC from source 127.0.0.1:${replica.port}`);
    expect(parseSummary(run.stdout).restored).toBe(2000);
    expect(await fullSyncs(master)).toBe(masterSyncs);
    expect(await fullSyncs(replica)).toBe(replicaSyncs + 1);
  }, 60_000);

  it('live: keyspace events come from the replica; a change on the master reaches the target', async () => {
    const run = spawnMigrator({ ...endpoints(master, target), SOURCE_READ_FROM: 'replica', MIGRATION_MODE: 'live', SOURCE_READER: 'scan' }, tempDir());
    await run.waitFor('Live: applying changes', 30_000);
    await master.cmd('SET', 'key:changed', 'on the master');
    await waitUntil(async () => String(await target.cmd('GET', 'key:changed')) === 'on the master', 'the change applied', 20_000, 50);
    run.signalScript('SIGINT');
    const result = await run.done;
    expect(result.code, describeRun(result)).toBe(0);
    expect(await readsOn(master), 'reads and subscriptions on the master').toBe(0);
    await master.cmd('DEL', 'key:changed');
  }, 60_000);

  it('a master with no replica: SOURCE_READ_FROM=replica stops in one line; replica_preferred reads the master and says so', async () => {
    // The empty server has no replica; the other side is only read (a dry run writes nothing).
    const lone = { SOURCE_REDIS_HOST: '127.0.0.1', SOURCE_REDIS_PORT: target.port, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: master.port, SLEEP_TIME: 0, DRY_RUN: 'true' };
    const refused = await runMigrator({ ...lone, SOURCE_READ_FROM: 'replica' }, tempDir());
    expect(refused.code, describeRun(refused)).toBe(1);
    expect(refused.stdout).toContain(`source 127.0.0.1:${target.port} has no replica online that answers (INFO replication), and SOURCE_READ_FROM=replica; set SOURCE_READ_FROM=replica_preferred to read the master then`);
    const preferred = await runMigrator({ ...lone, SOURCE_READ_FROM: 'replica_preferred' }, tempDir());
    expect(preferred.code, describeRun(preferred)).toBe(0);
    expect(preferred.stdout).toContain(`Warning: source 127.0.0.1:${target.port} has no replica online that answers: reading the master itself (SOURCE_READ_FROM=replica_preferred)`);
  }, 60_000);
});

describe('a cluster whose masters each have a replica', () => {
  let cluster: TestCluster;
  let target: RedisServer;
  beforeAll(async () => {
    [cluster, target] = await Promise.all([startCluster(3, { replicas: 1 }), startRedis()]);
    const seed = cluster.masters[0] as RedisServer;
    const ranges = (await seed.cmd('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    await Promise.all(Array.from({ length: 600 }, async (_, i) => {
      const key = `{${i}}:key`;
      const slot = Number(await seed.cmd('CLUSTER', 'KEYSLOT', key));
      const port = Number(ranges.find(([low, high]) => slot >= low && slot <= high)?.[2][1]);
      await (cluster.nodes.find((n) => n.port === port) as RedisServer).cmd('SET', key, String(i));
    }));
    await waitUntil(async () => (await Promise.all(cluster.replicas.map((r) => r.cmd('DBSIZE')))).reduce<number>((a, b) => a + Number(b), 0) === 600, 'the replicas in sync');
  }, 90_000);
  afterAll(async () => {
    await Promise.all([cluster?.stop(), target?.stop()]);
  });

  it('SOURCE_READ_FROM=replica: each master\'s slots are read from its replica (READONLY); no master serves a read', async () => {
    await Promise.all(cluster.nodes.map((n) => n.cmd('CONFIG', 'RESETSTAT')));
    const run = await runMigrator({ ...cluster.settings('SOURCE'), DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0, SOURCE_READ_FROM: 'replica', SOURCE_READER: 'scan' }, tempDir());
    expect(run.code, describeRun(run)).toBe(0);
    expect(parseSummary(run.stdout).restored).toBe(600);
    expect((run.stdout.match(/^Reading source .*, a replica of source /gm) ?? []).length).toBe(3);
    for (const master of cluster.masters) expect(calls(await commandStats(master), 'scan'), `SCAN on master ${master.port}`).toBe(0);
    for (const replica of cluster.replicas) expect(calls(await commandStats(replica), 'scan'), `SCAN on replica ${replica.port}`).toBeGreaterThan(0);
  }, 60_000);
});
