// A throwaway Redis Cluster for tests and the benchmark: three masters (each with replicas, if asked) on free
// loopback ports, joined with redis-cli --cluster create; plus a view of the keys of any set of servers that two
// setups can be compared by.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startRedis, waitUntil, type LocalServer, type RedisServer } from './servers.js';

const execFileAsync = promisify(execFile);

export interface TestCluster {
  /** Every node: the masters alone without replicas; masters and replicas, as created, with them. */
  nodes: LocalServer[];
  /** The nodes that were masters when the cluster was created (every node, without replicas). */
  masters: LocalServer[];
  /** The nodes that were replicas when the cluster was created (none, without replicas). */
  replicas: LocalServer[];
  /** Settings that point one side of the migrator at this cluster, through its first master. */
  settings(prefix: 'SOURCE' | 'DESTINATION'): Record<string, string | number>;
  /** The masters serving slots now (after failovers), from the CLUSTER SLOTS of the first node that answers. */
  servingMasters(): Promise<LocalServer[]>;
  /** The replicas of `master` now, from the CLUSTER REPLICAS of the first node that answers. */
  replicasOf(master: RedisServer): Promise<LocalServer[]>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Replicas per master (redis-cli --cluster-replicas); 0 by default. */
  replicas?: number;
  /** cluster-node-timeout in ms: how soon a dead master is failed over; 5000 by default. */
  nodeTimeoutMs?: number;
}

