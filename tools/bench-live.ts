// The live rows of `npm run bench`: the load writer at fixed rates into a source with notifications while the
// tool runs MIGRATION_MODE=liveonly; per rate: kept up or not, the lag's percentiles, repairs (0 expected), convergence.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLoad } from '../test/helpers/load.js';
import { digest } from '../test/helpers/sample-data.js';
import { spawnMigrator, startRedis, waitUntil } from '../test/helpers/servers.js';

export const LIVE_RATES = [5000, 20_000, 50_000];
const LOAD_SECONDS = 10;
/** The tool ends this long after the last change (LIVE_IDLE_TIMEOUT). */
const IDLE_SECONDS = 2;

export interface LivePoint {
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
  problems: string[];
}

interface LiveDoc {
  exit_status: number;
  live: { applied: number; events: number; gaps: number; repairs: number; lag_ms: { p50: number; p99: number; max: number } };
}

/** One rate on fresh servers. */
async function measureRate(rate: number): Promise<LivePoint> {
  const [source, target] = await Promise.all([startRedis(['--notify-keyspace-events', 'KEA']), startRedis()]);
  const problems: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'rkm-bench-live-'));
  try {
    const run = spawnMigrator({
      SOURCE_REDIS_HOST: '127.0.0.1', SOURCE_REDIS_PORT: source.port, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port,
      MIGRATION_MODE: 'liveonly', OVERWRITE_EXISTING_KEYS: 'true', SLEEP_TIME: 0, PROGRESS: 'off', LIVE_IDLE_TIMEOUT: IDLE_SECONDS,
      SUMMARY_JSON_FILE: join(dir, 'summary.json'),
    }, dir);
    await waitUntil(async () => run.output().includes('Live: subscribed'), 'the tool to subscribe', 30_000, 50);
    const load = startLoad({ port: source.port, rate, duration: LOAD_SECONDS, keys: 50_000 });
    const stats = await load.done;
    const stoppedAt = Date.now();
    const result = await Promise.race([run.done, new Promise<undefined>((resolve) => setTimeout(resolve, 120_000))]);
    if (!result) {
      run.signalAll('SIGKILL');
      problems.push('the tool had not caught up 120 s after the load stopped');
    }
    const drainSeconds = Math.max(0, (Date.now() - stoppedAt) / 1000 - IDLE_SECONDS);
    const doc = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as LiveDoc;
    const converged = (await digest(source)) === (await digest(target));
    if (!converged) problems.push('target DEBUG DIGEST differs from the source');
    if (doc.exit_status !== 0) problems.push(`exit status ${doc.exit_status}`);
    return {
      rate, achieved: stats.rate, applied: doc.live.applied, events: doc.live.events, lagP50: doc.live.lag_ms.p50, lagP99: doc.live.lag_ms.p99,
      lagMax: doc.live.lag_ms.max, repairs: doc.live.repairs, gaps: doc.live.gaps, converged, drainSeconds, exitStatus: doc.exit_status, problems,
    };
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
    return { rate, achieved: 0, applied: 0, events: 0, lagP50: 0, lagP99: 0, lagMax: 0, repairs: 0, gaps: 0, converged: false, drainSeconds: 0, exitStatus: -1, problems };
  } finally {
    await Promise.all([source.stop(), target.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runLiveRows(say: (line: string) => void): Promise<LivePoint[]> {
  const points: LivePoint[] = [];
  for (const rate of LIVE_RATES) {
    say(`  (h) live, ${rate.toLocaleString('en-US')} writes/s for ${LOAD_SECONDS} s ...`);
    const point = await measureRate(rate);
    say(`    lag p50 ${point.lagP50} ms, p99 ${point.lagP99} ms; ${point.repairs} repairs${point.problems.length ? `; PROBLEMS: ${point.problems.join('; ')}` : ''}`);
    points.push(point);
  }
  return points;
}

/** The report's live section: a row per rate, and the goal's verdict (lag p99 under 1 s at 20k writes/s, no repairs). */
export function renderLive(points: readonly LivePoint[]): string {
  const lines = [
    '## Live replication (h)',
    '',
    `MIGRATION_MODE=liveonly while test/helpers/load-writer.ts writes its default mix (SET with and without PX, APPEND, INCR, HSET, RPUSH to lists up to`,
    `5,000 items, SADD, ZADD, XADD and XREADGROUP, DEL, EXPIRE, RENAME) over 50,000 key names for ${LOAD_SECONDS} s at each rate into a source with`,
    `notify-keyspace-events KEA; fresh servers per rate. Lag is event to copy, per changed key, from the tool's JSON summary. Drain is the time from the`,
    `writer's stop to the end of the run, less the ${IDLE_SECONDS} s idle timeout: applying what was queued, the keys the writer gave short TTLs expiring`,
    `(each expiry is an event, so the idle clock restarts), and verifying every changed key. Applied includes each stream copied again every 5 s`,
    `(consumer reads send no events). Repairs should be 0: nothing was injected.`,
    '',
    '| writes/s asked | achieved | events | applied | lag p50 ms | p99 ms | max ms | repairs | gaps | drain s | converged |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...points.map((p) => `| ${p.rate.toLocaleString('en-US')} | ${Math.round(p.achieved).toLocaleString('en-US')} | ${p.events.toLocaleString('en-US')} | ${p.applied.toLocaleString('en-US')} | ${p.lagP50} | ${p.lagP99} | ${p.lagMax} | ${p.repairs} | ${p.gaps} | ${p.drainSeconds.toFixed(1)} | ${p.converged ? 'yes' : '**no**'}${p.problems.length ? ` (${p.problems.join('; ')})` : ''} |`),
    '',
  ];
  const goal = points.find((p) => p.rate === 20_000);
  if (goal) {
    const met = goal.lagP99 < 1000 && points.every((p) => p.repairs === 0) && goal.converged;
    lines.push(`Goal: lag p99 under 1 s at 20,000 writes/s and no repairs without faults: ${goal.lagP99} ms, ${points.reduce((n, p) => n + p.repairs, 0)} repairs: ${met ? 'met' : '**NOT met**'}`, '');
  }
  return lines.join('\n');
}

