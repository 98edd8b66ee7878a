// A throwaway Redis Cluster for tests and the benchmark: three masters on free loopback ports, joined with
// redis-cli --cluster create; plus a view of the keys of any set of servers that two setups can be compared by.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startRedis, type RedisServer } from './servers.js';

const execFileAsync = promisify(execFile);

export interface TestCluster {
  nodes: RedisServer[];
  /** Settings that point one side of the migrator at this cluster, through its first node. */
  settings(prefix: 'SOURCE' | 'DESTINATION'): Record<string, string | number>;
  stop(): Promise<void>;
}

export async function startCluster(masters = 3): Promise<TestCluster> {
  const nodes = await Promise.all(
    Array.from({ length: masters }, () => startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000'])),
  );
  const stop = async (): Promise<void> => void (await Promise.all(nodes.map((n) => n.stop())));
  try {
    await execFileAsync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-yes'], { timeout: 30_000 });
    await waitUntil(async () => (await Promise.all(nodes.map(clusterOk))).every(Boolean), 'cluster_state:ok on every node');
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes,
    settings: (prefix) => ({ [`${prefix}_REDIS_HOST`]: '127.0.0.1', [`${prefix}_REDIS_PORT`]: nodes[0]?.port ?? 0, [`${prefix}_REDIS_CLUSTER`]: 'true' }),
    stop,
  };
}

async function clusterOk(node: RedisServer): Promise<boolean> {
  // Every node must also know every other node's slots, or a redirection could point at nothing.
  const info = String(await node.cmd('CLUSTER', 'INFO'));
  return info.includes('cluster_state:ok') && /cluster_slots_assigned:16384/.test(info);
}

export async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
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
