// Benchmark entry point: seeds a throwaway source, copies it four ways into a throwaway target, checks the first
// copy with the tool's compare mode, then copies between two 3-master clusters; writes tools/bench-results.md and
// media/benchmark.svg; (f) runs once more on a file of four times the keys, for its memory. Options: --keys N (or BENCH_KEYS), --scaling, --live-only (only the live rows).
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { drawChart, formatCount } from './bench-chart.js';
import { chartBars, keysPerSecond, renderReport, type RunInfo, type ScalingPoint } from './bench-report.js';
import {
  configSnapshot, digest, infoValue, isToolRow, killRunningTools, measureClientFloor, measureClusterTool, measureMigrate, measureRdbLoad, measureRdbTool, measureReplication, measureTool, measureToolFloor,
  resetTarget, runToolTimed, serverCpuSeconds, sideSettings, ROW_LABELS, type RowId, type RowResult,
} from './bench-rows.js';
import { logSlowCalls, watchScriptCalls } from './bench-scripts.js';
import { seedSource } from './bench-seed.js';
import { renderLive, runLiveRows, type LivePoint } from './bench-live.js';
import { startCluster, type TestCluster } from '../test/helpers/cluster.js';
import { ROOT, startRedis, type RedisServer } from '../test/helpers/servers.js';

/** Rows measured between two single servers; the cluster rows have a pair of clusters of their own. */
type ServerRowId = Exclude<RowId, 'cluster' | 'cluster-workers'>;
const DEFAULT_KEYS = 1_000_000;
const SCALING_SIZES = [200_000, 2_000_000];
const ROW_ORDER: ServerRowId[] = ['replica', 'dump', 'compare', 'checkpoint', 'type', 'migrate', 'replicaof', 'rdb-native', 'rdb-server', 'rdb-load'];
/**
 * One run of a row varies by ±15% here, and the goals that compare two tool rows ((a″) with (a), (f) with (f′)) ask
 * for a few per cent: every copy row runs PAIRED_REPEATS more times, the rows of a group interleaved, and goals and
 * before/after comparisons take the medians. The cluster row repeats its timed copy the same number of times.
 */
const PAIRS: ServerRowId[][] = [['replica', 'dump', 'checkpoint', 'type'], ['rdb-native', 'rdb-server']];
const PAIRED_REPEATS = 2;
/** Rows that run on the target the row before left, not an emptied one: compare checks the copy (a) just made. */
const KEEPS_TARGET: ReadonlySet<RowId> = new Set<RowId>(['compare']);
const RESULTS_FILE = join(ROOT, 'tools', 'bench-results.md');
const CHART_FILE = join(ROOT, 'media', 'benchmark.svg');

interface Options {
  keys: number;
  scaling: boolean;
  /** Only the live rows (h), which need no seeded dataset. */
  liveOnly: boolean;
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options {
  let keysText = env.BENCH_KEYS;
  let scaling = false;
  let liveOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--scaling') scaling = true;
    else if (arg === '--live-only') liveOnly = true;
    else if (arg === '--keys') keysText = argv[++i];
    else if (arg?.startsWith('--keys=')) keysText = arg.slice('--keys='.length);
    else throw new Error(`unknown argument ${arg}; use --keys N, --scaling, --live-only`);
  }
  const keys = keysText === undefined || keysText === '' ? DEFAULT_KEYS : Number(keysText.replace(/_/g, ''));
  if (!Number.isInteger(keys) || keys < 1) throw new Error(`key count must be a whole number above 0, got ${keysText}`);
  return { keys, scaling, liveOnly };
}

/** Stoppers for servers still running, so an error or Ctrl-C leaves no redis-server behind. */
const cleanups = new Set<() => Promise<void>>();

