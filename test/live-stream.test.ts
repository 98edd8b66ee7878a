// MIGRATION_MODE=live on a source read as its replica: the snapshot, then the replication stream applied to the
// target in order (no keyspace events: these sources have none configured), ending with the target compared with
// the source by the servers themselves (DEBUG DIGEST). Commands that cannot go as they are become re-copies.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { failOver, startCluster, keyspaceOf, ownerOf, type TestCluster } from './helpers/cluster.js';
import { describeRun, fullSyncs } from './helpers/inspect.js';
import { startLoad } from './helpers/load.js';
import { startProxy } from './helpers/proxy.js';
import { digest, seedEveryType, seedStrings } from './helpers/sample-data.js';
import { serversOfFile } from './helpers/servers-of-file.js';
import { endpoints, runMigrator, spawnMigrator, tempDir, waitUntil, type LocalServer, type RunningMigrator, type RunResult } from './helpers/servers.js';

const APPLYING = 'Live: applying the replication stream of ';

const server = serversOfFile();

interface StreamSummary {
  live: { reader: string; commands: number; transactions: number; recopied: number; failed: number; behind_bytes: number; ended: string };
  verification: { live: { checked: number; identical: number } };
  exit_status: number;
}

/** A live run, started and past its snapshot (the stream is being applied). */
async function startLive(source: LocalServer, target: LocalServer, dir: string, extra: Record<string, string | number> = {}): Promise<RunningMigrator> {
  const run = spawnMigrator({ ...endpoints(source, target), MIGRATION_MODE: 'live', SLEEP_TIME: 0, PROGRESS: 'off', SUMMARY_JSON_FILE: join(dir, 'summary.json'), ...extra }, dir);
  await waitUntil(async () => run.output().includes(APPLYING) || /^(Error|Cannot|Stopped)/m.test(run.output()), 'the live phase', 30_000, 50);
  if (!run.output().includes(APPLYING)) throw new Error(run.output());
  return run;
}

async function cutover(run: RunningMigrator): Promise<RunResult> {
  run.signalScript('SIGTERM');
  return run.done;
}

const summaryOf = (dir: string): StreamSummary => JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as StreamSummary;
const sameDigest = (source: LocalServer, target: LocalServer) => async (): Promise<boolean> => (await digest(target)) === (await digest(source));

