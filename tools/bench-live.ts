// The live rows of `npm run bench`: the load writer at fixed rates into a source while the tool follows it, by
// keyspace events (MIGRATION_MODE=liveonly, rows (h)) or as the source's replica (MIGRATION_MODE=live, rows (h′));
// per rate: kept up or not, the lag's percentiles as the tool counts them and as a user sees them (a probe key
// written on the source, timed until it is on the target), repairs (0 expected), convergence, the servers' CPU.
// BENCH_LIVE_READERS=replication (or events) runs one kind of row only.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLoad } from '../test/helpers/load.js';
import { digest } from '../test/helpers/sample-data.js';
import { spawnMigrator, startRedis, waitUntil, type LocalServer } from '../test/helpers/servers.js';
import { serverCpuSeconds } from './bench-rows.js';

export const LIVE_RATES = [5000, 20_000, 50_000];
const LOAD_SECONDS = 10;
/** The tool ends this long after the last change (LIVE_IDLE_TIMEOUT). */
const IDLE_SECONDS = 2;

export type LiveReader = 'events' | 'replication';

export interface LivePoint {
  reader: LiveReader;
  rate: number;
  /** Writes per second the load writer achieved. */
  achieved: number;
  applied: number;
  events: number;
  lagP50: number;
  lagP99: number;
  lagMax: number;
  repairs: number;
  gaps: number;
  /** The target equals the source (DEBUG DIGEST) after the cutover. */
  converged: boolean;
  /** Seconds from the writer's stop until the tool had applied everything and verified (less the idle wait). */
  drainSeconds: number;
  exitStatus: number;
  /** A probe key's way from a write on the source to a read on the target, as a user sees it (ms). */
  probeP50: number;
  probeP99: number;
  probes: number;
  /** CPU seconds the source and the target spent while the load ran and drained. */
  sourceCpu: number;
  targetCpu: number;
  problems: string[];
}

/** A probe key written every PROBE_MS, and read on the target every millisecond until it is there. */
const PROBE_MS = 20;

/** Until `stop`, the time each probe key took from its write on the source to its first read on the target. */
function probeLag(source: LocalServer, target: LocalServer): { stop: () => Promise<number[]> } {
  const lags: number[] = [];
  let stopped = false;
  const running = (async () => {
    for (let n = 0; !stopped; n++) {
      const key = `bench-probe:${n % 100}`;
      const value = String(n);
      const wrote = performance.now();
      await source.client.sendCommand(['SET', key, value]);
      while (!stopped && String(await target.client.sendCommand(['GET', key])) !== value) await new Promise((r) => setTimeout(r, 1));
      if (!stopped) lags.push(performance.now() - wrote);
      await new Promise((r) => setTimeout(r, PROBE_MS));
    }
  })();
  return { stop: async () => {
    stopped = true;
    await running;
    return lags;
  } };
}

function percentile(values: number[], fraction: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * fraction) - 1)] ?? 0);
}

interface LiveDoc {
  exit_status: number;
  live: { applied: number; events: number; gaps: number; repairs: number; lag_ms: { p50: number; p99: number; max: number } };
}

