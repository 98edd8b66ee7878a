// Failovers mid-copy, between two real 3-master clusters with one replica per master: a replica of a target
// or a source master taking over (CLUSTER FAILOVER), and a target master killed so that the cluster promotes
// its replica. The run rides through each, exits 0, and the target then holds exactly the source's keys,
// compared key by key without the tool.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDir } from './helpers/fixtures.js';
import { describeRun, parseSummary } from './helpers/inspect.js';
import { spawnMigrator, type LocalServer, type RedisServer, type RunningMigrator, type RunResult } from './helpers/servers.js';
import { failOver, keyspaceOf, promoted, startCluster, waitUntil, type TestCluster } from './helpers/cluster.js';

const KEYS = 40_000;
const LISTS = 3;
const LIST_LENGTH = 3000;
const TOTAL = KEYS + LISTS;
/** Small batches and chunks, so that a fault lands mid-run and the big lists go over in pieces. */
const PACE = { SLEEP_TIME: 0, PIPELINE_BATCH_SIZE: 100, COLLECTION_CHUNK_SIZE: 200, DUMP_MAX_BYTES: 10_000 };
/** Failovers within a few seconds: a dead master is marked failed after 2 s. */
const REPLICATED = { replicas: 1, nodeTimeoutMs: 2000 };

let source: TestCluster;
let target: TestCluster;
let expected: Map<string, string>;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(3, REPLICATED), startCluster(3, REPLICATED)]);
  await seed(source);
  expected = await keyspaceOf(await source.servingMasters());
  expect(expected.size).toBe(TOTAL);
}, 60_000);

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
});