describe('live mode read as a replica: the replication stream applied', () => {
  it('every kind of write (transactions, scripts, renames, expiries, streams and their groups, binary keys, a big value) reaches the target in order; no keyspace events needed', async () => {
    const source = await server();
    const target = await server();
    expect(await source.cmd('CONFIG', 'GET', 'notify-keyspace-events')).toEqual(['notify-keyspace-events', '']);
    const seeded = await seedEveryType(source);
    await seedStrings(source, 2000);
    const dir = tempDir();
    const run = await startLive(source, target, dir);
    expect(run.output()).toContain(`Reading the source as its replica: one snapshot by PSYNC from source 127.0.0.1:${source.port}`);
    const c = source.client;
    await c.sendCommand(['SET', 'counter', '10']);
    await c.sendCommand(['INCRBY', 'counter', '5']);
    await c.sendCommand(['APPEND', 'key:1', '-appended']);
    await c.sendCommand(['LPUSH', 'list', 'a', 'b', 'c']);
    await c.sendCommand(['LPOP', 'list']);
    await c.sendCommand(['HSET', 'hash2', 'f1', 'v1', 'f2', 'v2']);
    await c.sendCommand(['SADD', 'set2', 'x', 'y']);
    await c.sendCommand(['ZADD', 'zset2', '1', 'one', '2', 'two']);
    await c.sendCommand(['ZUNIONSTORE', 'zset3', '1', 'zset2']);
    await c.sendCommand(['SORT', 'list', 'ALPHA', 'STORE', 'sorted']);
    await c.multi().incr('counter').hSet('hash2', 'f3', 'v3').rPush('list', 'tx').exec();
    await c.sendCommand(['EVAL', "redis.call('SET', KEYS[1], 'from a script'); return redis.call('INCR', KEYS[2])", '2', 'scripted', 'counter']);
    await c.sendCommand(['RENAME', 'key:2', 'key:2-renamed']);
    await c.sendCommand(['DEL', 'key:3', 'key:4']);
    await c.sendCommand(['EXPIRE', 'key:5', '1000']);
    await c.sendCommand(['SET', 'short-lived', 'x', 'PX', '50']);
    await c.sendCommand(['XADD', 'stream2', '*', 'f', 'v']);
    await c.sendCommand(['XADD', 'stream2', '*', 'f', 'w']);
    await c.sendCommand(['XGROUP', 'CREATE', 'stream2', 'readers', '0']);
    await c.sendCommand(['XREADGROUP', 'GROUP', 'readers', 'alice', 'COUNT', '1', 'STREAMS', 'stream2', '>']);
    await c.sendCommand([Buffer.from('SET'), Buffer.from([0xff, 0x00, 0x0d, 0x0a]), Buffer.from([0x80, 0x0d, 0x0a, 0x00])]);
    await c.sendCommand(['SET', 'big', 'v'.repeat(3 * 1024 * 1024)]);
    // The short-lived key expires on the source, which then sends its DEL down the stream.
    await waitUntil(async () => Number(await source.cmd('EXISTS', 'short-lived')) === 0, 'the short-lived key to expire');
    await waitUntil(sameDigest(source, target), 'the target to equal the source', 20_000, 50);
    const result = await cutover(run);
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).toMatch(/^Snapshot: Number of restored keys: (\d+)$/m);
    expect(Number(/^Snapshot: Number of restored keys: (\d+)$/m.exec(result.stdout)?.[1])).toBe(seeded + 2000);
    expect(result.stdout).toMatch(/^Live: \d+ commands applied from the replication stream \([1-9]\d* transactions\), 0 keys re-copied, 0 keys deleted, 0 failed/m);
    expect(result.stdout).toMatch(/^Cutover: the stream of 1 master\(s\) applied up to the offset the source had \(0 bytes behind\)$/m);
    expect(result.stdout).toMatch(/^Verification of changed keys: 0 missing, 0 type, 0 value, 0 ttl \([1-9]\d* keys checked/m);
    expect(await digest(target)).toBe(await digest(source));
    expect(Number(await target.cmd('EXPIRETIME', 'key:5'))).toBe(Number(await source.cmd('EXPIRETIME', 'key:5')));
    const summary = summaryOf(dir);
    expect(summary.live.reader).toBe('replication');
    expect(summary.live.recopied).toBe(0);
    expect(summary.exit_status).toBe(0);
  });

  it('diskless snapshot copied slowly while written to: the stream that follows its end mark waits, and is applied after it', async () => {
    // 12 MB of snapshot, not compressed: many times what the reader takes at once.
    const source = await server(['--rdbcompression', 'no']);
    const target = await server();
    await source.cmd('EVAL', "for i = 1, 20000 do redis.call('SET', 'key:' .. i, string.rep('v', 600)) end", '0');
    const dir = tempDir();
    // A pause after each batch: the copy takes seconds, long after the transfer ended and the stream began.
    const run = spawnMigrator({ ...endpoints(source, target), MIGRATION_MODE: 'live', SLEEP_TIME: 0.1, PROGRESS: 'off', LIVE_IDLE_TIMEOUT: 2, SUMMARY_JSON_FILE: join(dir, 'summary.json') }, dir);
    await waitUntil(async () => Number(await target.cmd('DBSIZE')) > 0 || /^(Error|Stopped)/m.test(run.output()), 'the copy to begin', 30_000, 20);
    let writes = 0;
    while (!run.output().includes(APPLYING) && !/^(Error|Stopped)/m.test(run.output())) {
      await source.client.sendCommand(['INCR', `counter:${writes % 50}`]);
      writes += 1;
    }
    const result = await run.done;
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).not.toMatch(/snapshot was cut|read again/);
    expect(writes).toBeGreaterThan(0);
    expect(await digest(target)).toBe(await digest(source));
  });

  it('disk-based snapshot, written to all along: what came during the copy waits and is applied; LIVE_IDLE_TIMEOUT ends the run equal', async () => {
    const source = await server(['--repl-diskless-sync', 'no']);
    const target = await server();
    await seedStrings(source, 20_000);
    const dir = tempDir();
    const run = spawnMigrator({ ...endpoints(source, target), MIGRATION_MODE: 'live', SLEEP_TIME: 0, PROGRESS: 'off', LIVE_IDLE_TIMEOUT: 2, SUMMARY_JSON_FILE: join(dir, 'summary.json') }, dir);
    // Writes from before the snapshot until the live phase is under way: some land during the copy.
    let writes = 0;
    while (!run.output().includes(APPLYING) && !/^(Error|Stopped)/m.test(run.output())) {
      await source.client.sendCommand(['INCR', `counter:${writes % 50}`]);
      await source.client.sendCommand(['RPUSH', 'log', String(writes)]);
      writes += 1;
    }
    for (let i = 0; i < 500; i++) await source.client.sendCommand(['HINCRBY', 'tally', `f${i % 7}`, '1']);
    const result = await run.done;
    expect(result.code, describeRun(result)).toBe(0);
    expect(writes).toBeGreaterThan(0);
    expect(await digest(target)).toBe(await digest(source));
    expect(summaryOf(dir).live.ended).toBe('idle');
    expect(Number(await target.cmd('LLEN', 'log'))).toBe(writes);
  });

  it('keys outside the selection feeding keys inside are re-copied, said; FLUSHDB deletes only the selected keys on the target', async () => {
    const source = await server();
    const target = await server();
    await target.cmd('SET', 'target-own', 'kept');
    for (let i = 0; i < 100; i++) await source.cmd('SET', `in:${i}`, `v${i}`);
    await source.cmd('SADD', 'out:set', 'a', 'b');
    const dir = tempDir();
    const run = await startLive(source, target, dir, { SCAN_MATCH_PATTERN: 'in:*' });
    await source.cmd('SET', 'out:x', 'not ours');
    await source.cmd('SET', 'out:moved', 'came from outside');
    await source.cmd('RENAME', 'out:moved', 'in:moved');
    await source.cmd('SUNIONSTORE', 'in:union', 'out:set');
    await source.cmd('LPUSH', 'in:union-list', 'z');
    // A key re-copied once stays on that path: its later commands are re-copies too, and never applied twice.
    await source.cmd('SADD', 'in:union', 'c');
    await waitUntil(async () => Number(await target.cmd('SCARD', 'in:union')) === 3, 'in:union on the target', 20_000, 50);
    // A flush inside a transaction (a script's effects come as one): still only the selected keys go.
    await source.client.multi().set('in:tx', '1').flushDb().exec();
    await source.cmd('SET', 'in:after', 'flush');
    await waitUntil(async () => String(await target.cmd('GET', 'in:after')) === 'flush', 'the write after FLUSHDB', 20_000, 50);
    const result = await cutover(run);
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).toMatch(/^Re-copied from the source, as their commands could not be applied as they came: 2 fed by keys outside the selection$/m);
    expect(await target.cmd('DBSIZE')).toBe(2);
    expect((await target.cmd('KEYS', '*') as string[]).sort()).toEqual(['in:after', 'target-own']);
    expect(summaryOf(dir).live.recopied).toBe(2);
  });

  it('a command the target refuses (renamed away there) is re-copied instead, and the target still ends equal', async () => {
    const source = await server();
    const target = await server(['--rename-command', 'LINSERT', '']);
    await source.cmd('RPUSH', 'list', 'a', 'c');
    const dir = tempDir();
    const run = await startLive(source, target, dir);
    await source.cmd('LINSERT', 'list', 'BEFORE', 'c', 'b');
    await source.cmd('RPUSH', 'list', 'd');
    await waitUntil(sameDigest(source, target), 'the target to equal the source', 20_000, 50);
    const result = await cutover(run);
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).toMatch(/^Re-copied from the source, as their commands could not be applied as they came: 1 refused by the target \(first refusal: LINSERT: ERR unknown command/m);
    expect(await target.cmd('LRANGE', 'list', '0', '-1')).toEqual(['a', 'b', 'c', 'd']);
    expect(readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8')).toMatch(/The target refused LINSERT on \|list\|/);
  });

  it('SWAPDB on the source\'s database stops the run in one line, exit 1', async () => {
    const source = await server();
    const target = await server();
    await source.cmd('SET', 'a', '1');
    const dir = tempDir();
    const run = await startLive(source, target, dir);
    await source.cmd('SWAPDB', '0', '1');
    const result = await run.done;
    expect(result.code, describeRun(result)).toBe(1);
    expect(result.stdout).toMatch(/^Stopped early: the source ran SWAPDB on database 0, which replaces its keys all at once: run the migration again for a new snapshot$/m);
  });
});

