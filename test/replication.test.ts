// SOURCE_READER: a source server read as its replica (one full resync by PSYNC, its RDB streamed into our reader)
// or by SCAN, end to end with real redis-server processes: diskless and disk-based transfers, a password and ACL
// users, TLS, a cluster source, a source that refuses PSYNC (as ElastiCache does), and a link cut mid-snapshot.
// Each copy ends with the target compared with the source by the servers themselves (DEBUG DIGEST).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, keyspaceOf, type TestCluster } from './helpers/cluster.js';
import { calls, commandStats, fullSyncs, parseSummary } from './helpers/inspect.js';
import { startProxy } from './helpers/proxy.js';
import { digest, seedEveryType, seedStrings } from './helpers/sample-data.js';
import { serversOfFile } from './helpers/servers-of-file.js';
import { endpoints, runMigrator, spawnMigrator, tempDir, waitUntil, type LocalServer, type RunResult } from './helpers/servers.js';
import { makeCertificates, startTlsRedis } from './helpers/tls.js';

const AS_REPLICA = 'Reading the source as its replica: one snapshot by PSYNC from';
const BY_SCAN = 'Reading the source by SCAN:';

const server = serversOfFile();

function run(env: Record<string, string | number>): Promise<RunResult> {
  return runMigrator({ PROGRESS: 'off', ...env }, tempDir(), 60_000);
}