/** One rate on fresh servers, followed by keyspace events (liveonly) or as the source's replica (live). */
async function measureRate(rate: number, reader: LiveReader): Promise<LivePoint> {
  const [source, target] = await Promise.all([startRedis(reader === 'events' ? ['--notify-keyspace-events', 'KEA'] : []), startRedis()]);
  const problems: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'rkm-bench-live-'));
  try {
    const mode: Record<string, string> = reader === 'events'
      ? { MIGRATION_MODE: 'liveonly', OVERWRITE_EXISTING_KEYS: 'true', SOURCE_READER: 'scan' }
      : { MIGRATION_MODE: 'live', SOURCE_READER: 'replication' };
    const run = spawnMigrator({
      SOURCE_REDIS_HOST: '127.0.0.1', SOURCE_REDIS_PORT: source.port, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port,
      ...mode, SLEEP_TIME: 0, PROGRESS: 'off', LIVE_IDLE_TIMEOUT: IDLE_SECONDS, SUMMARY_JSON_FILE: join(dir, 'summary.json'),
    }, dir);
    const started = reader === 'events' ? 'Live: subscribed' : 'Live: applying the replication stream';
    await waitUntil(async () => run.output().includes(started), 'the live phase', 30_000, 50);
    const cpuBefore = await Promise.all([serverCpuSeconds(source), serverCpuSeconds(target)]);
    const probe = probeLag(source, target);
    const load = startLoad({ port: source.port, rate, duration: LOAD_SECONDS, keys: 50_000 });
    const stats = await load.done;
    const probes = await probe.stop();
    const stoppedAt = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([run.done, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 120_000)))]);
    // Not left pending: it would hold the benchmark's exit for two minutes after its last row.
    clearTimeout(timer);
    if (!result) {
      run.signalAll('SIGKILL');
      problems.push('the tool had not caught up 120 s after the load stopped');
    }
    const drainSeconds = Math.max(0, (Date.now() - stoppedAt) / 1000 - IDLE_SECONDS);
    const cpuAfter = await Promise.all([serverCpuSeconds(source), serverCpuSeconds(target)]);
    const doc = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as LiveDoc;
    const converged = (await digest(source)) === (await digest(target));
    if (!converged) problems.push('target DEBUG DIGEST differs from the source');
    if (doc.exit_status !== 0) problems.push(`exit status ${doc.exit_status}`);
    return {
      reader, rate, achieved: stats.rate, applied: doc.live.applied, probeP50: percentile(probes, 0.5), probeP99: percentile(probes, 0.99), probes: probes.length,
      sourceCpu: cpuAfter[0] - cpuBefore[0], targetCpu: cpuAfter[1] - cpuBefore[1], events: doc.live.events, lagP50: doc.live.lag_ms.p50, lagP99: doc.live.lag_ms.p99,
      lagMax: doc.live.lag_ms.max, repairs: doc.live.repairs, gaps: doc.live.gaps, converged, drainSeconds, exitStatus: doc.exit_status, problems,
    };
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
    return { reader, rate, achieved: 0, applied: 0, events: 0, lagP50: 0, lagP99: 0, lagMax: 0, repairs: 0, gaps: 0, converged: false, drainSeconds: 0, exitStatus: -1, probeP50: 0, probeP99: 0, probes: 0, sourceCpu: 0, targetCpu: 0, problems };
  } finally {
    await Promise.all([source.stop(), target.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runLiveRows(say: (line: string) => void): Promise<LivePoint[]> {
  const points: LivePoint[] = [];
  for (const reader of (process.env.BENCH_LIVE_READERS?.split(',') ?? ['events', 'replication']) as LiveReader[]) {
    for (const rate of LIVE_RATES) {
      say(`  (${ROW[reader]}) live by ${reader === 'events' ? 'keyspace events' : 'replication'}, ${rate.toLocaleString('en-US')} writes/s for ${LOAD_SECONDS} s ...`);
      const point = await measureRate(rate, reader);
      say(`    lag p50 ${point.lagP50} ms, p99 ${point.lagP99} ms (probe p99 ${point.probeP99} ms); ${point.repairs} repairs${point.problems.length ? `; PROBLEMS: ${point.problems.join('; ')}` : ''}`);
      points.push(point);
    }
  }
  return points;
}

const ROW: Record<LiveReader, string> = { events: 'h', replication: 'h′' };

/** The report's live section: a row per rate, and the goal's verdict (lag p99 under 1 s at 20k writes/s, no repairs). */
export function renderLive(points: readonly LivePoint[]): string {
  const lines = [
    '## Live replication (h) and (h′)',
    '',
    `MIGRATION_MODE=liveonly while test/helpers/load-writer.ts writes its default mix (SET with and without PX, APPEND, INCR, HSET, RPUSH to lists up to`,
    `5,000 items, SADD, ZADD, XADD and XREADGROUP, DEL, EXPIRE, RENAME) over 50,000 key names for ${LOAD_SECONDS} s at each rate into a source with`,
    `notify-keyspace-events KEA; fresh servers per rate. Lag is event to copy, per changed key, from the tool's JSON summary. Drain is the time from the`,
    `writer's stop to the end of the run, less the ${IDLE_SECONDS} s idle timeout: applying what was queued, the keys the writer gave short TTLs expiring`,
    `(each expiry is an event, so the idle clock restarts), and verifying every changed key. Applied includes each stream copied again every 5 s`,
    `(consumer reads send no events). Repairs should be 0: nothing was injected.`,
    '',
    `Rows (h′) follow the same writer as the source's replica (MIGRATION_MODE=live, SOURCE_READER=replication, on an empty source: the`,
    `snapshot is empty, and every write comes down the replication stream); there, events counts commands, and lag is from the arrival of a`,
    `command's bytes to its reply from the target. Probe is the user's view for both: a key written on the source every ${PROBE_MS} ms, read on the`,
    `target every millisecond until it is there. CPU is the servers' (source / target) while the load ran and drained.`,
    '',
    '| row | writes/s asked | achieved | events | applied | lag p50 ms | p99 ms | max ms | probe p50 ms | probe p99 ms | repairs | gaps | drain s | CPU s source / target | converged |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...points.map((p) => `| (${ROW[p.reader]}) | ${p.rate.toLocaleString('en-US')} | ${Math.round(p.achieved).toLocaleString('en-US')} | ${p.events.toLocaleString('en-US')} | ${p.applied.toLocaleString('en-US')} | ${p.lagP50} | ${p.lagP99} | ${p.lagMax} | ${p.probeP50} | ${p.probeP99} | ${p.repairs} | ${p.gaps} | ${p.drainSeconds.toFixed(1)} | ${p.sourceCpu.toFixed(1)} / ${p.targetCpu.toFixed(1)} | ${p.converged ? 'yes' : '**no**'}${p.problems.length ? ` (${p.problems.join('; ')})` : ''} |`),
    '',
  ];
  const goal = points.find((p) => p.reader === 'events' && p.rate === 20_000);
  if (goal) {
    const events = points.filter((p) => p.reader === 'events');
    const met = goal.lagP99 < 1000 && events.every((p) => p.repairs === 0) && goal.converged;
    lines.push(`Goal (h): lag p99 under 1 s at 20,000 writes/s and no repairs without faults: ${goal.lagP99} ms, ${events.reduce((n, p) => n + p.repairs, 0)} repairs: ${met ? 'met' : '**NOT met**'}`, '');
  }
  const top = points.find((p) => p.reader === 'replication' && p.rate === 50_000);
  if (top) {
    const worst = Math.max(top.lagP99, top.probeP99);
    const met = worst <= 100 && top.repairs === 0 && top.converged;
    lines.push(`Goal (h′): lag p99 at most 100 ms at 50,000 writes/s (moonshot 50), as the tool counts it and as the probe sees it, and the target equal: ${top.lagP99} ms / probe ${top.probeP99} ms (${Math.round(top.achieved).toLocaleString('en-US')} writes/s achieved): ${met ? 'met' : '**NOT met**'}`, '');
  }
  return lines.join('\n');
}