/** The source's INFO stats figure `name` (sync_partial_ok, sync_full). */
async function stat(server: LocalServer, name: string): Promise<number> {
  const info = String(await server.cmd('INFO', 'stats'));
  return Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
}

describe('a replication link cut during the stream', () => {
  it('continues by partial resync from the offset applied: nothing copied again, the target ends equal', async () => {
    const source = await server();
    const target = await server();
    await seedStrings(source, 1000);
    const proxy = await startProxy(source.port);
    try {
      const dir = tempDir();
      const run = await startLive(source, target, dir, { SOURCE_REDIS_PORT: proxy.port, RECONNECT_TIMEOUT: 20 });
      for (let i = 0; i < 200; i++) await source.client.sendCommand(['RPUSH', 'log', `before-${i}`]);
      await waitUntil(async () => Number(await target.cmd('LLEN', 'log')) === 200, 'the writes before the cut applied', 20_000, 50);
      const [fullBefore, partialBefore] = [await fullSyncs(source), await stat(source, 'sync_partial_ok')];
      proxy.cutAll();
      for (let i = 0; i < 200; i++) await source.client.sendCommand(['RPUSH', 'log', `after-${i}`]);
      await source.client.sendCommand(['INCR', 'counter']);
      await waitUntil(sameDigest(source, target), 'the target to equal the source', 30_000, 50);
      const result = await cutover(run);
      expect(result.code, describeRun(result)).toBe(0);
      expect(await stat(source, 'sync_partial_ok')).toBe(partialBefore + 1);
      expect(await fullSyncs(source)).toBe(fullBefore);
      expect(result.stdout).toMatch(/^source 127\.0\.0\.1:\d+: the stream continues from offset \d+ \(partial resync\)$/m);
      expect(result.stdout).toMatch(/^Replication links cut and continued by partial resync, nothing copied again: 1 \(/m);
      expect(await target.cmd('LRANGE', 'log', '0', '-1')).toEqual(await source.cmd('LRANGE', 'log', '0', '-1'));
    } finally {
      await proxy.close();
    }
  });

  it('a backlog too small to continue from: the master starts over from a new snapshot, its keys deleted on the target first; the target ends equal', async () => {
    const source = await server(['--repl-backlog-size', '16kb']);
    const target = await server();
    await source.cmd('SET', 'deleted-during-the-cut', '1');
    await source.cmd('RPUSH', 'list', 'a');
    const proxy = await startProxy(source.port);
    try {
      const dir = tempDir();
      const run = await startLive(source, target, dir, { SOURCE_REDIS_PORT: proxy.port, RECONNECT_TIMEOUT: 20 });
      await source.cmd('RPUSH', 'list', 'b');
      await waitUntil(async () => Number(await target.cmd('LLEN', 'list')) === 2, 'the write before the cut', 20_000, 50);
      const fullBefore = await fullSyncs(source);
      // New connections are refused while far more than the backlog is written; the link is cut with them.
      const refusing = proxy.refuse(1500, true);
      await source.cmd('DEL', 'deleted-during-the-cut');
      for (let i = 0; i < 100; i++) await source.client.sendCommand(['SET', `filler:${i}`, 'x'.repeat(1000)]);
      await source.cmd('RPUSH', 'list', 'c');
      await refusing;
      await waitUntil(async () => run.output().includes('keys copied from its new snapshot'), 'the new snapshot copied', 30_000, 50);
      await source.cmd('RPUSH', 'list', 'd');
      await waitUntil(sameDigest(source, target), 'the target to equal the source', 30_000, 50);
      const result = await cutover(run);
      expect(result.code, describeRun(result)).toBe(0);
      expect(result.stdout).toMatch(/^source 127\.0\.0\.1:\d+ cannot continue the stream from offset \d+ .*: it offered a full resync: starting over from a new snapshot/m);
      expect(result.stdout).toMatch(/^Replication links cut past the source's backlog, started over from a new snapshot \(the target's keys from those masters deleted first\): 1 /m);
      // One fork: the full resync offered in answer to the partial one is the one taken.
      expect(await fullSyncs(source)).toBe(fullBefore + 1);
      expect(Number(await target.cmd('EXISTS', 'deleted-during-the-cut'))).toBe(0);
      expect(await target.cmd('LRANGE', 'list', '0', '-1')).toEqual(['a', 'b', 'c', 'd']);
    } finally {
      await proxy.close();
    }
  });
});

