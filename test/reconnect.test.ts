// Lost connections mid-run: a TCP proxy cuts, stalls or refuses connections to the target or the source,
// servers restart or freeze; the run reconnects, retries what was lost and ends with the target equal to the
// source, each key counted once. Real servers and the real script; the comparison is made without the tool.
import { beforeAll, describe, expect, it } from 'vitest';
import { runDir, serverPair, type Pair } from './helpers/fixtures.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { BUILDING_PREFIX } from '../lib/copy/by-type.js';
import { parseSummary } from './helpers/inspect.js';
import { startProxy, type FaultProxy } from './helpers/proxy.js';
import { digest, seedStrings } from './helpers/sample-data.js';
import { endpoints, runMigrator, spawnMigrator, startRedis, waitUntil, type RedisServer, type RunResult } from './helpers/servers.js';
import { Side } from '../lib/net/side.js';
import type { RecordBatch } from '../lib/records.js';
import { selectedKeys } from '../lib/sources/scan.js';

const KEYS = 60_000;
/** KEYS strings, one with an exact far expiry, and a list big enough to be copied in chunks. */
async function seed(server: RedisServer): Promise<void> {
  expect(await seedStrings(server, KEYS)).toBe(KEYS);
  await server.cmd('RPUSH', 'big:list', ...Array.from({ length: 5000 }, (_, i) => `e${i}`));
  await server.cmd('PEXPIREAT', 'key:7', 4102444800123);
}

/** Slow enough (small batches) that a fault lands mid-run, fast enough for CI. */
const PACE = { SLEEP_TIME: 0, PIPELINE_BATCH_SIZE: 100, SCAN_BATCH_SIZE: 100, COLLECTION_CHUNK_SIZE: 500, DUMP_MAX_BYTES: 10_000 };

/** Every build key on the target (lib/writers/by-type.ts buildingName). */
async function buildKeys(server: RedisServer): Promise<unknown[]> {
  return (await server.cmd('KEYS', 'redis-keys-migrator:tmp:*')) as unknown[];
}

async function dbsize(server: RedisServer): Promise<number> {
  return Number(await server.cmd('DBSIZE'));
}

/** The target holds exactly the source's keys, values and expiry presence (DEBUG DIGEST), and the one exact expiry. */
async function expectEqual(pair: Pair, run: RunResult): Promise<void> {
  const output = `${run.stdout}\n${run.stderr}\nbuild keys on the target: ${JSON.stringify(await buildKeys(pair.target))}`;
  expect(await dbsize(pair.target), output).toBe(await dbsize(pair.source));
  expect(await digest(pair.target), output).toBe(await digest(pair.source));
  expect(await pair.target.cmd('PEXPIRETIME', 'key:7')).toBe(4102444800123);
}

/** Runs a copy with the target (or source) behind `proxy`, and applies `fault` once a fifth of the keys are there. */
async function copyThrough(pair: Pair, side: 'source' | 'target', proxy: FaultProxy, settings: Record<string, string | number>, fault: () => Promise<unknown> | void): Promise<RunResult> {
  const env: Record<string, string | number> = { ...endpoints(pair.source, pair.target), ...PACE, ...settings };
  if (side === 'target') env.DESTINATION_REDIS_PORT = proxy.port;
  // A scan's own recovery: each read retried where it was (a replica's snapshot cut midway: replication.test.ts).
  else Object.assign(env, { SOURCE_REDIS_PORT: proxy.port, SOURCE_READER: 'scan' });
  const run = spawnMigrator(env, runDir());
  await waitUntil(async () => (await dbsize(pair.target)) >= KEYS / 5, 'a fifth of the keys on the target', 30_000, 20);
  expect(await dbsize(pair.target), 'the run finished before the fault; the test proves nothing').toBeLessThan(KEYS);
  await fault();
  return run.done;
}

