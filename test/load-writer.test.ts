// The load generator the live-mode tests and the bench drive: its rate, that the server saw exactly what it
// reports, the data it leaves (every type, binary names, big lists, pending stream entries), and cluster routing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from './helpers/cluster.js';
import { allKeys, calls, commandStats, pairs } from './helpers/inspect.js';
import { startLoad, type LoadStats } from './helpers/load.js';
import { freePort, startRedis, waitUntil, type LocalServer, type RedisServer } from './helpers/servers.js';

/** byCommand names are commands; INFO commandstats names XGROUP CREATE by its subcommand. */
const statName = (command: string): string => (command === 'xgroup' ? 'xgroup|create' : command);

/** Calls per command summed over `servers`, for the commands the writer reports. */
async function seenBy(servers: RedisServer[], stats: LoadStats): Promise<Record<string, number>> {
  const all = await Promise.all(servers.map(commandStats));
  return Object.fromEntries(Object.keys(stats.byCommand).map((name) => [name, all.reduce((sum, s) => sum + calls(s, statName(name)), 0)]));
}

describe('load writer, one server', () => {
  let server: LocalServer;
  let stats: LoadStats;
  beforeAll(async () => {
    server = await startRedis();
    const load = startLoad({ port: server.port, rate: 2000, duration: 1.5, keys: 400, bigListBatch: 200 });
    await load.ready;
    stats = await load.done;
  });
  afterAll(async () => server?.stop());

  it('holds the rate, and the server saw every command it counts', async () => {
    expect(stats.rate).toBeGreaterThanOrEqual(1500);
    expect(stats.rate).toBeLessThanOrEqual(2500);
    expect(stats.ops).toBeGreaterThan(3000 * 0.75);
    expect({ errors: stats.errors, lost: stats.lost, kinds: stats.errorKinds }).toEqual({ errors: 0, lost: 0, kinds: {} });
    expect(await seenBy([server], stats)).toEqual(stats.byCommand);
    for (const command of ['set', 'hset', 'del', 'expire', 'pexpire', 'rename', 'rpush', 'xadd', 'xreadgroup', 'zadd', 'sadd', 'incr', 'append']) {
      expect(stats.byCommand[command], command).toBeGreaterThan(0);
    }
  });

  it('leaves every type, binary names, a list over 1000 elements and a group with pending entries', async () => {
    const keys = await allKeys(server);
    const types = await Promise.all(keys.map(async (key) => String(await server.client.sendCommand(['TYPE', key]))));
    // 'none': expired since the SCAN.
    expect(new Set(types.filter((t) => t !== 'none'))).toEqual(new Set(['string', 'hash', 'list', 'set', 'zset', 'stream']));
    expect(keys.some((key) => !Buffer.from(key.toString('utf8')).equals(key))).toBe(true);
    const lists = keys.filter((_, i) => types[i] === 'list');
    const lengths = await Promise.all(lists.map(async (key) => Number(await server.client.sendCommand(['LLEN', key]))));
    expect(Math.max(...lengths)).toBeGreaterThan(1000);
    const streams = keys.filter((_, i) => types[i] === 'stream');
    const pending = await Promise.all(streams.map(async (key) => {
      const groups = (await server.client.sendCommand(['XINFO', 'GROUPS', key])) as unknown[];
      return groups.reduce<number>((sum, group) => sum + Number(pairs(group).pending), 0);
    }));
    expect(Math.max(...pending)).toBeGreaterThan(0);
  });

  it('sends the same commands for the same seed, up to `count`', async () => {
    const run = (seed: number): Promise<LoadStats> => startLoad({ port: server.port, rate: 20_000, count: 1000, seed, prefix: `seed${seed}` }).done;
    const a = await run(7);
    const b = await run(7);
    expect(a.ops).toBe(1000);
    expect(b.byCommand).toEqual(a.byCommand);
  });

  it('rides out a server restart, counting the commands lost with the connection', async () => {
    const load = startLoad({ port: server.port, rate: 1000, prefix: 'restart' });
    await load.ready;
    await waitUntil(async () => (load.stats?.ops ?? 0) > 200, 'the first 200 ops');
    await server.restart();
    const before = load.stats?.ops ?? 0;
    await waitUntil(async () => (load.stats?.ops ?? 0) > before + 200, '200 more ops after the restart');
    const final = await load.stop();
    // In this order, with any progress lines between (one may land there on a busy machine).
    expect(load.output()).toMatch(/lost the connection to .*\n(.*\n)*.*reconnected to/);
    expect(final.aborted).toBeUndefined();
    expect(final.ops).toBeGreaterThan(before + 200);
  });

  it('exits 1 with a clear line when the server is not there', async () => {
    const load = startLoad({ port: await freePort() });
    await expect(load.done).rejects.toThrow(/code 1[^]*cannot start against 127\.0\.0\.1:\d+: connect ECONNREFUSED/);
  });

  it('stops on SIGTERM with its totals', async () => {
    const load = startLoad({ port: server.port, rate: 1000 });
    await load.ready;
    await waitUntil(async () => (load.stats?.ops ?? 0) > 100, 'a progress line past 100 ops');
    const final = await load.stop();
    expect(final.ops).toBeGreaterThan(100);
    expect(final.errors).toBe(0);
  });
});

describe('load writer, cluster', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster(3);
  });
  afterAll(async () => cluster?.stop());

  it('sends each command to the master of its slot: no redirections, every master busy', async () => {
    const stats = await startLoad({ ...portOf(cluster), cluster: true, rate: 2000, duration: 1, keys: 400 }).done;
    expect(stats.rate).toBeGreaterThanOrEqual(1500);
    expect({ errors: stats.errors, lost: stats.lost, kinds: stats.errorKinds }).toEqual({ errors: 0, lost: 0, kinds: {} });
    expect(await seenBy(cluster.masters, stats)).toEqual(stats.byCommand);
    for (const master of cluster.masters) expect(Number(await master.cmd('DBSIZE'))).toBeGreaterThan(0);
  });
});

function portOf(cluster: TestCluster): { port: number } {
  return { port: Number(cluster.settings('SOURCE').SOURCE_REDIS_PORT) };
}