/** Starts two of something (servers, clusters), runs `work` with them, and stops them whatever happens. */
async function withPair<S extends { stop(): Promise<void> }, T>(start: () => Promise<S>, work: (source: S, target: S) => Promise<T>): Promise<T> {
  const started = await Promise.allSettled([start(), start()]);
  const running = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async (): Promise<void> => void (await Promise.all(running.map((s) => s.stop())));
  cleanups.add(stop);
  try {
    const [source, target] = started;
    if (source?.status !== 'fulfilled') throw source?.reason;
    if (target?.status !== 'fulfilled') throw target?.reason;
    return await work(source.value, target.value);
  } finally {
    cleanups.delete(stop);
    await stop();
  }
}

function withServers<T>(work: (source: RedisServer, target: RedisServer) => Promise<T>): Promise<T> {
  return withPair(() => startRedis(), work);
}

function stopOnSignal(signal: NodeJS.Signals): void {
  process.once(signal, () => {
    say(`\n${signal}: stopping the tool and the servers`);
    killRunningTools();
    void Promise.allSettled([...cleanups].map((stop) => stop())).then(() => process.exit(130));
  });
}

async function describeRun(source: RedisServer, keys: number, seedSeconds: number): Promise<RunInfo> {
  const cores = cpus();
  return {
    date: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
    redisVersion: await infoValue(source, 'server', 'redis_version'),
    nodeVersion: process.version,
    keys,
    datasetBytes: Number(await infoValue(source, 'memory', 'used_memory_dataset')),
    seedSeconds,
    machine: `${cores.length} cores (${cores[0]?.model.trim() ?? 'unknown'}), load average ${loadavg()[0]?.toFixed(2)} at start; other work may share it`,
  };
}

function measureRow(id: ServerRowId, source: RedisServer, target: RedisServer, keys: number): Promise<RowResult> {
  switch (id) {
    case 'replica':
    case 'dump':
    case 'checkpoint':
    case 'compare':
    case 'type':
      return measureTool(id, source, target, keys);
    case 'migrate':
      return measureMigrate(source, target, keys);
    case 'rdb-native':
    case 'rdb-server':
      return savedFile(source).then((file) => measureRdbTool(id, file, target, keys));
    case 'rdb-load':
      return savedFile(source).then((file) => measureRdbLoad(file, keys));
    case 'replicaof':
      return measureReplication(source, target, keys);
  }
}

const saved = new Map<RedisServer, Promise<string>>();

/** The source saved once (SAVE) to its dump.rdb, for the rows that start from a file. */
function savedFile(source: RedisServer): Promise<string> {
  const file = saved.get(source) ?? source.cmd('SAVE').then(() => join(source.dir, 'dump.rdb'));
  saved.set(source, file);
  return file;
}

/** An .rdb file with no key: the emptied target saved, copied aside (the target saves nothing else). */
async function emptyFile(target: RedisServer): Promise<string> {
  await target.cmd('SAVE');
  const file = join(target.dir, 'empty-floor.rdb');
  copyFileSync(join(target.dir, 'dump.rdb'), file);
  return file;
}

/** Row (f) once on a file of four times the keys, fresh servers: how flat the native reader's peak RSS stays. */
async function runFileAtFourTimes(keys: number): Promise<RowResult> {
  const bigger = keys * 4;
  say(`  (f) on a file of ${formatCount(bigger)} keys, fresh servers; seeding ...`);
  return withServers(async (source, target) => {
    await seedSource(source, bigger);
    const sourceDigest = await digest(source);
    return runRow('rdb-native', source, target, bigger, sourceDigest);
  });
}