describe('a lost connection mid-run', () => {
  const pair = serverPair();
  let proxy: FaultProxy;
  beforeAll(async () => {
    await seed(pair.source);
  });

  const fresh = async (side: 'source' | 'target'): Promise<void> => {
    await pair.target.cmd('FLUSHALL');
    await proxy?.close();
    proxy = await startProxy(side === 'target' ? pair.target.port : pair.source.port);
  };

  it.each([
    ['target', 'dump'],
    ['target', 'type'],
    ['source', 'dump'],
  ] as const)('every connection to the %s cut once (COPY_METHOD=%s): reconnected, every key copied and counted once', async (side, method) => {
    await fresh(side);
    const run = await copyThrough(pair, side, proxy, { COPY_METHOD: method }, () => proxy.cutAll());
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: KEYS + 1, skipped: 0, failed: 0, vanished: 0 });
    expect(run.stdout).toMatch(/Reconnected \d+ time\(s\) after a lost connection/);
    expect(proxy.accepted, 'no new connection was made').toBeGreaterThan(1);
    expect(run.stdout, 'the same servers came back').not.toMatch(/restarted or failed over/);
    await expectEqual(pair, run);
  });

  // The file path RESTOREs through a socket of its own (lib/net/pipeline.ts): its loss and stall are recovered too.
  it.each([
    ['cut once', {}, () => proxy.cutAll()],
    ['stalled for 4 s (REPLY_TIMEOUT=1)', { REPLY_TIMEOUT: 1 }, () => proxy.stall(4000)],
  ] as const)('an .rdb file read natively, the target %s: reconnected, every key copied and counted once', async (_, settings, fault) => {
    await fresh('target');
    await pair.source.cmd('SAVE');
    const file = { SOURCE_RDB_FILE: `${pair.source.dir}/dump.rdb`, RDB_READER: 'native' };
    const env = { ...file, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: proxy.port, ...PACE, ...settings };
    const run = spawnMigrator(env, runDir());
    await waitUntil(async () => (await dbsize(pair.target)) >= KEYS / 5, 'a fifth of the keys on the target', 30_000, 5);
    expect(await dbsize(pair.target), 'the run finished before the fault; the test proves nothing').toBeLessThan(KEYS);
    await fault();
    const done = await run.done;
    expect(done.code, done.stdout + done.stderr).toBe(0);
    expect(done.stdout).toMatch(/Reconnected \d+ time\(s\) after a lost connection/);
    expect(parseSummary(done.stdout)).toEqual({ restored: KEYS + 1, skipped: 0, failed: 0, vanished: 0 });
    await expectEqual(pair, done);
  });

  it('the target refusing connections for 1.5 s: the run waits, then finishes', async () => {
    await fresh('target');
    const run = await copyThrough(pair, 'target', proxy, {}, () => proxy.refuse(1500, true));
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: KEYS + 1, skipped: 0, failed: 0, vanished: 0 });
    await expectEqual(pair, run);
  });

  // REPLY_TIMEOUT=1: silence for 1 s, then a PING on a new connection unanswered for 1 s more, within the 4 s.
  it('a stalled target (no bytes for 4 s, REPLY_TIMEOUT=1): the stall is detected, the run reconnects and finishes', async () => {
    await fresh('target');
    const run = await copyThrough(pair, 'target', proxy, { REPLY_TIMEOUT: 1 }, () => proxy.stall(4000));
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/Reconnected/);
    expect(parseSummary(run.stdout)).toEqual({ restored: KEYS + 1, skipped: 0, failed: 0, vanished: 0 });
    await expectEqual(pair, run);
  });

  it('RECONNECT_TIMEOUT=0 stops at the first loss, as before: one line, exit 1, the summary printed', async () => {
    await fresh('target');
    const run = await copyThrough(pair, 'target', proxy, { RECONNECT_TIMEOUT: 0 }, () => proxy.cutAll());
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stdout).toMatch(/^Stopped early: lost the connection to destination 127\.0\.0\.1:\d+/m);
    expect(parseSummary(run.stdout).failed).toBe(0);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('a target gone for longer than RECONNECT_TIMEOUT: the run stops after it, naming the server and the setting', async () => {
    await fresh('target');
    const started = Date.now();
    const run = await copyThrough(pair, 'target', proxy, { RECONNECT_TIMEOUT: 1 }, () => void proxy.refuse(8000, true));
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stdout).toMatch(/^Stopped early: lost the connection to destination .*RECONNECT_TIMEOUT/m);
    expect(Date.now() - started).toBeLessThan(8000);
    expect(parseSummary(run.stdout).failed).toBe(0);
  });
});