describe('who may read the source as its replica, in live mode', () => {
  it('an ACL user allowed to replicate: the stream applied; one without +psync: auto follows keyspace events instead, and SOURCE_READER=replication refuses in one line', async () => {
    const source = await server(['--notify-keyspace-events', 'KEA']);
    const target = await server();
    await source.cmd('ACL', 'SETUSER', 'mover', 'on', '>mover-secret-1', '~*', '&*', '+@all');
    await source.cmd('ACL', 'SETUSER', 'reader', 'on', '>reader-secret-2', '~*', '&*', '+@all', '-psync', '-sync');
    await source.cmd('SET', 'a', '1');
    const allowed = await startLive(source, target, tempDir(), { SOURCE_REDIS_USERNAME: 'mover', SOURCE_REDIS_PASSWORD: 'mover-secret-1' });
    await source.cmd('INCR', 'a');
    await waitUntil(async () => String(await target.cmd('GET', 'a')) === '2', 'the change applied', 20_000, 50);
    const done = await cutover(allowed);
    expect(done.code, describeRun(done)).toBe(0);
    expect(done.stdout).toMatch(/^Live: 1 commands applied from the replication stream/m);
    expect(done.stdout).not.toContain('mover-secret-1');

    await target.cmd('FLUSHALL');
    const refused = { ...endpoints(source, target), MIGRATION_MODE: 'live', SLEEP_TIME: 0, PROGRESS: 'off', SOURCE_REDIS_USERNAME: 'reader', SOURCE_REDIS_PASSWORD: 'reader-secret-2', LIVE_IDLE_TIMEOUT: 1, LIVE_SWEEP_RATE: 0 };
    const byEvents = await runMigrator(refused, tempDir());
    expect(byEvents.code, describeRun(byEvents)).toBe(0);
    expect(byEvents.stdout).toMatch(/^Reading the source by SCAN: source 127\.0\.0\.1:\d+ refused PSYNC: .*(NOPERM|no permissions)/mi);
    expect(byEvents.stdout).toMatch(/^Live: subscribed to the source's keyspace events/m);
    const insisted = await runMigrator({ ...refused, SOURCE_READER: 'replication' }, tempDir());
    expect(insisted.code, describeRun(insisted)).toBe(1);
    expect(insisted.stdout).toMatch(/^Error reading the source as its replica : source 127\.0\.0\.1:\d+ refused PSYNC: /m);
  });
});

describe('a source user that may replicate but not read the command table', () => {
  it('stops in one line naming the refusal, exit 1, no stack trace', async () => {
    const source = await server();
    const target = await server();
    await source.cmd('ACL', 'SETUSER', 'mover', 'on', '>mover-secret-1', '~*', '&*', '+@all', '-command');
    await source.cmd('SET', 'a', '1');
    const result = await runMigrator({ ...endpoints(source, target), MIGRATION_MODE: 'live', SLEEP_TIME: 0, PROGRESS: 'off', SOURCE_REDIS_USERNAME: 'mover', SOURCE_REDIS_PASSWORD: 'mover-secret-1' }, tempDir());
    expect(result.code, describeRun(result)).toBe(1);
    expect(result.stdout).toMatch(/^Stopped early: .*NOPERM.*command/im);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});

/** The source's output buffer for its one replica (CLIENT LIST's omem): what it holds that the replica has not read. */
async function replicaOutputBytes(source: LocalServer): Promise<number> {
  const line = String(await source.cmd('CLIENT', 'LIST', 'TYPE', 'replica'));
  return Number(/\bomem=(\d+)/.exec(line)?.[1] ?? Number.NaN);
}

describe('a slow target under heavy writes', () => {
  it('the link holds with a small replica output-buffer limit on the source: what the target has not taken waits in memory, then in the spool', async () => {
    const source = await server(['--client-output-buffer-limit', 'replica 1mb 512kb 2']);
    const target = await server();
    const proxy = await startProxy(target.port);
    try {
      const dir = tempDir();
      const run = await startLive(source, target, dir, { DESTINATION_REDIS_PORT: proxy.port, REPLY_TIMEOUT: 0 });
      // Streaming first: until a diskless master has taken our first ACK after the snapshot, it holds the writes itself.
      await source.cmd('SET', 'streaming', '1');
      await waitUntil(async () => Number(await target.cmd('EXISTS', 'streaming')) === 1, 'the stream under way', 20_000, 20);
      // The target takes nothing while 40 MB are written: forty times what the source would buffer for a replica,
      // and more than our memory (8 MB) and the sockets' buffers hold, so the spool must take the rest. Each write
      // waits until the source has handed the last one to us (its output buffer for the replica near empty), so the
      // test waits on what the tool does, never on how fast this machine schedules it.
      const release = proxy.hold();
      try {
        const value = 'v'.repeat(100_000);
        for (let i = 0; i < 400; i++) {
          await source.client.sendCommand(['SET', `big:${i % 40}`, `${i}-${value}`]);
          await waitUntil(async () => (await replicaOutputBytes(source)) < 256 * 1024, 'the source to hand the write to its replica', 20_000, 2);
        }
      } finally {
        release();
      }
      await waitUntil(sameDigest(source, target), 'the target to equal the source', 30_000, 50);
      const result = await cutover(run);
      expect(result.code, describeRun(result)).toBe(0);
      expect(result.stdout).not.toMatch(/continuing from offset|partial resync|new snapshot/);
      expect(String(await source.cmd('INFO', 'stats'))).toMatch(/^sync_full:1\r?$/m);
      // The summary says what the spool took: the 40 MB written while the target took nothing, less what memory held.
      const spooled = /^Replication spool: up to ([\d.]+) MB on disk at once \(REPLICATION_SPOOL_MB=\d+\), ([\d.]+) MB through it in all/m.exec(result.stdout);
      expect(spooled, describeRun(result)).not.toBeNull();
      expect(Number(spooled?.[1])).toBeGreaterThan(0);
    } finally {
      await proxy.close();
    }
  });
});

describe('CHECKPOINT_FILE in live mode: a killed run resumes each stream by its offset', () => {
  it('kill -9, writes meanwhile, the same run again: partial resync from the recorded offset, no snapshot copied, the target ends equal', async () => {
    const source = await server();
    const target = await server();
    await seedStrings(source, 1000);
    const dir = tempDir();
    const checkpoint = join(dir, 'live.checkpoint');
    const first = await startLive(source, target, dir, { CHECKPOINT_FILE: checkpoint });
    for (let i = 0; i < 100; i++) await source.client.sendCommand(['RPUSH', 'log', `first-${i}`]);
    await waitUntil(async () => Number(await target.cmd('LLEN', 'log')) === 100, 'the first run\'s writes applied', 20_000, 50);
    // Written every second: wait until it records the offset past those writes.
    const recorded = async (): Promise<number> => (JSON.parse(readFileSync(checkpoint, 'utf8')) as { masters: { offset: number }[] }).masters[0]?.offset ?? 0;
    const offset = Number(/^master_repl_offset:(\d+)/m.exec(String(await source.cmd('INFO', 'replication')))?.[1]);
    await waitUntil(async () => (await recorded().catch(() => 0)) >= offset, 'the checkpoint to record the offset', 20_000, 50);
    // Applied after the checkpoint's last write and before the kill: a resumed run must not apply them twice.
    for (let i = 0; i < 30; i++) await source.client.sendCommand(['INCR', 'counter']);
    await waitUntil(async () => Number(await target.cmd('GET', 'counter')) === 30, 'the increments applied', 20_000, 10);
    first.signalAll('SIGKILL');
    await first.done;
    for (let i = 0; i < 100; i++) await source.client.sendCommand(['RPUSH', 'log', `meanwhile-${i}`]);
    await source.cmd('DEL', 'key:1');
    const [fullBefore, partialBefore] = [await fullSyncs(source), await stat(source, 'sync_partial_ok')];
    const second = await startLive(source, target, dir, { CHECKPOINT_FILE: checkpoint });
    await source.client.sendCommand(['RPUSH', 'log', 'second']);
    await waitUntil(sameDigest(source, target), 'the target to equal the source', 30_000, 50);
    const result = await cutover(second);
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).toMatch(/^Reading the source as its replica: each stream continued from CHECKPOINT_FILE by PSYNC, from source 127\.0\.0\.1:\d+$/m);
    expect(result.stdout).toMatch(new RegExp(`^Resuming from ${checkpoint.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: source 127\\.0\\.0\\.1:\\d+ from offset \\d+$`, 'm'));
    expect(result.stdout).not.toMatch(/^Snapshot:/m);
    expect(await stat(source, 'sync_partial_ok')).toBe(partialBefore + 1);
    expect(await fullSyncs(source)).toBe(fullBefore);
    expect(Number(await target.cmd('LLEN', 'log'))).toBe(201);
    expect(Number(await target.cmd('GET', 'counter'))).toBe(30);
    expect(result.stdout).toMatch(/written again after the checkpoint's offset/);
    expect(result.stdout).toMatch(/^Checkpoint: .* records each master's offset: a rerun with it continues the streams from there$/m);
  });

  it('writes past the source\'s backlog while the run was down: that master starts over from a new snapshot, its keys on the target deleted first', async () => {
    const source = await server(['--repl-backlog-size', '16kb']);
    const target = await server();
    await source.cmd('SET', 'deleted-while-down', '1');
    const dir = tempDir();
    const checkpoint = join(dir, 'live.checkpoint');
    const first = await startLive(source, target, dir, { CHECKPOINT_FILE: checkpoint });
    await waitUntil(async () => { try { readFileSync(checkpoint); return true; } catch { return false; } }, 'the checkpoint written', 20_000, 50);
    first.signalAll('SIGKILL');
    await first.done;
    await source.cmd('DEL', 'deleted-while-down');
    for (let i = 0; i < 100; i++) await source.client.sendCommand(['SET', `filler:${i}`, 'x'.repeat(1000)]);
    const second = await startLive(source, target, dir, { CHECKPOINT_FILE: checkpoint });
    await waitUntil(sameDigest(source, target), 'the target to equal the source', 30_000, 50);
    const result = await cutover(second);
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).toMatch(/^Resuming from .*: source 127\.0\.0\.1:\d+: a new snapshot \(cannot continue the stream from offset \d+ .*it offered a full resync\)$/m);
    expect(result.stdout).toMatch(/^source 127\.0\.0\.1:\d+: 100 keys copied from its new snapshot \(0 failed\)/m);
    expect(Number(await target.cmd('EXISTS', 'deleted-while-down'))).toBe(0);
  });

  it('a checkpoint of other settings, or of a copy, is refused before anything is written (exit 1)', async () => {
    const source = await server();
    const target = await server();
    await source.cmd('SET', 'a', '1');
    const dir = tempDir();
    const checkpoint = join(dir, 'live.checkpoint');
    const first = await startLive(source, target, dir, { CHECKPOINT_FILE: checkpoint });
    await waitUntil(async () => { try { readFileSync(checkpoint); return true; } catch { return false; } }, 'the checkpoint written', 20_000, 50);
    const ended = await cutover(first);
    expect(ended.code, describeRun(ended)).toBe(0);
    const other = await runMigrator({ ...endpoints(source, target), MIGRATION_MODE: 'live', SCAN_MATCH_PATTERN: 'x*', CHECKPOINT_FILE: checkpoint, PROGRESS: 'off' }, dir);
    expect(other.code, describeRun(other)).toBe(1);
    expect(other.stdout).toMatch(/^Error in settings : CHECKPOINT_FILE .* was written with SCAN_MATCH_PATTERN="\*", and this run has "x\*"/m);
    const copy = await runMigrator({ ...endpoints(source, target), CHECKPOINT_FILE: checkpoint, PROGRESS: 'off' }, dir);
    expect(copy.code, describeRun(copy)).toBe(1);
    expect(copy.stdout).toMatch(/^Error in settings : CHECKPOINT_FILE .* holds a live run's \(replication offsets\) checkpoint, and this run needs a copy's \(SCAN cursors\)/m);
  });
});

describe('a cluster source read as its replica, live', () => {
  let source: TestCluster;
  let target: TestCluster;
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('one link per master, each stream applied in its order; the load writer\'s mix across every master converges', async () => {
    [source, target] = await Promise.all([startCluster(3), startCluster(3)]);
    for (let i = 0; i < 300; i++) await (await ownerOf(source, `key:${i}`)).client.sendCommand(['SET', `key:${i}`, `seed-${i}`]);
    const dir = tempDir();
    const run = spawnMigrator({ ...source.settings('SOURCE'), ...target.settings('DESTINATION'), MIGRATION_MODE: 'live', SLEEP_TIME: 0, PROGRESS: 'off' }, dir);
    await waitUntil(async () => run.output().includes(APPLYING) || /^(Error|Stopped)/m.test(run.output()), 'the live phase', 30_000, 50);
    expect(run.output()).toContain('Live: applying the replication stream of 3 master(s)');
    // No expiries: the keyspaces are compared whole, at moments the servers expire keys on their own.
    const load = startLoad({ port: (source.masters[0] as LocalServer).port, cluster: true, rate: 2000, duration: 2, keys: 500, pxPercent: 0, mix: { expire: 0, pexpire: 0 } });
    await load.done;
    const same = async (): Promise<boolean> => JSON.stringify([...(await keyspaceOf(source.masters))].sort()) === JSON.stringify([...(await keyspaceOf(target.masters))].sort());
    await waitUntil(same, 'the target cluster to equal the source', 30_000, 100);
    const result = await cutover(run);
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).toMatch(/^Cutover: the stream of 3 master\(s\) applied up to the offset the source had \(0 bytes behind\)$/m);
    expect(result.stdout).toMatch(/^Verification of changed keys: 0 missing, 0 type, 0 value, 0 ttl/m);
  }, 90_000);
});

describe('a cluster source master failed over while its stream is followed', () => {
  let source: TestCluster;
  let target: TestCluster;
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('the stream continues on the promoted replica by partial resync (psync2), nothing copied again; converged', async () => {
    [source, target] = await Promise.all([startCluster(3, { replicas: 1, nodeTimeoutMs: 2000 }), startCluster(3)]);
    const write = async (from: number, count: number, value: string): Promise<void> => {
      for (let i = from; i < from + count; i++) await (await ownerOf(source, `key:${i}`)).client.sendCommand(['SET', `key:${i}`, `${value}-${i}`]);
    };
    await write(0, 300, 'seed');
    const dir = tempDir();
    const run = spawnMigrator({ ...source.settings('SOURCE'), ...target.settings('DESTINATION'), MIGRATION_MODE: 'live', SLEEP_TIME: 0, PROGRESS: 'off', RECONNECT_TIMEOUT: 30 }, dir);
    await waitUntil(async () => run.output().includes(APPLYING) || /^(Error|Stopped)/m.test(run.output()), 'the live phase', 30_000, 50);
    await write(0, 100, 'before');
    const old = source.masters[0] as LocalServer;
    const [replica] = await source.replicasOf(old);
    const partialBefore = await stat(replica as LocalServer, 'sync_partial_ok');
    const promoted = await failOver(source, old);
    await write(0, 300, 'after');
    const same = async (): Promise<boolean> => JSON.stringify([...(await keyspaceOf(await source.servingMasters()))].sort()) === JSON.stringify([...(await keyspaceOf(target.masters))].sort());
    await waitUntil(same, 'the target cluster to equal the source', 40_000, 100);
    // A flush on the promoted master: its slots' keys go from the target too (they are that master's now).
    await promoted.cmd('FLUSHALL');
    await waitUntil(same, 'the flush on the promoted master applied on the target', 40_000, 100);
    const result = await cutover(run);
    expect(result.code, describeRun(result)).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^source 127\\.0\\.0\\.1:${old.port}: the stream continues from offset \\d+ on source 127\\.0\\.0\\.1:${promoted.port} \\(its slots' master now: a failover\\) \\(partial resync\\)$`, 'm'));
    // Two partial resyncs served by the promoted replica: its old master's, now its replica, and ours.
    expect(await stat(promoted, 'sync_partial_ok')).toBeGreaterThanOrEqual(partialBefore + 2);
    expect(result.stdout).toMatch(/^Verification of changed keys: 0 missing, 0 type, 0 value, 0 ttl/m);
  }, 120_000);
});