export async function startCluster(masters = 3, options: ClusterOptions = {}): Promise<TestCluster> {
  const replicasPerMaster = options.replicas ?? 0;
  const timeout = String(options.nodeTimeoutMs ?? 5000);
  const nodes = await Promise.all(
    Array.from({ length: masters * (1 + replicasPerMaster) }, () =>
      startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', timeout])),
  );
  const stop = async (): Promise<void> => void (await Promise.all(nodes.map((n) => n.stop().catch(() => undefined))));
  let roles: { masters: LocalServer[]; replicas: LocalServer[] };
  try {
    const create = ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'];
    await execFileAsync('redis-cli', create, { timeout: 30_000 });
    await waitUntil(async () => (await Promise.all(nodes.map((n) => clusterOk(n, replicasPerMaster)))).every(Boolean), 'cluster_state:ok on every node');
    roles = await rolesOf(nodes);
    if (roles.masters.length !== masters) throw new Error(`expected ${masters} masters, found ${roles.masters.length}`);
    // A replica in sync: a failover loses nothing, and CLUSTER FAILOVER has someone to hand over to.
    await waitUntil(async () => (await Promise.all(roles.replicas.map(replicaInSync))).every(Boolean), 'every replica in sync (master_link_status:up)');
  } catch (err) {
    await stop();
    throw err;
  }
  const live = async (): Promise<LocalServer> => {
    for (const node of nodes) {
      if (await node.cmd('PING').then(() => true, () => false)) return node;
    }
    throw new Error('no node of the cluster answers');
  };
  const byPort = (port: number): LocalServer => {
    const node = nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no node of the cluster on port ${port}`);
    return node;
  };
  const seed = roles.masters[0] ?? (nodes[0] as LocalServer);
  return {
    nodes,
    masters: roles.masters,
    replicas: roles.replicas,
    settings: (prefix) => ({ [`${prefix}_REDIS_HOST`]: '127.0.0.1', [`${prefix}_REDIS_PORT`]: seed.port, [`${prefix}_REDIS_CLUSTER`]: 'true' }),
    servingMasters: async () => {
      const ranges = (await (await live()).cmd('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
      return [...new Set(ranges.map((range) => Number(range[2][1])))].map(byPort);
    },
    replicasOf: async (master) => {
      const id = String(await master.cmd('CLUSTER', 'MYID'));
      const lines = (await (await live()).cmd('CLUSTER', 'REPLICAS', id)) as string[];
      // "<id> <ip>:<port>@<cport> slave <master id> ...": the port, then the node; a failed one is left out.
      return lines.filter((line) => !/\bfail\b/.test(line)).map((line) => byPort(Number(/:(\d+)@/.exec(line)?.[1])));
    },
    stop,
  };
}

/** Every node must know every other node's slots, and (with replicas) each shard's replicas, or a redirection could point at nothing. */
async function clusterOk(node: RedisServer, replicas: number): Promise<boolean> {
  const info = String(await node.cmd('CLUSTER', 'INFO'));
  if (!info.includes('cluster_state:ok') || !/cluster_slots_assigned:16384/.test(info)) return false;
  if (replicas === 0) return true;
  // CLUSTER SLOTS lists each range's master, then its replicas: a node that does not name them all yet would
  // give the migrator a shard without them, and a later failover would look like slots moving.
  const ranges = (await node.cmd('CLUSTER', 'SLOTS')) as unknown[][];
  return ranges.every((range) => range.length === 3 + replicas);
}

async function rolesOf(nodes: LocalServer[]): Promise<{ masters: LocalServer[]; replicas: LocalServer[] }> {
  const roles = await Promise.all(nodes.map(async (n) => /role:master/.test(String(await n.cmd('INFO', 'replication')))));
  return { masters: nodes.filter((_, i) => roles[i]), replicas: nodes.filter((_, i) => !roles[i]) };
}

async function replicaInSync(replica: RedisServer): Promise<boolean> {
  return /master_link_status:up/.test(String(await replica.cmd('INFO', 'replication')));
}

export { waitUntil };

/** `master`'s replica taking over by CLUSTER FAILOVER; resolves once every node names it as the master of its slots. */
export async function failOver(cluster: TestCluster, master: LocalServer): Promise<LocalServer> {
  const [replica] = await cluster.replicasOf(master);
  if (!replica) throw new Error(`${master.port} has no replica`);
  await replica.cmd('CLUSTER', 'FAILOVER');
  await promoted(cluster, replica, 15_000);
  return replica;
}

/** Every live node of the cluster serves slots from `replica` now, and says cluster_state:ok. */
export async function promoted(cluster: TestCluster, replica: LocalServer, timeoutMs: number): Promise<void> {
  const live = cluster.nodes.filter((n) => n.client.isReady);
  await waitUntil(
    async () =>
      (await Promise.all(live.map(async (node) => {
        const ranges = (await node.cmd('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
        const info = String(await node.cmd('CLUSTER', 'INFO'));
        return info.includes('cluster_state:ok') && ranges.some((range) => Number(range[2][1]) === replica.port);
      }))).every(Boolean),
    `${replica.port} promoted on every node`,
    timeoutMs,
  );
}


/** The node of `cluster` that owns `key` now, from the first node's CLUSTER SLOTS. */
export async function ownerOf(cluster: TestCluster, key: string | Buffer): Promise<RedisServer> {
  const first = cluster.nodes[0] as RedisServer;
  const slot = Number(await first.client.sendCommand(['CLUSTER', 'KEYSLOT', key]));
  const ranges = (await first.cmd('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
  const port = ranges.find(([low, high]) => slot >= low && slot <= high)?.[2][1];
  const owner = cluster.nodes.find((node) => node.port === Number(port));
  if (!owner) throw new Error(`no node owns slot ${slot}`);
  return owner;
}

/** Puts a copy of every key of `from` on the node of `cluster` that owns it, by plain DUMP and RESTORE. */
export async function restoreInto(cluster: TestCluster, from: RedisServer): Promise<number> {
  let copied = 0;
  let cursor = '0';
  do {
    const [next, keys] = (await from.client.sendCommand(['SCAN', cursor, 'COUNT', '1000'])) as [Buffer, Buffer[]];
    cursor = next.toString();
    for (const key of keys) {
      const [payload, expireAt] = (await Promise.all([from.client.sendCommand(['DUMP', key]), from.client.sendCommand(['PEXPIRETIME', key])])) as unknown as [Buffer, number];
      const owner = await ownerOf(cluster, key);
      await owner.client.sendCommand(['RESTORE', key, String(Math.max(expireAt, 0)), payload, 'ABSTTL']);
      copied += 1;
    }
  } while (cursor !== '0');
  return copied;
}

/**
 * Every key of these servers (db 0) as hex, with its type, value digest (DEBUG DIGEST-VALUE: the content,
 * whatever the encoding, stream groups included) and absolute expiry. Two setups hold the same data when
 * these maps are equal, however the keys are spread over nodes. Throws if a key is on two nodes.
 */
export async function keyspaceOf(servers: readonly RedisServer[]): Promise<Map<string, string>> {
  const all = new Map<string, string>();
  for (const server of servers) {
    let cursor = '0';
    do {
      const [next, keys] = (await server.client.sendCommand(['SCAN', cursor, 'COUNT', '1000'])) as [Buffer, Buffer[]];
      cursor = next.toString();
      for (const key of keys) {
        const hex = key.toString('hex');
        if (all.has(hex)) throw new Error(`key ${key.toString()} is on two nodes`);
        const [type, [valueDigest], expireAt] = (await Promise.all([
          server.client.sendCommand(['TYPE', key]),
          server.client.sendCommand(['DEBUG', 'DIGEST-VALUE', key]),
          server.client.sendCommand(['PEXPIRETIME', key]),
        ])) as unknown as [string, [Buffer], number];
        all.set(hex, `${type} ${valueDigest.toString()} ${expireAt}`);
      }
    } while (cursor !== '0');
  }
  return all;
}