describe('servers restarted or frozen mid-run', () => {
  const pair = serverPair();
  beforeAll(async () => {
    await seed(pair.source);
  });

  async function copyWhile(fault: () => Promise<unknown>, settings: Record<string, string | number> = {}): Promise<RunResult> {
    await pair.target.cmd('FLUSHALL');
    const run = spawnMigrator({ ...endpoints(pair.source, pair.target), ...PACE, ...settings }, runDir());
    await waitUntil(async () => (await dbsize(pair.target)) >= KEYS / 5, 'a fifth of the keys on the target', 30_000, 20);
    expect(await dbsize(pair.target), 'the run finished before the fault; the test proves nothing').toBeLessThan(KEYS);
    await fault();
    return run.done;
  }

  it('the target restarted (saved, stopped, started again): the run reconnects and finishes', async () => {
    const run = await copyWhile(() => pair.target.restart());
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/Reconnected/);
    expect(run.stdout).toMatch(/^The target restarted or failed over during the run: .* Check with MIGRATION_MODE=compare$/m);
    await expectEqual(pair, run);
  });

  it('the source restarted (a new run_id): its keys are scanned again from the start, and the summary says so', async () => {
    const run = await copyWhile(() => pair.source.restart(), { SOURCE_READER: 'scan' });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/is another server than when its scan began .* scanned again from the start/);
    const counts = parseSummary(run.stdout);
    expect(counts.failed).toBe(0);
    expect(counts.restored).toBeLessThanOrEqual(KEYS + 1);
    expect(counts.restored + counts.skipped).toBeGreaterThan(KEYS + 1);
    await expectEqual(pair, run);
  });

  it('the target frozen by SIGSTOP for 2.5 s (REPLY_TIMEOUT=1), then SIGCONT: the run finishes', async () => {
    const run = await copyWhile(async () => {
      process.kill(pair.target.pid, 'SIGSTOP');
      await new Promise((r) => setTimeout(r, 2500));
      process.kill(pair.target.pid, 'SIGCONT');
    }, { REPLY_TIMEOUT: 1 });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: KEYS + 1, skipped: 0, failed: 0, vanished: 0 });
    await expectEqual(pair, run);
  });
});

describe('refused at connect', () => {
  const pair = serverPair();

  it('the same server and database on both sides: one line naming the run_id, exit 1, nothing touched', async () => {
    await pair.source.cmd('SET', 'only', 'here');
    const run = await runMigrator({ ...endpoints(pair.source, pair.source) }, runDir());
    expect(run.code).toBe(1);
    expect(run.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^Error connecting to Redis : the source and the target are the same server \(run_id [0-9a-f]{40}\) and database 0: nothing would be copied$/),
    ]);
  });

  it('the same server but another database is allowed', async () => {
    const run = await runMigrator({ ...endpoints(pair.source, pair.source), DESTINATION_REDIS_DB_INDEX: 1 }, runDir());
    expect(run.code, run.stdout).toBe(0);
    expect(parseSummary(run.stdout).restored).toBeGreaterThan(0);
  });

  it('a target that is a read-only replica: one line saying so, exit 1, no key fails one by one', async () => {
    await pair.target.cmd('REPLICAOF', '127.0.0.1', pair.source.port);
    try {
      const run = await runMigrator({ ...endpoints(pair.source, pair.target) }, runDir());
      expect(run.code).toBe(1);
      expect(run.stdout.trim().split('\n')).toEqual([
        expect.stringMatching(/^Error connecting to Redis : destination 127\.0\.0\.1:\d+: this is a read-only replica .*point the DESTINATION_REDIS_\* settings at the primary$/),
      ]);
    } finally {
      await pair.target.cmd('REPLICAOF', 'NO', 'ONE');
    }
  });
});