/** Runs one row and, whatever happened, compares the target's digest with the source's. */
async function runRow(id: ServerRowId, source: RedisServer, target: RedisServer, keys: number, sourceDigest: string): Promise<RowResult> {
  say(`  ${ROW_LABELS[id]} ...`);
  const cpuBefore = await Promise.all([serverCpuSeconds(source), serverCpuSeconds(target)]);
  const scriptWatch = isToolRow(id) ? await Promise.all([watchScriptCalls(source), watchScriptCalls(target)]) : undefined;
  let row: RowResult;
  try {
    row = await measureRow(id, source, target, keys);
  } catch (err) {
    row = { id, keys, problems: [err instanceof Error ? err.message : String(err)] };
  }
  // Read before DEBUG DIGEST and the CPU figures, so only the tool's own calls are in the slowlog window.
  if (scriptWatch) row.scripts = { source: await scriptWatch[0](), target: await scriptWatch[1]() };
  const cpuAfter = await Promise.all([serverCpuSeconds(source), serverCpuSeconds(target)]);
  row.sourceCpuSeconds = cpuAfter[0] - cpuBefore[0];
  row.targetCpuSeconds = cpuAfter[1] - cpuBefore[1];
  row.loadAfter = loadavg()[0];
  // Loading the file into a server of its own writes nothing to the target: no digest to compare.
  if (id === 'rdb-load') return report(row);
  row.digestMatches = (await digest(target)) === sourceDigest;
  if (!row.digestMatches) {
    row.problems.push('target DEBUG DIGEST differs from the source');
    process.stderr.write(`\n!!! DIGEST MISMATCH after "${ROW_LABELS[id]}": the target is not a copy of the source !!!\n\n`);
  }
  return report(row);
}

function report(row: RowResult): RowResult {
  const speed = keysPerSecond(row);
  say(`    ${row.wallSeconds?.toFixed(2) ?? '—'} s, ${speed ? formatCount(speed) : '—'} keys/s${row.peakRssMb ? `, peak RSS ${row.peakRssMb.toFixed(1)} MB` : ''}${row.problems.length ? `; PROBLEMS: ${row.problems.join('; ')}` : ''}`);
  return row;
}

async function runMainRows(source: RedisServer, target: RedisServer, keys: number): Promise<{ info: RunInfo; rows: RowResult[]; repeats: RowResult[] }> {
  say(`Seeding ${formatCount(keys)} keys ...`);
  const seedSeconds = await seedSource(source, keys);
  const info = await describeRun(source, keys, seedSeconds);
  say(`  done in ${seedSeconds.toFixed(1)} s; source digest ...`);
  const sourceDigest = await digest(source);
  await Promise.all([logSlowCalls(source), logSlowCalls(target)]);
  const baseline = await configSnapshot(target);
  await resetTarget(target, baseline);
  say('  the tool on an empty database, for its startup floor ...');
  info.toolFloor = await measureToolFloor(target);
  say('  the native reader on an empty .rdb file, for (f)\'s startup floor ...');
  info.fileFloor = await measureRdbTool('rdb-native', await emptyFile(target), target, 0);
  const rows: RowResult[] = [];
  for (const id of ROW_ORDER) {
    if (!KEEPS_TARGET.has(id)) {
      const fixed = await resetTarget(target, baseline);
      if (fixed.length > 0) say(`  target config put back: ${fixed.join(', ')}`);
    }
    rows.push(await runRow(id, source, target, keys, sourceDigest));
  }
  const repeats = await runPairedRepeats(source, target, keys, sourceDigest, baseline);
  say('  the least a Node.js client spends on (f)\'s file, for scale ...');
  await resetTarget(target, baseline);
  info.clientFloor = await measureClientFloor(await savedFile(source), target);
  info.fileFourTimes = await runFileAtFourTimes(keys);
  // The first run of each cluster row goes in the table; the others are its repeats.
  const clusterRuns = await runClusterRows(source, keys, sourceDigest);
  const firsts = new Set(['cluster', 'cluster-workers'].map((id) => clusterRuns.find((r) => r.id === id)));
  rows.push(...clusterRuns.filter((r) => firsts.has(r)));
  return { info, rows, repeats: [...repeats, ...clusterRuns.filter((r) => !firsts.has(r))] };
}

