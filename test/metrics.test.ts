// METRICS_PORT: Prometheus text at /metrics and /healthz, scraped from the real script mid-run, against real
// servers: the keys by outcome and the estimate as the run has them, labelled by shard; live mode's lag and
// queue; a port already taken fails in one line.
import { createServer } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseSummary } from './helpers/inspect.js';
import { endpoints, freePort, runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer } from './helpers/servers.js';

async function get(port: number, path: string): Promise<{ status: number; text: string } | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: response.status, text: await response.text() };
  } catch {
    return undefined; // not listening yet
  }
}

/** The value of one sample line, such as `redis_keys_migrator_keys_total{outcome="restored",shard="1"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

let source: RedisServer;
let target: RedisServer;
beforeAll(async () => {
  [source, target] = await Promise.all([startRedis(), startRedis()]);
  await source.cmd('DEBUG', 'POPULATE', 6000, 'key', 8);
});
afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
});
beforeEach(async () => {
  await target.cmd('FLUSHALL');
});

describe('METRICS_PORT', () => {
  it('mid-copy: /healthz answers, /metrics has the keys by outcome and the estimate as the run has them, labelled by shard', async () => {
    const port = await freePort();
    const run = spawnMigrator({ ...endpoints(source, target), METRICS_PORT: port, MAX_KEYS_PER_SECOND: 2000, SOURCE_READER: 'scan', SHARD_COUNT: 2, SHARD_INDEX: 1 }, tempDir());
    let scrape = '';
    await waitUntil(async () => {
      scrape = (await get(port, '/metrics'))?.text ?? '';
      const restored = sample(scrape, 'redis_keys_migrator_keys_total{outcome="restored",shard="1"}') ?? 0;
      return restored > 0;
    }, 'a scrape with keys restored', 30_000, 50);
    expect((await get(port, '/healthz'))?.status).toBe(200);
    expect(scrape).toContain('# TYPE redis_keys_migrator_keys_total counter');
    // The shard's share of the source's 6,000 keys: in proportion to its slots.
    expect(sample(scrape, 'redis_keys_migrator_keys_estimated{shard="1"}')).toBe(3000);
    for (const series of ['redis_keys_migrator_bytes_total{shard="1"}', 'redis_keys_migrator_keys_scanned{shard="1"}', 'redis_keys_migrator_reconnects_total{shard="1"}', 'redis_keys_migrator_keys_total{outcome="failed",shard="1"}']) {
      expect(sample(scrape, series), series).toBeGreaterThanOrEqual(0);
    }
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    // What was scraped mid-run is no more than the run's end counts.
    expect(sample(scrape, 'redis_keys_migrator_keys_total{outcome="restored",shard="1"}')).toBeLessThanOrEqual(parseSummary(result.stdout).restored);
  }, 60_000);

  it('WORKERS=2: the run serves its workers\' figures added up, and the estimate of both shares', async () => {
    const port = await freePort();
    const run = spawnMigrator({ ...endpoints(source, target), METRICS_PORT: port, WORKERS: 2, MAX_KEYS_PER_SECOND: 2000, SOURCE_READER: 'scan' }, tempDir());
    let scrape = '';
    await waitUntil(async () => {
      scrape = (await get(port, '/metrics'))?.text ?? '';
      // Both workers have reported once their estimates add up to the whole source.
      return (sample(scrape, 'redis_keys_migrator_keys_estimated{shard="0"}') ?? 0) === 6000 && (sample(scrape, 'redis_keys_migrator_keys_total{outcome="restored",shard="0"}') ?? 0) > 0;
    }, 'a scrape with both workers\' figures', 30_000, 50);
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(sample(scrape, 'redis_keys_migrator_keys_total{outcome="restored",shard="0"}')).toBeLessThanOrEqual(parseSummary(result.stdout).restored);
  }, 60_000);

  it('live: the lag and the queue depth, and the keys counted on from the snapshot', async () => {
    const port = await freePort();
    await source.cmd('CONFIG', 'SET', 'notify-keyspace-events', 'KEA');
    const run = spawnMigrator({ ...endpoints(source, target), METRICS_PORT: port, MIGRATION_MODE: 'live', SOURCE_READER: 'scan' }, tempDir());
    await run.waitFor('Live: applying changes', 30_000);
    await source.cmd('SET', 'key:new', 'x');
    let scrape = '';
    await waitUntil(async () => {
      scrape = (await get(port, '/metrics'))?.text ?? '';
      return (sample(scrape, 'redis_keys_migrator_keys_total{outcome="restored",shard="0"}') ?? 0) > 6000;
    }, 'the live change counted after the snapshot\'s keys', 30_000, 50);
    expect(sample(scrape, 'redis_keys_migrator_live_lag_seconds{shard="0"}')).toBeGreaterThanOrEqual(0);
    expect(sample(scrape, 'redis_keys_migrator_live_queue_depth{shard="0"}')).toBeGreaterThanOrEqual(0);
    run.signalScript('SIGINT');
    expect((await run.done).code).toBe(0);
  }, 60_000);

  it('a port another process holds: one line naming METRICS_PORT, exit 1, nothing copied', async () => {
    const holder = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => holder.listen(port, resolve));
    try {
      const run = await runMigrator({ ...endpoints(source, target), METRICS_PORT: port }, tempDir());
      expect(run.code).toBe(1);
      expect(run.stdout).toBe(`Error in settings : METRICS_PORT ${port} cannot be served: another process listens on it\n`);
      expect(Number(await target.cmd('DBSIZE'))).toBe(0);
    } finally {
      holder.close();
    }
  });
});