describe('big keys in flight when the connection is cut', () => {
  const pair = serverPair();
  const LISTS = 40;
  beforeAll(async () => {
    for (let i = 0; i < LISTS; i++) await pair.source.cmd('RPUSH', `list:${i}`, ...Array.from({ length: 3000 }, (_, j) => `e${j}`));
  });

  // Many chunked copies run at once; a cut must not let a retry and a straggler build the same key together.
  it.each([['type'], ['dump']])('COPY_METHOD=%s: every list whole, none doubled, no build key left', async (method) => {
    await pair.target.cmd('FLUSHALL');
    const proxy = await startProxy(pair.target.port);
    try {
      const env = { ...endpoints(pair.source, pair.target), DESTINATION_REDIS_PORT: proxy.port, SLEEP_TIME: 0, COPY_METHOD: method, COLLECTION_CHUNK_SIZE: 300, DUMP_MAX_BYTES: 1000 };
      const run = spawnMigrator(env, runDir());
      await waitUntil(async () => (await buildKeys(pair.target)).length >= 3, 'several big keys being built', 20_000, 10);
      proxy.cutAll();
      const done = await run.done;
      expect(done.code, done.stdout + done.stderr).toBe(0);
      expect(parseSummary(done.stdout)).toEqual({ restored: LISTS, skipped: 0, failed: 0, vanished: 0 });
      for (let i = 0; i < LISTS; i++) expect(await pair.target.cmd('DEBUG', 'DIGEST-VALUE', `list:${i}`)).toEqual(await pair.source.cmd('DEBUG', 'DIGEST-VALUE', `list:${i}`));
      // Builds the cut abandoned are left to their one-hour expiry; none is visible under a real name.
      expect(Number(await pair.target.cmd('DBSIZE')) - (await buildKeys(pair.target)).length).toBe(LISTS);
    } finally {
      await proxy.close();
    }
  });

  // The first chunk written, its reply lost with the connection: the build exists though no chunk was confirmed.
  it.each([['type'], ['dump']])('COPY_METHOD=%s: a reply lost on a build\'s first chunk: the build is removed once reconnected, no build key left', async (method) => {
    await pair.target.cmd('FLUSHALL');
    const proxy = await startProxy(pair.target.port);
    try {
      let fired = false;
      const lost = proxy.loseReplyTo(BUILDING_PREFIX).then(() => void (fired = true));
      const env = { ...endpoints(pair.source, pair.target), DESTINATION_REDIS_PORT: proxy.port, SLEEP_TIME: 0, COPY_METHOD: method, COLLECTION_CHUNK_SIZE: 300, DUMP_MAX_BYTES: 1000 };
      const done = await spawnMigrator(env, runDir()).done;
      await Promise.race([lost, sleep(100)]);
      expect(fired, 'no build was written through the proxy').toBe(true);
      expect(done.code, done.stdout + done.stderr).toBe(0);
      expect(done.stdout).toMatch(/Reconnected \d+ time\(s\)/);
      expect(parseSummary(done.stdout)).toEqual({ restored: LISTS, skipped: 0, failed: 0, vanished: 0 });
      expect(await buildKeys(pair.target)).toEqual([]);
      expect(Number(await pair.target.cmd('DBSIZE'))).toBe(LISTS);
    } finally {
      await proxy.close();
    }
  });
});

describe('a scan that sits between two batches while its server restarts', () => {
  const pair = serverPair();
  it('starts over on the new process when it asks for more, and says so', async () => {
    expect(await seedStrings(pair.source, 5000)).toBe(5000);
    const side = await Side.open({ side: 'source', host: '127.0.0.1', port: pair.source.port, db: 0 });
    try {
      const restarts: string[] = [];
      const unit = { index: 0, node: () => side.nodeForSlot(0), startCursor: '0' };
      const hooks = { recover: async () => void (await side.reconnect()), restarted: (_: unknown, label: string) => void restarts.push(label) };
      const scan = selectedKeys(unit, { match: '*', type: '', exclude: '', scanCount: 100 }, 100, undefined, hooks);
      const first = await scan.next();
      expect(first.done).toBe(false);
      await pair.source.restart();
      await side.reconnect();
      const seen = new Set<string>((first.value as RecordBatch).keys.map((k) => k.toString()));
      for await (const batch of scan) for (const key of batch.keys) seen.add(key.toString());
      expect(restarts).toHaveLength(1);
      expect(seen.size).toBe(5000);
    } finally {
      await side.close();
    }
  });
});

describe('a source that answers but cannot serve', () => {
  const pair = serverPair();

  it('a replica source whose master died (MASTERDOWN): the run waits RECONNECT_TIMEOUT, then stops in one line; no spin, no crash', async () => {
    const master = await startRedis();
    try {
      expect(await seedStrings(master, KEYS)).toBe(KEYS);
      await pair.source.cmd('CONFIG', 'SET', 'replica-serve-stale-data', 'no');
      await pair.source.cmd('REPLICAOF', '127.0.0.1', master.port);
      await waitUntil(async () => /master_link_status:up/.test(String(await pair.source.cmd('INFO', 'replication'))) && (await dbsize(pair.source)) === KEYS, 'the replica in sync');
      // Read by SCAN: the test is about reads a stale replica refuses midway (it would refuse a replica's PSYNC at once).
      const run = spawnMigrator({ ...endpoints(pair.source, pair.target), ...PACE, RECONNECT_TIMEOUT: 2, SOURCE_READER: 'scan' }, runDir());
      await waitUntil(async () => (await dbsize(pair.target)) >= KEYS / 5, 'a fifth of the keys on the target', 30_000, 20);
      await master.stop();
      const started = Date.now();
      const done = await run.done;
      expect(done.code, done.stdout + done.stderr).toBe(1);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(done.stdout).toMatch(/^Stopped early: lost the connection to source .*MASTERDOWN.*RECONNECT_TIMEOUT/m);
      expect(done.stderr).not.toMatch(/\n\s+at |heap out of memory/);
    } finally {
      await pair.source.cmd('REPLICAOF', 'NO', 'ONE');
      await master.stop().catch(() => undefined);
    }
  });
});
