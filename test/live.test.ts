// MIGRATION_MODE=live and liveonly against real servers with keyspace notifications: changes during and after
// the copy end on the target; lost events (a killed subscriber, an output buffer overrun, FLUSHALL) are gaps, repaired.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDir } from './helpers/fixtures.js';
import { digest, seedStrings } from './helpers/sample-data.js';
import { firstKeyspaceDifference } from './helpers/inspect.js';
import { startLoad } from './helpers/load.js';
import { startProxy } from './helpers/proxy.js';
import { endedWithin, endpoints, runMigrator, spawnMigrator, startRedis, waitUntil, type LocalServer, type RunningMigrator } from './helpers/servers.js';

const NOTIFY = ['--notify-keyspace-events', 'KEA'];
// Keyspace events are what this file tests (the replication stream's live mode: live-stream.test.ts).
const FAST = { SOURCE_READER: 'scan', SLEEP_TIME: 0, PROGRESS: 'off', LIVE_SWEEP_RATE: 0, REPLY_TIMEOUT: 5 };

interface LiveSummary {
  live: { applied: number; deleted: number; gaps: number; repairs: number; events: number; lag_ms: { p50: number; p99: number } };
  verification: { live: { checked: number; identical: number } } | null;
  exit_status: number;
}

describe('live replication', () => {
  let source: LocalServer;
  let target: LocalServer;
  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(NOTIFY), startRedis()]);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const fresh = async (): Promise<string> => {
    await Promise.all([source.cmd('FLUSHALL'), target.cmd('FLUSHALL')]);
    await source.cmd('CONFIG', 'RESETSTAT');
    return runDir();
  };
  const settings = (dir: string, extra: Record<string, string | number> = {}): Record<string, string | number> => ({
    ...endpoints(source, target), ...FAST, MIGRATION_MODE: 'live', SUMMARY_JSON_FILE: join(dir, 'summary.json'), ...extra,
  });
  const summaryOf = (dir: string): LiveSummary => JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as LiveSummary;

  /** Starts a live run and waits for its live phase. */
  async function startLive(dir: string, extra: Record<string, string | number> = {}): Promise<RunningMigrator> {
    const run = spawnMigrator(settings(dir, extra), dir);
    await waitUntil(async () => /Live: applying changes|Live: subscribed .* master\(s\)$/m.test(run.output()) || /exit|Error|Cannot/.test(run.output()), 'the live phase', 30_000, 50);
    if (!/Live: applying changes|subscribed/.test(run.output())) throw new Error(run.output());
    if (extra.MIGRATION_MODE !== 'liveonly') await waitUntil(async () => run.output().includes('Live: applying changes'), 'the live phase', 30_000, 50);
    return run;
  }

  async function cutover(run: RunningMigrator): Promise<{ code: number; stdout: string }> {
    run.signalScript('SIGTERM');
    const result = await run.done;
    return { code: result.code, stdout: result.stdout + result.stderr };
  }

  it.each(['dump', 'type'])('COPY_METHOD=%s: changes during the live phase (set, hash, delete, rename, expire, a big list, a stream): applied; SIGTERM is the cutover, exit 0, target equals source', async (method) => {
    const dir = await fresh();
    await seedStrings(source, 2000);
    const run = await startLive(dir, { COPY_METHOD: method });
    for (let i = 0; i < 200; i++) await source.cmd('SET', `key:${i}`, `changed-${i}`);
    await source.cmd('HSET', 'h', 'a', '1', 'b', '2');
    await source.cmd('DEL', 'key:500', 'key:501');
    await source.cmd('RENAME', 'key:600', 'renamed:600');
    await source.cmd('PEXPIRE', 'key:700', '600000');
    await source.client.sendCommand(['RPUSH', 'big', ...Array.from({ length: 5000 }, (_, i) => `item-${i}`)]);
    await source.cmd('XADD', 'st', '*', 'f', 'v');
    await source.cmd('XGROUP', 'CREATE', 'st', 'g', '0');
    await source.cmd('XREADGROUP', 'GROUP', 'g', 'alice', 'COUNT', '1', 'STREAMS', 'st', '>');
    await source.client.sendCommand(['SET', Buffer.from([0xff, 0x00, 0x7f]), Buffer.from([0x80, 0x81])]);
    await waitUntil(async () => (await digest(target)) === (await digest(source)), 'the target to catch up', 20_000, 100);
    const result = await cutover(run);
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/^Live: \d+ changes applied, 3 keys deleted, 0 failed/m);
    expect(result.stdout).toMatch(/^Verification of changed keys: 0 missing, 0 type, 0 value, 0 ttl \([1-9]\d* keys checked/m);
    expect(await digest(target)).toBe(await digest(source));
    expect(Number(await target.cmd('PEXPIRETIME', 'key:700'))).toBe(Number(await source.cmd('PEXPIRETIME', 'key:700')));
    expect(summaryOf(dir).live.gaps).toBe(0);
  });

  it.each(['dump', 'type'])('COPY_METHOD=%s under the load writer (every type, renames, expiries, big lists, consumer reads) at 3000 writes/s: converged, verified, no repairs', async (method) => {
    const dir = await fresh();
    const run = await startLive(dir, { COPY_METHOD: method, LIVE_SWEEP_RATE: 2000 });
    const load = startLoad({ port: source.port, rate: 3000, duration: 3, keys: 2000, seed: method === 'dump' ? 1 : 2 });
    const stats = await load.done;
    expect(stats.errors).toBe(0);
    await waitUntil(async () => (await firstKeyspaceDifference(source, target)) === null, 'the target to catch up', 30_000, 200);
    const result = await cutover(run);
    expect(result.code, result.stdout + readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8')).toBe(0);
    expect(result.stdout).toMatch(/^Verification of changed keys: 0 missing, 0 type, 0 value, 0 ttl/m);
    expect(summaryOf(dir).live.repairs, result.stdout).toBe(0);
    expect(await firstKeyspaceDifference(source, target)).toBeNull();
  });

  it('keys changed or deleted while the copy is under way end in their latest state (no stale write wins)', async () => {
    const dir = await fresh();
    await seedStrings(source, 40_000);
    const run = spawnMigrator(settings(dir, { PIPELINE_BATCH_SIZE: 100, SCAN_BATCH_SIZE: 100 }), dir);
    await waitUntil(async () => Number(await target.cmd('DBSIZE')) > 0, 'the copy to start', 30_000, 5);
    // While the copy runs: delete keys it may be reading right now, and change others.
    const pipeline = [];
    for (let i = 0; i < 40_000; i += 40) pipeline.push(source.cmd('DEL', `key:${i}`), source.cmd('SET', `key:${i + 1}`, 'latest'));
    await Promise.all(pipeline);
    await waitUntil(async () => run.output().includes('Live: applying changes'), 'the live phase', 60_000, 50);
    await waitUntil(async () => (await digest(target)) === (await digest(source)), 'the target to catch up', 30_000, 100);
    const result = await cutover(run);
    expect(result.code, result.stdout).toBe(0);
    expect(await target.cmd('EXISTS', 'key:0')).toBe(0);
    expect(await target.cmd('GET', 'key:1')).toBe('latest');
  });

  it('CLIENT KILL TYPE pubsub mid-run, with writes in the gap: detected, repaired by the sweep, converged', async () => {
    const dir = await fresh();
    await seedStrings(source, 1000);
    const run = await startLive(dir);
    await source.cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    for (let i = 0; i < 300; i++) await source.cmd('SET', `key:${i}`, `in-the-gap-${i}`);
    await waitUntil(async () => (await digest(target)) === (await digest(source)), 'the target to converge', 30_000, 100);
    const result = await cutover(run);
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/^Gaps in the source's events: \d+ \(the event connection to source .* was lost/m);
    expect(summaryOf(dir).live.gaps).toBeGreaterThan(0);
    expect(await digest(target)).toBe(await digest(source));
  });

  it('a subscriber pushed over client-output-buffer-limit pubsub (its reads stalled by a proxy): the server drops it, the gap is repaired, converged', async () => {
    const dir = await fresh();
    await seedStrings(source, 100);
    await source.cmd('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 32kb 16kb 1');
    const proxy = await startProxy(source.port);
    try {
      const run = await startLive(dir, { SOURCE_REDIS_PORT: proxy.port });
      // While the tool reads nothing, long key names make big messages: some 20 MB, far past what the sockets hold.
      const stalled = proxy.stall(2500);
      const long = 'k'.repeat(10_000);
      await Promise.all(Array.from({ length: 2000 }, (_, i) => source.cmd('SET', `${long}:${i}`, `v${i}`)));
      await stalled;
      await waitUntil(async () => (await digest(target)) === (await digest(source)), 'the target to converge', 30_000, 100);
      const result = await cutover(run);
      expect(result.code, result.stdout).toBe(0);
      expect(summaryOf(dir).live.gaps, result.stdout).toBeGreaterThan(0);
      expect(Number(await target.cmd('DBSIZE'))).toBe(2100);
    } finally {
      await proxy.close();
      await source.cmd('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 32mb 8mb 60');
    }
  });

  it('every connection to the target cut, then every one to the source, while the load writer runs: reconnected, nothing lost, converged, verified', async () => {
    const dir = await fresh();
    await seedStrings(source, 500);
    const [toSource, toTarget] = await Promise.all([startProxy(source.port), startProxy(target.port)]);
    try {
      const run = await startLive(dir, { SOURCE_REDIS_PORT: toSource.port, DESTINATION_REDIS_PORT: toTarget.port, LIVE_SWEEP_RATE: 2000 });
      // The load writer runs until stopped, through both cuts; a marker key set on the source shows when changes
      // reach the target again (each cut is made while changes flow).
      const load = startLoad({ port: source.port, rate: 2000, keys: 1000, seed: 3 });
      await load.ready;
      const reached = async (marker: string): Promise<void> => {
        await source.cmd('SET', marker, 'x');
        await waitUntil(async () => (await target.cmd('EXISTS', marker)) === 1, `${marker} on the target`, 30_000, 20);
      };
      await reached('marker:before-cuts');
      const targetLinks = toTarget.open;
      toTarget.cutAll();
      await reached('marker:after-target-cut');
      const sourceLinks = toSource.open;
      toSource.cutAll();
      await reached('marker:after-source-cut');
      expect((await load.stop()).errors).toBe(0);
      await waitUntil(async () => (await firstKeyspaceDifference(source, target)) === null, 'the target to converge', 30_000, 200);
      const result = await cutover(run);
      expect(result.code, result.stdout + readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8')).toBe(0);
      // The cuts really hit the run's connections: data and events on the source, writes on the target.
      expect(targetLinks).toBeGreaterThan(0);
      expect(sourceLinks).toBeGreaterThan(1);
      expect(toTarget.accepted).toBeGreaterThan(targetLinks);
      expect(result.stdout).toMatch(/^Verification of changed keys: 0 missing, 0 type, 0 value, 0 ttl/m);
      expect(summaryOf(dir).live.gaps, result.stdout).toBeGreaterThan(0);
      expect(await firstKeyspaceDifference(source, target)).toBeNull();
    } finally {
      await Promise.all([toSource.close(), toTarget.close()]);
    }
  });

  it.each(['source', 'target'] as const)('the %s gone for good mid-run: the run stops once RECONNECT_TIMEOUT is past, exit 1, one line naming the loss', async (side) => {
    const dir = await fresh();
    await seedStrings(source, 100);
    const proxy = await startProxy(side === 'source' ? source.port : target.port);
    try {
      const run = await startLive(dir, { [side === 'source' ? 'SOURCE_REDIS_PORT' : 'DESTINATION_REDIS_PORT']: proxy.port, RECONNECT_TIMEOUT: 2 });
      const before = proxy.accepted;
      const refused = proxy.refuse(30_000, true);
      const lostAt = Date.now();
      const result = await endedWithin(run, 15_000);
      expect(result, `still running 15 s after the ${side} went away\n${run.output()}`).toBeDefined();
      expect(result?.code, run.output()).toBe(1);
      expect(Date.now() - lostAt, "it waited about RECONNECT_TIMEOUT first").toBeGreaterThanOrEqual(1500);
      expect(result?.stdout).toMatch(/^Stopped early: .*(RECONNECT_TIMEOUT|lost)/m);
      // Tried again with backoff, not in a storm of connections against a server that is struggling already.
      expect(proxy.accepted - before, 'connection attempts while the source was away').toBeLessThan(100);
      void refused;
    } finally {
      await proxy.close();
    }
  });

  it('FLUSHALL on the source mid-run: detected (no per-key events), the target emptied by the sweep', async () => {
    const dir = await fresh();
    await seedStrings(source, 500);
    const run = await startLive(dir);
    await source.cmd('FLUSHALL');
    await source.cmd('SET', 'after', 'flush');
    await waitUntil(async () => Number(await target.cmd('DBSIZE')) === 1, 'the target to be emptied but for the new key', 30_000, 100);
    const result = await cutover(run);
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/FLUSHALL, FLUSHDB or SWAPDB ran on source/);
    expect(await target.cmd('GET', 'after')).toBe('flush');
    expect(summaryOf(dir).live.repairs).toBe(500);
  });

  it('a gap just before a quiet spell: LIVE_IDLE_TIMEOUT waits until the repair sweep has walked every key, and the run ends converged', async () => {
    const dir = await fresh();
    await seedStrings(source, 150_000);
    const run = await startLive(dir, { LIVE_IDLE_TIMEOUT: 1 });
    // Three writes that send no event, then a lost subscription (the gap the run detects): only a full pass over
    // 150,000 keys finds them, and it lasts longer than the idle timeout.
    const flags = ((await source.cmd('CONFIG', 'GET', 'notify-keyspace-events')) as string[])[1] as string;
    await source.cmd('CONFIG', 'SET', 'notify-keyspace-events', '');
    await Promise.all(Array.from({ length: 3 }, (_, i) => source.cmd('SET', `key:${1 + i * 50_000}`, `in-the-gap-${i}`)));
    await source.cmd('CONFIG', 'SET', 'notify-keyspace-events', flags);
    await source.cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    const result = await run.done;
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/^Gaps in the source's events: \d+ \(the event connection to source .*\); each was covered by a repair sweep$/m);
    expect(await digest(target), result.stdout).toBe(await digest(source));
  });

  it('a cutover while a gap\'s repair sweep is under way says the gap was not covered, never that it was', async () => {
    const dir = await fresh();
    await seedStrings(source, 150_000);
    const run = await startLive(dir);
    await source.cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    const log = join(dir, 'redis-keys-migrator-error.log');
    await waitUntil(async () => existsSync(log) && readFileSync(log, 'utf8').includes('Gap in the source\'s events'), 'the gap detected', 30_000, 5);
    const result = await cutover(run);
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/^Gaps in the source's events: 1 \(.*\); the run stopped before a repair sweep had covered the last of them: keys changed in it may differ, check with MIGRATION_MODE=compare$/m);
  });

  it('LIVE_IDLE_TIMEOUT ends the run after a quiet spell, with the changed keys verified; liveonly copies only what changes', async () => {
    const dir = await fresh();
    await seedStrings(source, 300);
    const run = await startLive(dir, { MIGRATION_MODE: 'liveonly', OVERWRITE_EXISTING_KEYS: 'true', LIVE_IDLE_TIMEOUT: 1 });
    await source.cmd('SET', 'key:1', 'new');
    const result = await run.done;
    expect(result.code, result.stdout).toBe(0);
    expect(await target.cmd('DBSIZE')).toBe(1);
    expect(await target.cmd('GET', 'key:1')).toBe('new');
    expect(summaryOf(dir).verification?.live).toMatchObject({ checked: 1, identical: 1 });
  });

  it('MAX_ERRORED_KEYS_LIMIT stops a live run: exit 3, the limit and the last failure named on the console', async () => {
    const dir = await fresh();
    const run = await startLive(dir, { MIGRATION_MODE: 'liveonly', OVERWRITE_EXISTING_KEYS: 'true', MAX_ERRORED_KEYS_LIMIT: 5 });
    await target.cmd('CONFIG', 'SET', 'maxmemory', '1');
    try {
      // Exactly the limit: the last change is the one that reaches it, and no further change wakes the run.
      for (let i = 0; i < 5; i++) await source.cmd('SET', `key:${i}`, 'x'.repeat(100));
      const result = await endedWithin(run, 15_000);
      expect(result?.code, result?.stdout ?? `still running after 15 s:\n${run.output()}`).toBe(3);
      expect(result?.stdout).toMatch(/^Max errored keys limit of 5 reached$/m);
      expect(result?.stdout).toMatch(/^The last failure, key \|key:\d+\|: OOM command not allowed/m);
    } finally {
      await target.cmd('CONFIG', 'SET', 'maxmemory', '0');
    }
  });
});