/** CRC16/XMODEM, the cluster's key hash, written out here so the seeding does not lean on the tool's own. */
function keySlot(key: string): number {
  const tag = /\{([^}]+)\}/.exec(key)?.[1] ?? key;
  let crc = 0;
  for (const byte of Buffer.from(tag)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/** Writes the keys straight to the master that owns each (a tenth with an expiry), then waits for the replicas. */
async function seed(cluster: TestCluster): Promise<void> {
  const ranges = (await (cluster.masters[0] as RedisServer).cmd('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
  const ownerOf = (key: string): LocalServer => {
    const slot = keySlot(key);
    const port = ranges.find(([low, high]) => slot >= low && slot <= high)?.[2][1];
    return cluster.nodes.find((n) => n.port === Number(port)) as LocalServer;
  };
  for (let first = 0; first < KEYS; first += 5000) {
    await Promise.all(
      Array.from({ length: Math.min(5000, KEYS - first) }, (_, i) => {
        const key = `key:${first + i}`;
        const expiry = (first + i) % 10 === 0 ? ['PXAT', String(4102444800000 + first + i)] : [];
        return ownerOf(key).client.sendCommand(['SET', key, `value ${first + i}`, ...expiry]);
      }),
    );
  }
  for (let i = 0; i < LISTS; i++) {
    const key = `big:list:${i}`;
    await ownerOf(key).cmd('RPUSH', key, ...Array.from({ length: LIST_LENGTH }, (_, j) => `element ${j} of list ${i}`));
  }
  await replicasCaughtUp(cluster);
}

/** Each replica has applied everything its master wrote (the same replication offset). */
async function replicasCaughtUp(cluster: TestCluster): Promise<void> {
  const offset = async (node: RedisServer, field: string): Promise<number> => Number(new RegExp(`${field}:(\\d+)`).exec(String(await node.cmd('INFO', 'replication')))?.[1] ?? -1);
  for (const master of await cluster.servingMasters()) {
    for (const replica of await cluster.replicasOf(master)) {
      await waitUntil(async () => (await offset(replica, 'slave_repl_offset')) >= (await offset(master, 'master_repl_offset')), `replica ${replica.port} of ${master.port} caught up`);
    }
  }
}

async function keysOn(cluster: TestCluster): Promise<number> {
  const sizes = await Promise.all((await cluster.servingMasters()).map((m) => m.cmd('DBSIZE')));
  return sizes.reduce((sum: number, size) => sum + Number(size), 0);
}

/** An empty target, its replicas included, before each run. */
async function emptyTarget(): Promise<void> {
  const masters = await target.servingMasters();
  await Promise.all(masters.map((m) => m.cmd('FLUSHALL')));
  await replicasCaughtUp(target);
  expect(await keysOn(target)).toBe(0);
}

/** The progress line's note while the run waits for a cluster that is down. */
const WAITING_FOR_CLUSTER = /; waiting: a cluster that is down \(.*cluster is down.*\), for [\d.]+ s/;


/**
 * A copy from the source cluster to the (emptied) target cluster, and `fault` once a fifth of the keys are on
 * the target; fails the test when the run ended before the fault was over, as it would then prove nothing.
 */
async function copyDuring(fault: (run: RunningMigrator) => Promise<unknown>): Promise<RunResult> {
  await emptyTarget();
  const run = spawnMigrator({ ...source.settings('SOURCE'), ...target.settings('DESTINATION'), ...PACE }, runDir());
  let ended = false;
  void run.done.then(() => (ended = true));
  await waitUntil(async () => ended || (await keysOn(target)) >= TOTAL / 5, 'a fifth of the keys on the target', 30_000, 20);
  expect(ended, `the run ended before the fault\n${run.output()}`).toBe(false);
  await fault(run);
  expect(ended, `the run ended before the fault was over; the test proves nothing\n${run.output()}`).toBe(false);
  return run.done;
}

describe('a failover in a cluster during a copy between clusters', () => {
  it('CLUSTER FAILOVER on a replica of a target master: every key copied once, none failed, the target equals the source', async () => {
    const master = target.masters[1] as LocalServer;
    const run = await copyDuring(() => failOver(target, master));
    expect(run.code, describeRun(run)).toBe(0);
    expect(parseSummary(run.stdout), describeRun(run)).toEqual({ restored: TOTAL, skipped: 0, failed: 0, vanished: 0 });
    expect(await target.servingMasters(), 'the old master serves no slots now').not.toContain(master);
    expect(await keyspaceOf(await target.servingMasters())).toEqual(expected);
  }, 60_000);

  it('CLUSTER FAILOVER on a replica of a source master: no "slots moved", none failed, the target equals the source', async () => {
    const master = source.masters[0] as LocalServer;
    const run = await copyDuring(() => failOver(source, master));
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stdout).not.toMatch(/slots moved/);
    const counts = parseSummary(run.stdout);
    expect(counts.failed, describeRun(run)).toBe(0);
    expect(counts.vanished, describeRun(run)).toBe(0);
    // Each key restored once; should a scan start over on the new master, what it had copied counts as skipped.
    expect(counts.restored, describeRun(run)).toBe(TOTAL);
    expect(await source.servingMasters(), 'the old master serves no slots now').not.toContain(master);
    expect(await keyspaceOf(await source.servingMasters()), 'the source lost nothing in its failover').toEqual(expected);
    expect(await keyspaceOf(await target.servingMasters())).toEqual(expected);
  }, 60_000);

  it('the target cluster down (a slot served by no node, as while a failover is under way) until the run says it waits: it finishes, none failed', async () => {
    const slot = keySlot('key:1');
    const nodes = target.nodes;
    const ranges = (await (target.masters[0] as LocalServer).cmd('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const ownerPort = Number(ranges.find(([low, high]) => slot >= low && slot <= high)?.[2][1]);
    const slotOwner = nodes.find((n) => n.port === ownerPort) as LocalServer;
    const run = await copyDuring(async (running) => {
      await Promise.all(nodes.map((n) => n.cmd('CLUSTER', 'DELSLOTS', slot)));
      await waitUntil(async () => String(await slotOwner.cmd('CLUSTER', 'INFO')).includes('cluster_state:fail'), 'cluster_state:fail', 5000, 20);
      // Down until a progress line (one every 5 s without a terminal) says the run waits for it.
      await waitUntil(async () => WAITING_FOR_CLUSTER.test(running.output()), 'a progress line saying the run waits for the cluster', 30_000, 50);
      await slotOwner.cmd('CLUSTER', 'ADDSLOTS', slot);
    });
    await waitUntil(async () => (await Promise.all(nodes.map(async (n) => String(await n.cmd('CLUSTER', 'INFO')).includes('cluster_state:ok')))).every(Boolean), 'cluster_state:ok on every node', 10_000, 50);
    expect(run.code, describeRun(run)).toBe(0);
    expect(parseSummary(run.stdout), describeRun(run)).toEqual({ restored: TOTAL, skipped: 0, failed: 0, vanished: 0 });
    expect(run.stderr, describeRun(run)).toMatch(WAITING_FOR_CLUSTER);
    expect(await keyspaceOf(await target.servingMasters())).toEqual(expected);
  }, 60_000);

  // Last: the killed node stays dead, so its shard has no replica any more.
  it('a target master killed (SIGKILL), its replica promoted by the cluster: the run reconnects and finishes, the target equals the source', async () => {
    const master = target.masters[2] as LocalServer;
    const [replica] = await target.replicasOf(master);
    if (!replica) throw new Error(`${master.port} has no replica`);
    const run = await copyDuring(async () => {
      process.kill(master.pid, 'SIGKILL');
      await waitUntil(async () => !master.client.isReady, `${master.port} gone`, 5000, 20);
      // node-timeout (2 s) before the others mark it failed, then the replica's election.
      await promoted(target, replica, 20_000);
    });
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stdout, describeRun(run)).toMatch(/Reconnected \d+ time\(s\) after a lost connection/);
    // A promoted replica may lack the dead master's last writes: the run says so and says how to check.
    expect(run.stdout, describeRun(run)).toMatch(/^The target restarted or failed over during the run: .*MIGRATION_MODE=compare$/m);
    expect(parseSummary(run.stdout), describeRun(run)).toEqual({ restored: TOTAL, skipped: 0, failed: 0, vanished: 0 });
    const serving = await target.servingMasters();
    expect(serving).not.toContain(master);
    expect(serving).toContain(replica);
    expect(await keyspaceOf(serving)).toEqual(expected);
  }, 60_000);
});