/** Each group of PAIRS again, PAIRED_REPEATS times, the order reversed each round, every run into an emptied target. */
async function runPairedRepeats(source: RedisServer, target: RedisServer, keys: number, sourceDigest: string, baseline: Map<string, string>): Promise<RowResult[]> {
  const repeats: RowResult[] = [];
  for (let round = 0; round < PAIRED_REPEATS; round++) {
    say(`  paired repeats, round ${round + 1} of ${PAIRED_REPEATS} ...`);
    for (const pair of PAIRS) {
      for (const id of round % 2 === 0 ? [...pair].reverse() : pair) {
        await resetTarget(target, baseline);
        repeats.push(await runRow(id, source, target, keys, sourceDigest));
      }
    }
  }
  return repeats;
}

/**
 * XOR of the masters' DEBUG DIGESTs. A server's digest is a constant (for db 0) XOR each key's own digest, so
 * over an odd number of non-empty masters this is the digest one server holding all their keys would have.
 */
async function clusterDigest(cluster: TestCluster): Promise<string> {
  const combined = Buffer.alloc(20);
  for (const node of cluster.nodes) Buffer.from(await digest(node), 'hex').forEach((byte, i) => (combined[i] = (combined[i] ?? 0) ^ byte));
  return combined.toString('hex');
}

async function clusterCpuSeconds(cluster: TestCluster): Promise<number> {
  const each = await Promise.all(cluster.nodes.map(serverCpuSeconds));
  return each.reduce((sum, s) => sum + s, 0);
}

/**
 * Row (e): two fresh 3-master clusters. The tool fills the source cluster from the seeded server (not timed,
 * checked by digest), then the timed run copies cluster to cluster with the same settings as (a).
 */
async function runClusterRows(seeded: RedisServer, keys: number, sourceDigest: string): Promise<RowResult[]> {
  say(`  ${ROW_LABELS.cluster}: two clusters, the source one filled by the tool ...`);
  try {
    return await withPair(() => startCluster(), (source, target) => measureBetweenClusters(seeded, source, target, keys, sourceDigest));
  } catch (err) {
    return [{ id: 'cluster', keys, problems: [err instanceof Error ? err.message : String(err)] }];
  }
}

/**
 * The tool fills `source` from the seeded server (checked by digest), then the timed copy runs between the
 * clusters 1 + PAIRED_REPEATS times, the target cluster emptied before each.
 */
async function measureBetweenClusters(seeded: RedisServer, source: TestCluster, target: TestCluster, keys: number, sourceDigest: string): Promise<RowResult[]> {
  const fill = await runToolTimed('dump', { ...sideSettings('SOURCE', seeded), ...sideSettings('DESTINATION', source.nodes[0] as RedisServer, true) }, keys);
  if (fill.problems.length > 0 || (await clusterDigest(source)) !== sourceDigest) {
    return [{ id: 'cluster', keys, problems: [`filling the source cluster went wrong: ${fill.problems.join('; ') || 'its digest differs'}`] }];
  }
  const runs: RowResult[] = [];
  // One process and WORKERS=2 alternate, each into the emptied target cluster.
  for (let run = 0; run <= PAIRED_REPEATS; run++) {
    for (const id of ['cluster', 'cluster-workers'] as const) {
      await Promise.all(target.masters.map((node) => node.cmd('FLUSHALL')));
      runs.push(await timeClusterCopy(source, target, keys, sourceDigest, id));
    }
  }
  return runs;
}

