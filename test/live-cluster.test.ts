// MIGRATION_MODE=live from a Redis Cluster with replicas into another cluster: every master's events followed,
// and a source master failed over mid-run (a new master to subscribe to, a gap to sweep); the target converges.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDir } from './helpers/fixtures.js';
import { startLoad } from './helpers/load.js';
import { endpoints, type LocalServer, spawnMigrator, startRedis, waitUntil } from './helpers/servers.js';
import { failOver, keyspaceOf, ownerOf, startCluster, type TestCluster } from './helpers/cluster.js';

let source: TestCluster;
let target: TestCluster;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(3, { replicas: 1, nodeTimeoutMs: 2000 }), startCluster(3)]);
  await Promise.all(source.nodes.map((node) => node.cmd('CONFIG', 'SET', 'notify-keyspace-events', 'KEA')));
}, 60_000);

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
});

async function write(from: number, count: number, value: string): Promise<void> {
  for (let i = from; i < from + count; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, from + count - i) }, async (_, j) => {
      const key = `key:${i + j}`;
      return (await ownerOf(source, key)).client.sendCommand(['SET', key, `${value}-${i + j}`]);
    }));
  }
}

describe('live replication from a cluster', () => {
  it('changes on every master applied; a master failed over mid-run is followed (a gap, swept); converged; exit 0 at the cutover', async () => {
    await write(0, 1000, 'seed');
    const dir = runDir();
    const run = spawnMigrator({
      ...source.settings('SOURCE'), ...target.settings('DESTINATION'), MIGRATION_MODE: 'live', SOURCE_READER: 'scan', SLEEP_TIME: 0, PROGRESS: 'off', LIVE_SWEEP_RATE: 0,
    }, dir);
    await waitUntil(async () => run.output().includes('Live: applying changes'), 'the live phase', 30_000, 50);
    expect(run.output()).toMatch(/Live: subscribed to the source's keyspace events on 3 master\(s\)/);
    await write(0, 300, 'before-failover');
    // The load writer too, routed by slot over every master, through the failover.
    // No expiries: the two keyspaces are compared as a whole, at moments the servers expire keys on their own.
    const load = startLoad({ port: (source.masters[1] as LocalServer).port, cluster: true, rate: 1000, duration: 4, keys: 1000, pxPercent: 0, mix: { expire: 0, pexpire: 0 } });
    const old = source.masters[0] as LocalServer;
    const promoted = await failOver(source, old);
    await write(0, 1000, 'after-failover');
    await write(1000, 200, 'new');
    await load.done;
    // The old master, a replica now, still sends events for what it replicates; the run finds the new master (a gap)
    // within a second and subscribes to its events there.
    await waitUntil(async () => Number(await promoted.cmd('PUBSUB', 'NUMPAT')) > 0, "the run subscribed to the new master's events", 20_000, 50);
    const expected = async (): Promise<Map<string, string>> => keyspaceOf(await source.servingMasters());
    await waitUntil(async () => JSON.stringify([...(await expected())].sort()) === JSON.stringify([...(await keyspaceOf(await target.servingMasters()))].sort()), 'the target to converge', 40_000, 200);
    run.signalScript('SIGTERM');
    const result = await run.done;
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout, result.stdout).toMatch(/Gaps in the source's events: \d+ \(.*is a new master \(failover or resharding\)/);
    expect((await keyspaceOf(await target.servingMasters())).size).toBe((await expected()).size);
  }, 90_000);
});

describe('live replication into a cluster that reshards', () => {
  it('a slot moved to another target master mid-run: deletes and changes of its keys follow it there; converged; exit 0', async () => {
    const standalone = await startRedis(['--notify-keyspace-events', 'KEA']);
    try {
      await Promise.all(target.masters.map((m) => m.cmd('FLUSHALL')));
      const tagged = (i: number): string => `{moving}:${i}`;
      for (let i = 0; i < 200; i++) await standalone.cmd('SET', tagged(i), `seed-${i}`);
      for (let i = 0; i < 200; i++) await standalone.cmd('SET', `other:${i}`, `seed-${i}`);
      const dir = runDir();
      const run = spawnMigrator({
        ...endpoints(standalone, target.masters[0] as LocalServer), ...target.settings('DESTINATION'), MIGRATION_MODE: 'live', SOURCE_READER: 'scan', SLEEP_TIME: 0, PROGRESS: 'off', LIVE_SWEEP_RATE: 0,
      }, dir);
      await waitUntil(async () => run.output().includes('Live: applying changes'), 'the live phase', 30_000, 50);
      const from = (await ownerOf(target, tagged(0))) as LocalServer;
      const to = target.masters.find((m) => m.port !== from.port) as LocalServer;
      await moveSlot(target, Number(await from.cmd('CLUSTER', 'KEYSLOT', tagged(0))), from, to);
      for (let i = 0; i < 100; i++) await standalone.cmd('DEL', tagged(i));
      for (let i = 100; i < 150; i++) await standalone.cmd('SET', tagged(i), `changed-${i}`);
      const expected = async (): Promise<string> => JSON.stringify([...(await keyspaceOf([standalone]))].sort());
      const converged = waitUntil(async () => (await expected()) === JSON.stringify([...(await keyspaceOf(target.masters))].sort()), 'the target to converge', 30_000, 200);
      await converged.catch(async (err: Error) => {
        run.signalScript('SIGTERM');
        const result = await run.done;
        throw new Error(`${err.message}\n${result.stdout}${result.stderr}${readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8')}`);
      });
      run.signalScript('SIGTERM');
      const result = await run.done;
      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^Live: \d+ changes applied, 100 keys deleted, 0 failed/m);
      expect(Number(await to.cmd('EXISTS', tagged(0)))).toBe(0);
      expect(await to.cmd('GET', tagged(120))).toBe('changed-120');
    } finally {
      await standalone.stop();
    }
  }, 60_000);
});

/** Moves one slot, keys and all, from one master to another, as redis-cli --cluster reshard does. */
async function moveSlot(cluster: TestCluster, slot: number, from: LocalServer, to: LocalServer): Promise<void> {
  const id = async (node: LocalServer): Promise<string> => String(await node.cmd('CLUSTER', 'MYID'));
  const [fromId, toId] = await Promise.all([id(from), id(to)]);
  await to.cmd('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId);
  await from.cmd('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId);
  for (;;) {
    const keys = (await from.client.sendCommand(['CLUSTER', 'GETKEYSINSLOT', String(slot), '100'])) as Buffer[];
    if (keys.length === 0) break;
    await from.client.sendCommand(['MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys]);
  }
  for (const node of cluster.masters) await node.cmd('CLUSTER', 'SETSLOT', slot, 'NODE', toId);
}