const shown = (r: RunResult): string => `exit ${r.code}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;

/** A source of every type (binary keys, TTLs, a stream with a consumer group) and an empty target. */
async function seededPair(sourceArgs: string[] = []): Promise<{ source: LocalServer; target: LocalServer; keys: number }> {
  const source = await server(sourceArgs);
  const target = await server();
  const keys = await seedEveryType(source);
  return { source, target, keys };
}

describe('SOURCE_READER=auto reads a self-hosted source as its replica', () => {
  it('diskless transfer: every type copied from one snapshot, no key read by itself', async () => {
    const { source, target, keys } = await seededPair();
    const syncsBefore = await fullSyncs(source);
    const r = await run(endpoints(source, target));
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout).toContain(`${AS_REPLICA} source 127.0.0.1:${source.port}`);
    expect(parseSummary(r.stdout)).toEqual({ restored: keys, skipped: 0, failed: 0, vanished: 0 });
    expect(await digest(target)).toBe(await digest(source));
    expect(await target.cmd('PTTL', 'ttl-string')).toBeGreaterThan(3_500_000);
    expect(await fullSyncs(source)).toBe(syncsBefore + 1);
    const stats = await commandStats(source);
    for (const read of ['scan', 'dump', 'eval', 'evalsha']) expect(calls(stats, read), read).toBe(0);
    // A target that keeps up leaves nothing to spool, and the summary has nothing to say of it.
    expect(r.stdout).not.toMatch(/Replication spool|stopped reading/);
  });

  it('disk-based transfer (repl-diskless-sync no): the same copy', async () => {
    const { source, target, keys } = await seededPair(['--repl-diskless-sync', 'no']);
    await seedStrings(source, 5000);
    const r = await run(endpoints(source, target));
    expect(r.code, shown(r)).toBe(0);
    expect(parseSummary(r.stdout).restored).toBe(keys + 5000);
    expect(await digest(target)).toBe(await digest(source));
  });

  it('takes only SOURCE_REDIS_DB_INDEX\'s keys that match, into DESTINATION_REDIS_DB_INDEX, and leaves existing keys alone', async () => {
    const source = await server();
    const target = await server();
    await source.cmd('SET', 'db0-key', 'x');
    await source.cmd('SELECT', '2');
    for (const key of ['user:1', 'user:2', 'user:3', 'cache:1']) await source.cmd('SET', key, `${key}-value`);
    await target.cmd('SELECT', '3');
    await target.cmd('SET', 'user:3', 'already here');
    const r = await run({ ...endpoints(source, target), SOURCE_REDIS_DB_INDEX: 2, DESTINATION_REDIS_DB_INDEX: 3, SCAN_MATCH_PATTERN: 'user:*', KEY_EXCLUDE_PATTERN: 'user:2' });
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout).toContain(AS_REPLICA);
    expect(parseSummary(r.stdout)).toEqual({ restored: 1, skipped: 1, failed: 0, vanished: 0 });
    expect(String(await target.cmd('GET', 'user:1'))).toBe('user:1-value');
    expect(String(await target.cmd('GET', 'user:3'))).toBe('already here');
    expect(await target.cmd('EXISTS', 'user:2', 'cache:1')).toBe(0);
    await target.cmd('SELECT', '0');
    expect(await target.cmd('DBSIZE')).toBe(0);
  });

  it('as an ACL user allowed to replicate, with VERIFY=true checking the copy against the source', async () => {
    const { source, target, keys } = await seededPair();
    await source.cmd('ACL', 'SETUSER', 'mover', 'on', '>mover-secret-1', '~*', '&*', '+@all');
    const r = await run({ ...endpoints(source, target), SOURCE_REDIS_USERNAME: 'mover', SOURCE_REDIS_PASSWORD: 'mover-secret-1', VERIFY: 'true' });
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout).toContain(AS_REPLICA);
    expect(r.stdout).toMatch(new RegExp(`Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl \\(${keys} keys checked`));
    expect(r.stdout + r.stderr).not.toContain('mover-secret-1');
    expect(await digest(target)).toBe(await digest(source));
  });

  it('over TLS, with the password of the default user', async () => {
    const certs = makeCertificates();
    const source = await startTlsRedis(certs);
    const target = await server();
    try {
      const keys = await seedEveryType(source);
      await source.cmd('CONFIG', 'SET', 'requirepass', 'tls-source-secret');
      const r = await run({
        ...endpoints(source, target), SOURCE_REDIS_TLS: 'true', SOURCE_REDIS_TLS_CA_FILE: certs.ca, SOURCE_REDIS_PASSWORD: 'tls-source-secret', SOURCE_READER: 'replication',
      });
      expect(r.code, shown(r)).toBe(0);
      expect(r.stdout).toContain(`${AS_REPLICA} source 127.0.0.1:${source.port} (TLS)`);
      expect(parseSummary(r.stdout).restored).toBe(keys);
      expect(await digest(target)).toBe(await digest(source));
    } finally {
      await source.stop();
    }
  });

  it('says it waits while a diskless source waits repl-diskless-sync-delay for more replicas', async () => {
    // replicationCron sends a waiting replica a newline each second: 3 s of delay sends at least one.
    const { source, target, keys } = await seededPair(['--repl-diskless-sync-delay', '3']);
    const r = await run(endpoints(source, target));
    expect(r.code, shown(r)).toBe(0);
    expect(r.stderr).toContain(`Waiting for source 127.0.0.1:${source.port} to prepare its snapshot`);
    expect(parseSummary(r.stdout).restored).toBe(keys);
  });
});

describe('a source that will not serve a replica', () => {
  /** The refusals a managed service gives: PSYNC and SYNC renamed away, or an ACL user without them. */
  const refusing: { name: string; args: string[]; env: Record<string, string>; why: RegExp }[] = [
    { name: 'PSYNC renamed away (as on ElastiCache)', args: ['--rename-command', 'PSYNC', '', '--rename-command', 'SYNC', ''], env: {}, why: /unknown command/i },
    { name: 'an ACL user without +psync', args: [], env: { SOURCE_REDIS_USERNAME: 'reader', SOURCE_REDIS_PASSWORD: 'reader-secret-2' }, why: /NOPERM|no permissions/i },
  ];

  for (const c of refusing) {
    it(`${c.name}: auto reads it by SCAN and says why; replication fails in one line before writing`, async () => {
      const { source, target, keys } = await seededPair(c.args);
      await source.cmd('ACL', 'SETUSER', 'reader', 'on', '>reader-secret-2', '~*', '&*', '+@all', '-psync', '-sync');
      const refused = await run({ ...endpoints(source, target), ...c.env, SOURCE_READER: 'replication' });
      expect(refused.code, shown(refused)).toBe(1);
      const line = refused.stdout.split('\n').find((l) => l.startsWith('Error reading the source as its replica : ')) ?? '';
      expect(line, shown(refused)).toMatch(c.why);
      expect(line).toContain('SOURCE_READER=scan');
      expect(refused.stdout + refused.stderr).not.toMatch(/\n\s+at /);
      expect(await target.cmd('DBSIZE')).toBe(0);

      const auto = await run({ ...endpoints(source, target), ...c.env });
      expect(auto.code, shown(auto)).toBe(0);
      expect(auto.stdout.split('\n').find((l) => l.startsWith(BY_SCAN)), shown(auto)).toMatch(c.why);
      expect(parseSummary(auto.stdout).restored).toBe(keys);
      expect(await digest(target)).toBe(await digest(source));
    });
  }

  it('auto reads by SCAN where the run needs each key by itself (a dry run), and says so', async () => {
    const { source, target } = await seededPair();
    const r = await run({ ...endpoints(source, target), DRY_RUN: 'true' });
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout).toContain(`${BY_SCAN} DRY_RUN=true reads each key by itself`);
    expect(await fullSyncs(source)).toBe(0);
  });

  it('SOURCE_READER=replication with a setting only SCAN serves is refused before connecting', async () => {
    const r = await run({ SOURCE_REDIS_PORT: 1, DESTINATION_REDIS_PORT: 2, SOURCE_READER: 'replication', MIGRATION_MODE: 'compare' });
    expect(r.code, shown(r)).toBe(1);
    expect(r.stdout.trim()).toBe('Error in settings : SOURCE_READER=replication copies one snapshot of the source, but MIGRATION_MODE=compare reads each key by itself: set SOURCE_READER=scan (or auto)');
  });
});

describe('a cluster source', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster(3);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('is read as a replica of each master, every snapshot at once', async () => {
    const seeder = cluster.masters[0] as LocalServer;
    const target = await server();
    for (let i = 0; i < 300; i++) await seeder.cmd('SET', `{tag${i % 50}}:k${i}`, `v${i}`).catch(() => undefined);
    // Keys whose slot the seeding node does not own went nowhere: the cluster's own content is the reference.
    const expected = await keyspaceOf(await cluster.servingMasters());
    expect(expected.size).toBeGreaterThan(0);
    const r = await run({ ...cluster.settings('SOURCE'), DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0 });
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout).toContain(`${AS_REPLICA} each of its 3 masters`);
    expect(parseSummary(r.stdout).restored).toBe(expected.size);
    expect(await keyspaceOf([target])).toEqual(expected);
  });
});

describe('a replication link cut during the snapshot', () => {
  /** A source whose fork's child saves 1 ms a key: its snapshot takes seconds, long enough to cut it midway. */
  async function slowSource(): Promise<{ source: LocalServer; target: LocalServer }> {
    const source = await server();
    const target = await server();
    await seedStrings(source, 4000);
    await source.cmd('CONFIG', 'SET', 'rdb-key-save-delay', '1000');
    return { source, target };
  }

  it('asks for a new snapshot and copies the rest: nothing lost, the keys copied before count as skipped, and the end says so', async () => {
    const { source, target } = await slowSource();
    const proxy = await startProxy(source.port);
    try {
      const running = spawnMigrator({ ...endpoints(source, target), SOURCE_REDIS_PORT: proxy.port, SOURCE_READER: 'replication', PROGRESS: 'off' }, tempDir());
      await waitUntil(async () => Number(await target.cmd('DBSIZE')) > 0, 'the first keys on the target');
      proxy.cutAll();
      const copied = Number(await target.cmd('DBSIZE'));
      await source.cmd('CONFIG', 'SET', 'rdb-key-save-delay', '0');
      const r = await running.done;
      expect(r.code, shown(r)).toBe(0);
      expect(r.stdout).toMatch(/^A snapshot was cut \(source 127\.0\.0\.1:\d+: the replication link (closed|failed: .*)\) and read again from the start: the keys copied before the cut count as skipped$/m);
      const counts = parseSummary(r.stdout);
      // Every key restored once; each restored before the cut is met again in the new snapshot, and skipped.
      expect(counts.restored).toBe(4000);
      expect(counts.skipped).toBeGreaterThanOrEqual(copied);
      expect(counts.skipped).toBeLessThan(4000);
      expect(await fullSyncs(source)).toBe(2);
      expect(await digest(target)).toBe(await digest(source));
    } finally {
      await proxy.close();
    }
  });

  it('SOURCE_REDIS_DB_INDEX=3 of a source with keys in database 0 too: the new snapshot starts at database 0, and database 3 is still copied whole', async () => {
    const source = await server();
    const target = await server();
    await seedStrings(source, 500);
    await source.cmd('SELECT', '3');
    await seedStrings(source, 4000);
    await source.cmd('CONFIG', 'SET', 'rdb-key-save-delay', '1000');
    const proxy = await startProxy(source.port);
    try {
      const running = spawnMigrator({ ...endpoints(source, target), SOURCE_REDIS_PORT: proxy.port, SOURCE_REDIS_DB_INDEX: 3, DESTINATION_REDIS_DB_INDEX: 3, PROGRESS: 'off' }, tempDir());
      await target.cmd('SELECT', '3');
      await waitUntil(async () => Number(await target.cmd('DBSIZE')) > 0, 'the first keys on the target');
      proxy.cutAll();
      await source.cmd('CONFIG', 'SET', 'rdb-key-save-delay', '0');
      const r = await running.done;
      expect(r.code, shown(r)).toBe(0);
      expect(r.stdout).toContain('A snapshot was cut');
      expect(parseSummary(r.stdout).restored).toBe(4000);
      expect(await target.cmd('DBSIZE')).toBe(4000);
      // (DEBUG DIGEST covers every database, and the source holds database 0 as well.)
      for (const key of ['key:1', 'key:2000', 'key:4000']) expect(String(await target.cmd('GET', key))).toBe(String(await source.cmd('GET', key)));
      await target.cmd('SELECT', '0');
      expect(await target.cmd('DBSIZE')).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it('with RECONNECT_TIMEOUT=0: stops in one line with the summary; the keys copied stay, and a rerun copies the rest', async () => {
    const { source, target } = await slowSource();
    const proxy = await startProxy(source.port);
    try {
      const running = spawnMigrator({ ...endpoints(source, target), SOURCE_REDIS_PORT: proxy.port, PROGRESS: 'off', RECONNECT_TIMEOUT: 0 }, tempDir());
      await waitUntil(async () => Number(await target.cmd('DBSIZE')) > 0, 'the first keys on the target');
      proxy.cutAll();
      const cut = await running.done;
      expect(cut.code, shown(cut)).toBe(1);
      expect(cut.stdout).toMatch(/^Stopped early: source 127\.0\.0\.1:\d+: the replication link (closed|failed: .*); the keys copied before it stay on the target, and a rerun skips them$/m);
      const copied = Number(await target.cmd('DBSIZE'));
      expect(parseSummary(cut.stdout).restored).toBe(copied);
      expect(copied).toBeLessThan(4000);

      await source.cmd('CONFIG', 'SET', 'rdb-key-save-delay', '0');
      const rerun = await run(endpoints(source, target));
      expect(rerun.code, shown(rerun)).toBe(0);
      expect(parseSummary(rerun.stdout)).toEqual({ restored: 4000 - copied, skipped: copied, failed: 0, vanished: 0 });
      expect(await digest(target)).toBe(await digest(source));
    } finally {
      await proxy.close();
    }
  });
});

describe('a slow target while the source is written to, with a small replica output buffer on the source', () => {
  const KEYS = 300_000;
  /** KEYS keys of 80 hex bytes each (incompressible): a snapshot of about 30 MB, more than memory and sockets hold. */
  const SEED = "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'key:' .. i, redis.sha1hex(tostring(i)) .. redis.sha1hex('x' .. i)) end return redis.call('DBSIZE')";

  /**
   * The target paused for writes while the snapshot comes; once the source's link to the run is `state`, 2 MB
   * are written to the source. A source that must hold them for a link nobody reads drops it past
   * client-output-buffer-limit replica 256kb. Disk-based, so the link's state says when the snapshot is all sent.
   */
  async function runWhileSlow(state: string, extra: Record<string, string | number>): Promise<{ r: RunResult; syncs: number }> {
    const source = await server(['--repl-diskless-sync', 'no']);
    const target = await server();
    expect(await source.cmd('EVAL', SEED, 0, KEYS)).toBe(KEYS);
    await source.cmd('CONFIG', 'SET', 'client-output-buffer-limit', 'replica 262144 262144 0');
    await target.cmd('CLIENT', 'PAUSE', 8000, 'WRITE');
    const running = spawnMigrator({ ...endpoints(source, target), SOURCE_READER: 'replication', SCAN_MATCH_PATTERN: 'key:*', PROGRESS: 'off', REPLY_TIMEOUT: 0, ...extra }, tempDir());
    await waitUntil(async () => new RegExp(`slave0:.*state=${state}`).test(String(await source.cmd('INFO', 'replication'))), `the run's link ${state}`);
    await Promise.all(Array.from({ length: 2000 }, (_, i) => source.cmd('SET', `noise:${i}`, 'n'.repeat(1024))));
    const r = await running.done;
    return { r, syncs: await fullSyncs(source) };
  }

  it('the link holds: what the target has not taken waits in the spool, one snapshot, every key copied', async () => {
    // The whole snapshot is sent while the target still waits: it is in the run's spool.
    const { r, syncs } = await runWhileSlow('online', {});
    expect(r.code, shown(r)).toBe(0);
    expect(parseSummary(r.stdout).restored).toBe(KEYS);
    expect(r.stdout).not.toContain('A snapshot was cut');
    expect(syncs).toBe(1);
    // The summary says how much waited on disk: the snapshot is about 30 MB, and memory holds 8.
    const spool = /^Replication spool: up to ([\d.]+) MB on disk at once \(REPLICATION_SPOOL_MB=1024\), ([\d.]+) MB through it in all/m.exec(r.stdout);
    expect(spool, shown(r)).not.toBeNull();
    expect(Number(spool?.[1])).toBeGreaterThan(0);
    expect(Number(spool?.[2])).toBeGreaterThanOrEqual(Number(spool?.[1]));
    expect(r.stdout).not.toContain('stopped reading');
  });

  it('REPLICATION_SPOOL_MB=0: the source drops the link it had to buffer for, and a new snapshot is read', async () => {
    // The snapshot waits for the target, half sent: the source holds every write meanwhile.
    const { r, syncs } = await runWhileSlow('send_bulk', { REPLICATION_SPOOL_MB: 0 });
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout).toMatch(/^A snapshot was cut \(source 127\.0\.0\.1:\d+: the replication link (closed|failed: .*)\) and read again from the start/m);
    expect(syncs).toBeGreaterThanOrEqual(2);
    // And says why: reading stopped with memory full, which left the source holding the rest.
    expect(r.stdout).toMatch(/^The replication link stopped reading for \d+\.\d s in all, its memory \(8\.0 MB\) full and no spool \(REPLICATION_SPOOL_MB=0\): the source held/m);
    expect(r.stdout).not.toContain('Replication spool:');
  });
});