/** One timed copy between the clusters, with the servers' CPU and the target's combined digest. */
async function timeClusterCopy(source: TestCluster, target: TestCluster, keys: number, sourceDigest: string, id: 'cluster' | 'cluster-workers'): Promise<RowResult> {
  const cpuBefore = await Promise.all([clusterCpuSeconds(source), clusterCpuSeconds(target)]);
  const row = await measureClusterTool(source.nodes[0] as RedisServer, target.nodes[0] as RedisServer, keys, id);
  const cpuAfter = await Promise.all([clusterCpuSeconds(source), clusterCpuSeconds(target)]);
  row.sourceCpuSeconds = cpuAfter[0] - cpuBefore[0];
  row.targetCpuSeconds = cpuAfter[1] - cpuBefore[1];
  row.loadAfter = loadavg()[0];
  row.digestMatches = (await clusterDigest(target)) === sourceDigest;
  if (!row.digestMatches) row.problems.push('the target cluster\'s combined DEBUG DIGEST differs from the source');
  const speed = keysPerSecond(row);
  say(`    ${row.wallSeconds?.toFixed(2) ?? '—'} s, ${speed ? formatCount(speed) : '—'} keys/s${row.problems.length ? `; PROBLEMS: ${row.problems.join('; ')}` : ''}`);
  return row;
}

/** Row (a) again at other sizes, each on fresh servers, for how peak RSS grows with the key count. */
async function runScaling(mainRows: RowResult[], mainKeys: number): Promise<ScalingPoint[]> {
  const points: ScalingPoint[] = [];
  const mainDump = mainRows.find((r) => r.id === 'dump');
  if (mainDump && !SCALING_SIZES.includes(mainKeys)) points.push({ keys: mainKeys, row: mainDump });
  for (const keys of SCALING_SIZES) {
    say(`Scaling: ${formatCount(keys)} keys, fresh servers; seeding ...`);
    const row = await withServers(async (source, target) => {
      await seedSource(source, keys);
      await Promise.all([logSlowCalls(source), logSlowCalls(target)]);
      return runRow('dump', source, target, keys, await digest(source));
    });
    points.push({ keys, row });
  }
  return points;
}

function writeOutputs(info: RunInfo, rows: RowResult[], repeats: RowResult[], scaling: ScalingPoint[] | undefined, live: LivePoint[]): string {
  const report = `${renderReport(info, rows, repeats, scaling)}\n${renderLive(live)}`;
  writeFileSync(RESULTS_FILE, report);
  mkdirSync(join(ROOT, 'media'), { recursive: true });
  const title = `Keys per second copying ${formatCount(info.keys)} keys between local Redis servers`;
  const footnote = `redis ${info.redisVersion}, node ${info.nodeVersion}, ${info.date}; grey rows run inside redis-server`;
  writeFileSync(CHART_FILE, drawChart(title, footnote, chartBars(rows)));
  return report;
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2), process.env);
  stopOnSignal('SIGINT');
  stopOnSignal('SIGTERM');
  say(`Benchmark: ${formatCount(options.keys)} keys; memory scaling ${options.scaling ? 'on' : 'off (slow; npm run bench -- --scaling adds row (a) at 200,000 and 2,000,000 keys)'}`);
  if (options.liveOnly) {
    const live = renderLive(await runLiveRows(say));
    say(`\n${live}`);
    return 0;
  }
  const { info, rows, repeats } = await withServers((source, target) => runMainRows(source, target, options.keys));
  say('Live replication rows ...');
  const live = await runLiveRows(say);
  let report = writeOutputs(info, rows, repeats, undefined, live);
  let scaling: ScalingPoint[] | undefined;
  if (options.scaling) {
    scaling = await runScaling(rows, options.keys);
    report = writeOutputs(info, rows, repeats, scaling, live);
  }
  say(`\n${report}`);
  say(`Written: ${RESULTS_FILE}, ${CHART_FILE}`);
  const floors = [info.toolFloor, info.fileFloor, info.fileFourTimes].filter((r): r is RowResult => r !== undefined);
  const failed = [...rows, ...repeats, ...floors, ...(scaling ?? []).map((p) => p.row), ...live].filter((r) => r.problems.length > 0);
  if (failed.length > 0) process.stderr.write(`${failed.length} row(s) had problems (see notes above); exit code 1\n`);
  return failed.length > 0 ? 1 : 0;
}

try {
  process.exitCode = await main();
} catch (err) {
  killRunningTools();
  process.stderr.write(`Benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
}