describe('live replication refuses what it cannot do safely', () => {
  let quiet: LocalServer;
  let noConfig: LocalServer;
  let noConfigNotifying: LocalServer;
  let target: LocalServer;
  beforeAll(async () => {
    const hidden = ['--rename-command', 'CONFIG', ''];
    [quiet, noConfig, noConfigNotifying, target] = await Promise.all([startRedis(), startRedis(hidden), startRedis([...hidden, ...NOTIFY]), startRedis()]);
  });
  afterAll(async () => {
    await Promise.all([quiet?.stop(), noConfig?.stop(), noConfigNotifying?.stop(), target?.stop()]);
  });

  it('notifications off: one line naming notify-keyspace-events and the flags, exit 1, nothing copied', async () => {
    await quiet.cmd('SET', 'a', '1');
    const run = await runMigrator({ ...endpoints(quiet, target), ...FAST, MIGRATION_MODE: 'live' }, runDir());
    expect(run.code).toBe(1);
    expect(run.stdout.trim().split('\n').slice(-1)[0]).toMatch(/^Cannot replicate live : source .* has notify-keyspace-events "", which lacks E \(or K\), g .*Set it to at least "KEA"/);
    expect(await target.cmd('DBSIZE')).toBe(0);
  });

  it('CONFIG refused (as on ElastiCache): probe keys prove events arrive, or their absence refuses live mode', async () => {
    await noConfig.cmd('SET', 'a', '1');
    const refused = await runMigrator({ ...endpoints(noConfig, target), ...FAST, MIGRATION_MODE: 'live' }, runDir());
    expect(refused.code, refused.stdout).toBe(1);
    expect(refused.stdout).toMatch(/Cannot replicate live : no keyspace events arrived from source .* within 2 s of writing probe keys/);
    expect(await noConfig.cmd('DBSIZE'), 'a probe key was left behind').toBe(1);

    await noConfigNotifying.cmd('SET', 'a', '1');
    const proved = await runMigrator({ ...endpoints(noConfigNotifying, target), ...FAST, MIGRATION_MODE: 'live', LIVE_IDLE_TIMEOUT: 1 }, runDir());
    expect(proved.code, proved.stdout).toBe(0);
    expect(await target.cmd('GET', 'a')).toBe('1');
    expect(await target.cmd('DBSIZE'), 'a probe key reached the target').toBe(1);
    expect(await noConfigNotifying.cmd('DBSIZE'), 'a probe key was left behind').toBe(1);
    await target.cmd('FLUSHALL');
  });

  it('a target that already holds a selected key is refused unless OVERWRITE_EXISTING_KEYS=true', async () => {
    await quiet.cmd('CONFIG', 'SET', 'notify-keyspace-events', 'KEA');
    await target.cmd('SET', 'theirs', 'x');
    try {
      const run = await runMigrator({ ...endpoints(quiet, target), ...FAST, MIGRATION_MODE: 'live', LIVE_IDLE_TIMEOUT: 1 }, runDir());
      expect(run.code).toBe(1);
      expect(run.stdout).toMatch(/Cannot replicate live : MIGRATION_MODE=live replaces and deletes target keys .* already holds \|theirs\|.*OVERWRITE_EXISTING_KEYS=true/);
      expect(await target.cmd('GET', 'theirs')).toBe('x');
    } finally {
      await Promise.all([quiet.cmd('CONFIG', 'SET', 'notify-keyspace-events', ''), target.cmd('FLUSHALL')]);
    }
  });
});
