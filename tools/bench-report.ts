// Turns benchmark rows into the markdown of tools/bench-results.md (also printed) and into the chart's bars.
// Owns the targets the tool is held to and the pass/fail verdict on each.
import type { ChartBar } from './bench-chart.js';
import { formatCount } from './bench-chart.js';
import type { ClientFloor } from './bench-floor.js';
import { ROW_LABELS, isToolRow, type RowId, type RowResult } from './bench-rows.js';
import { SLOW_CALL_MS, type ScriptCalls } from './bench-scripts.js';

export const TARGETS = {
  /** (r), a self-hosted source read as its replica: against MIGRATE and REPLICAOF, and the source's CPU against REPLICAOF's. */
  replicaVsMigrate: 1.5, replicaVsReplicaof: 0.7, replicaSourceCpuVsReplicaof: 1.3,
  dumpVsMigrate: 1.0, typeVsMigrate: 0.35, compareVsDumpWall: 1.5, checkpointVsDump: 0.97, nativeVsServer: 2.0, nativeVsLoad: 0.35, peakRssMb: 150, scalingRatio: 1.1,
  /** (f): the tool's CPU per key past start-up, its wall time past start-up over the target's CPU, its peak RSS and how flat it stays. */
  fileCpuMicrosPerKey: 1.0, fileWallVsTargetCpu: 1.25, filePeakRssMb: 200, fileRssFourTimesRatio: 1.1,
} as const;

/** (a′): the compare row checks the copy (a) made, so it is named after it rather than given a letter of its own. */
const LETTER: Record<RowId, string> = {
  replica: '(r)', dump: '(a)', compare: '(a′)', checkpoint: '(a″)', type: '(b)', migrate: '(c)', replicaof: '(d)', cluster: '(e)', 'cluster-workers': '(e′)', 'rdb-native': '(f)', 'rdb-server': '(f′)', 'rdb-load': '(g)',
};

export interface RunInfo {
  date: string;
  redisVersion: string;
  nodeVersion: string;
  keys: number;
  datasetBytes: number;
  seedSeconds: number;
  machine: string;
  /** The tool run on an empty database: its wall time, CPU and RSS before any key. */
  toolFloor?: RowResult;
  /** The native reader on an empty .rdb file: (f)'s start-up, subtracted to see its cost per key. */
  fileFloor?: RowResult;
  /** (f) once more on a file of four times the keys, for how flat its peak RSS stays. */
  fileFourTimes?: RowResult;
  /** For scale beside (f)'s CPU per key: the least a Node.js client spends here on the same file (bench-floor.ts). */
  clientFloor?: ClientFloor;
}

export interface ScalingPoint {
  keys: number;
  row: RowResult;
}

const MB = 1024 * 1024;

export function keysPerSecond(row: RowResult): number | undefined {
  return row.wallSeconds ? row.keys / row.wallSeconds : undefined;
}

/** How many times faster row `a` is than row `b` (keys/s over keys/s). */
function speedRatio(a: RowResult | undefined, b: RowResult | undefined): number | undefined {
  const x = a && keysPerSecond(a);
  const y = b && keysPerSecond(b);
  return x && y ? x / y : undefined;
}

/** Row `a`'s wall time over row `b`'s: for the compare row, whose keys/s counts keys checked, not copied. */
function wallRatio(a: RowResult | undefined, b: RowResult | undefined): number | undefined {
  return a?.wallSeconds && b?.wallSeconds ? a.wallSeconds / b.wallSeconds : undefined;
}

/** The middle of the runs' keys/s (the mean of the two middle ones for an even count). */
function median(values: number[]): number | undefined {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return undefined;
  return sorted.length % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** Every run of row `id`: the one in the table and its paired repeats. */
const runsOf = (id: RowId, rows: RowResult[], repeats: RowResult[]): RowResult[] => [...rows, ...repeats].filter((r) => r.id === id && r.problems.length === 0);

/** Median keys/s of row `a`'s runs over row `b`'s. */
function medianSpeedRatio(a: RowId, b: RowId, rows: RowResult[], repeats: RowResult[]): number | undefined {
  const speeds = (id: RowId): number[] => runsOf(id, rows, repeats).flatMap((r) => keysPerSecond(r) ?? []);
  const x = median(speeds(a));
  const y = median(speeds(b));
  return x && y ? x / y : undefined;
}

const fixed = (value: number | undefined, digits: number): string => (value === undefined ? '—' : value.toFixed(digits));
const times = (value: number | undefined): string => (value === undefined ? '—' : `${value.toFixed(2)}×`);
const atLeast = (value: number | undefined, floor: number): boolean | undefined => (value === undefined ? undefined : value >= floor);
const atMost = (value: number | undefined, ceiling: number): boolean | undefined => (value === undefined ? undefined : value <= ceiling);
const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'not measured' : ok ? 'met' : '**NOT met**');

function rowLine(row: RowResult, info: RunInfo, migrate: RowResult | undefined): string {
  const speed = keysPerSecond(row);
  const mbPerSecond = row.wallSeconds ? info.datasetBytes / MB / row.wallSeconds : undefined;
  const digestText = row.digestMatches === undefined ? '—' : row.digestMatches ? 'equal' : '**DIFFERS**';
  const notes = row.problems.length > 0 ? row.problems.join('; ') : '';
  // A check moves no data, so it is set against (a)'s wall time in the targets, not against MIGRATE here.
  const vsMigrate = row.id === 'compare' ? undefined : speedRatio(row, migrate);
  return `| ${LETTER[row.id]} ${ROW_LABELS[row.id]} | ${fixed(row.wallSeconds, 2)} | ${speed ? formatCount(speed) : '—'} | ${fixed(mbPerSecond, 1)} | ${fixed(row.cpuSeconds, 2)} | ${fixed(row.peakRssMb, 1)} | ${fixed(row.sourceCpuSeconds, 1)} / ${fixed(row.targetCpuSeconds, 1)} | ${fixed(row.loadAfter, 1)} | ${digestText} | ${times(vsMigrate)} | ${notes} |`;
}

/** (f) past its start-up (the native reader on an empty file): CPU µs per key and wall time over the target's CPU, medians over its runs. */
function filePastStartUp(rows: RowResult[], repeats: RowResult[], floor: RowResult | undefined): { cpuMicrosPerKey?: number; wallVsTargetCpu?: number } {
  const runs = runsOf('rdb-native', rows, repeats);
  if (!floor?.cpuSeconds || !floor.wallSeconds || runs.length === 0) return {};
  const cpu = median(runs.flatMap((r) => (r.cpuSeconds === undefined ? [] : [((r.cpuSeconds - (floor.cpuSeconds ?? 0)) / r.keys) * 1e6])));
  const wall = median(runs.flatMap((r) => (r.wallSeconds && r.targetCpuSeconds ? [(r.wallSeconds - (floor.wallSeconds ?? 0)) / r.targetCpuSeconds] : [])));
  return { cpuMicrosPerKey: cpu, wallVsTargetCpu: wall };
}

/** Not a goal: the floor under (f)'s CPU per key, in its three parts (bench-floor.ts). */
function clientFloorLine(floor: ClientFloor | undefined): string {
  const parts = floor ? `our reader ${fixed(floor.readerMicros, 2)} + encoding ${fixed(floor.encodeMicros, 2)} + the socket alone ${fixed(floor.socketMicros, 2)} = ${fixed(floor.readerMicros + floor.encodeMicros + floor.socketMicros, 2)} µs` : '—';
  return `| (f) for scale, not a goal: the least a Node.js client spends here per key on that file (tools/bench-floor.ts: the reader warm, each record encoded as RESTORE, the commands sent and their replies counted, nothing else) | ${parts} | ${floor ? 'for scale' : 'not measured'} |`;
}

function fileLines(rows: RowResult[], repeats: RowResult[], info: RunInfo): string[] {
  const { cpuMicrosPerKey, wallVsTargetCpu } = filePastStartUp(rows, repeats, info.fileFloor);
  const rss = rows.find((r) => r.id === 'rdb-native')?.peakRssMb;
  const four = info.fileFourTimes;
  const flat = rss && four?.peakRssMb ? four.peakRssMb / rss : undefined;
  const fourNote = four && four.problems.length > 0 ? ` (${four.problems.join('; ')})` : '';
  return [
    `| (f) tool CPU per key past start-up (the native reader on an empty file subtracted), median of ${runsOf('rdb-native', rows, repeats).length} runs ≤ ${TARGETS.fileCpuMicrosPerKey.toFixed(1)} µs | ${fixed(cpuMicrosPerKey, 2)} µs | ${verdict(atMost(cpuMicrosPerKey, TARGETS.fileCpuMicrosPerKey))} |`,
    clientFloorLine(info.clientFloor),
    `| (f) wall time past start-up ≤ ${TARGETS.fileWallVsTargetCpu.toFixed(2)}× the target's CPU s for its RESTOREs, median | ${times(wallVsTargetCpu)} | ${verdict(atMost(wallVsTargetCpu, TARGETS.fileWallVsTargetCpu))} |`,
    `| peak RSS of (f) ≤ ${TARGETS.filePeakRssMb} MB | ${fixed(rss, 1)} MB | ${verdict(atMost(rss, TARGETS.filePeakRssMb))} |`,
    `| peak RSS of (f) on a file of ${four ? formatCount(four.keys) : 'four times the'} keys ≤ ${TARGETS.fileRssFourTimesRatio.toFixed(2)}× (f)'s${fourNote} | ${fixed(four?.peakRssMb, 1)} MB, ${times(flat)} | ${verdict(atMost(flat, TARGETS.fileRssFourTimesRatio))} |`,
  ];
}

/** (r): speed against MIGRATE and REPLICAOF, start-up included, and what it costs the source against REPLICAOF. */
function replicaLines(find: (id: RowId) => RowResult | undefined): string[] {
  const [replica, replicaof] = [find('replica'), find('replicaof')];
  const vsMigrate = speedRatio(replica, find('migrate'));
  const vsReplicaof = speedRatio(replica, replicaof);
  const sourceCpu = replica?.sourceCpuSeconds && replicaof?.sourceCpuSeconds ? replica.sourceCpuSeconds / replicaof.sourceCpuSeconds : undefined;
  return [
    `| (r) read as a replica ≥ ${TARGETS.replicaVsMigrate.toFixed(2)}× (c) keys/s, start-up included | ${times(vsMigrate)} | ${verdict(atLeast(vsMigrate, TARGETS.replicaVsMigrate))} |`,
    `| (r) ≥ ${TARGETS.replicaVsReplicaof.toFixed(2)}× (d) keys/s | ${times(vsReplicaof)} | ${verdict(atLeast(vsReplicaof, TARGETS.replicaVsReplicaof))} |`,
    `| (r) source CPU ≤ ${TARGETS.replicaSourceCpuVsReplicaof.toFixed(2)}× (d)'s | ${times(sourceCpu)} | ${verdict(atMost(sourceCpu, TARGETS.replicaSourceCpuVsReplicaof))} |`,
  ];
}

function targetLines(rows: RowResult[], repeats: RowResult[], info: RunInfo): string[] {
  const keys = info.keys;
  const find = (id: RowId): RowResult | undefined => rows.find((r) => r.id === id);
  const dumpRatio = speedRatio(find('dump'), find('migrate'));
  const typeRatio = speedRatio(find('type'), find('migrate'));
  const compareRatio = wallRatio(find('compare'), find('dump'));
  const checkpointRatio = medianSpeedRatio('checkpoint', 'dump', rows, repeats);
  const nativeRatio = medianSpeedRatio('rdb-native', 'rdb-server', rows, repeats);
  const paired = (id: RowId): string => `${runsOf(id, rows, repeats).length}`;
  const loadRatio = speedRatio(find('rdb-native'), find('rdb-load'));
  // The RSS target is set for the copies; the compare row's RSS is in the table.
  const rssRows = rows.filter((r) => (r.id === 'replica' || r.id === 'dump' || r.id === 'checkpoint' || r.id === 'type') && r.peakRssMb !== undefined);
  const worstRss = rssRows.length > 0 ? Math.max(...rssRows.map((r) => r.peakRssMb ?? 0)) : undefined;
  const rssNote = keys === 1_000_000 ? '' : ` (the target is set for 1,000,000 keys; this run had ${formatCount(keys)})`;
  return [
    '| target | measured | verdict |',
    '|---|---|---|',
    ...replicaLines(find),
    `| (a) ≥ ${TARGETS.dumpVsMigrate.toFixed(2)}× (c) keys/s | ${times(dumpRatio)} | ${verdict(atLeast(dumpRatio, TARGETS.dumpVsMigrate))} |`,
    `| (b) ≥ ${TARGETS.typeVsMigrate.toFixed(2)}× (c) keys/s | ${times(typeRatio)} | ${verdict(atLeast(typeRatio, TARGETS.typeVsMigrate))} |`,
    `| (a′) compare ≤ ${TARGETS.compareVsDumpWall.toFixed(2)}× (a) wall time | ${times(compareRatio)} | ${verdict(atMost(compareRatio, TARGETS.compareVsDumpWall))} |`,
    `| (a″) with CHECKPOINT_FILE ≥ ${TARGETS.checkpointVsDump.toFixed(2)}× (a) keys/s, medians of ${paired('checkpoint')} and ${paired('dump')} interleaved runs | ${times(checkpointRatio)} | ${verdict(atLeast(checkpointRatio, TARGETS.checkpointVsDump))} |`,
    `| (f) native reader ≥ ${TARGETS.nativeVsServer.toFixed(2)}× (f′) server reader keys/s, medians of ${paired('rdb-native')} and ${paired('rdb-server')} interleaved runs | ${times(nativeRatio)} | ${verdict(atLeast(nativeRatio, TARGETS.nativeVsServer))} |`,
    `| (f) native reader ≥ ${TARGETS.nativeVsLoad.toFixed(2)}× (g) redis-server's load keys/s | ${times(loadRatio)} | ${verdict(atLeast(loadRatio, TARGETS.nativeVsLoad))} |`,
    ...fileLines(rows, repeats, info),
    `| peak RSS of (r), (a), (a″) and (b) ≤ ${TARGETS.peakRssMb} MB${rssNote} | ${fixed(worstRss, 1)} MB | ${verdict(worstRss === undefined ? undefined : worstRss <= TARGETS.peakRssMb)} |`,
  ];
}

function scalingLines(points: ScalingPoint[] | undefined): string[] {
  if (!points) {
    return ['Not run: it is slow (two more seedings and tool runs, up to 2,000,000 keys). Run `npm run bench -- --scaling` to add it.'];
  }
  const sorted = [...points].sort((a, b) => a.keys - b.keys);
  const lines = ['| keys | wall s | keys/s | peak RSS MB | digest | notes |', '|---|---|---|---|---|---|'];
  for (const { keys, row } of sorted) {
    const speed = keysPerSecond(row);
    const digestText = row.digestMatches === undefined ? '—' : row.digestMatches ? 'equal' : '**DIFFERS**';
    lines.push(`| ${formatCount(keys)} | ${fixed(row.wallSeconds, 2)} | ${speed ? formatCount(speed) : '—'} | ${fixed(row.peakRssMb, 1)} | ${digestText} | ${row.problems.join('; ')} |`);
  }
  const smallest = sorted.find((p) => p.keys === 200_000)?.row.peakRssMb;
  const largest = sorted.find((p) => p.keys === 2_000_000)?.row.peakRssMb;
  const ratio = smallest && largest ? largest / smallest : undefined;
  const atMillion = sorted.find((p) => p.keys === 1_000_000)?.row.peakRssMb;
  lines.push(
    '',
    '| target | measured | verdict |',
    '|---|---|---|',
    `| peak RSS at 1,000,000 keys ≤ ${TARGETS.peakRssMb} MB | ${fixed(atMillion, 1)} MB | ${verdict(atMillion === undefined ? undefined : atMillion <= TARGETS.peakRssMb)} |`,
    `| peak RSS 2,000,000 / 200,000 keys ≤ ${TARGETS.scalingRatio.toFixed(2)} | ${fixed(ratio, 2)} | ${verdict(ratio === undefined ? undefined : ratio <= TARGETS.scalingRatio)} |`,
  );
  return lines;
}

const scriptMs = (value: number | undefined): string => (value === undefined ? '—' : value.toFixed(2));
/** No slowlog entry means no call reached the threshold, which is a bound, not a missing figure. */
const longestMs = (calls: ScriptCalls): string => (calls.longestMs !== undefined ? calls.longestMs.toFixed(1) : calls.calls > 0 ? `< ${SLOW_CALL_MS}` : '—');

function scriptLines(rows: RowResult[]): string[] {
  const lines = [
    '| row | EVAL calls (source / target) | mean script call ms (source / target) | longest script call ms (source / target) |',
    '|---|---|---|---|',
  ];
  for (const row of rows) {
    if (!isToolRow(row.id)) continue;
    const s = row.scripts;
    if (!s) {
      lines.push(`| ${LETTER[row.id]} ${ROW_LABELS[row.id]} | — | — | — |`);
      continue;
    }
    lines.push(`| ${LETTER[row.id]} ${ROW_LABELS[row.id]} | ${formatCount(s.source.calls)} / ${formatCount(s.target.calls)} | ` +
      `${scriptMs(s.source.meanMs)} / ${scriptMs(s.target.meanMs)} | ${longestMs(s.source)} / ${longestMs(s.target)} |`);
  }
  lines.push(
    '',
    'Time inside each redis-server, network and queueing excluded: the mean is the change in INFO commandstats',
    `(cmdstat_eval usec / calls) over the row; the longest is from SLOWLOG, which logs calls of ${SLOW_CALL_MS} ms or more`,
    `(slowlog-log-slower-than ${SLOW_CALL_MS * 1000}), so "< ${SLOW_CALL_MS}" means no call reached that. A script call blocks every other`,
    'client of that server for its whole length.',
  );
  return lines;
}

function floorLine(floor: RowResult | undefined, what: string, rows: string): string {
  if (!floor) return `Tool startup floor (${what}): not measured.`;
  const problems = floor.problems.length > 0 ? ` Problems: ${floor.problems.join('; ')}.` : '';
  return `Tool startup floor (${what}, 0 keys): ${fixed(floor.wallSeconds, 2)} s wall, ` +
    `${fixed(floor.cpuSeconds, 2)} s CPU, ${fixed(floor.peakRssMb, 1)} MB peak RSS; this part of ${rows} does not grow with the key count.${problems}`;
}

/** The wall times of every run of the paired rows, so the medians behind two of the targets can be checked. */
function pairedLines(rows: RowResult[], repeats: RowResult[]): string[] {
  const ids = [...new Set(repeats.map((r) => r.id))];
  if (ids.length === 0) return ['No paired repeats in this run.'];
  const lines = ['| row | wall s of each run (the table\'s first) | median keys/s |', '|---|---|---|'];
  for (const id of ids) {
    const runs = [...rows, ...repeats].filter((r) => r.id === id);
    const speed = median(runsOf(id, rows, repeats).flatMap((r) => keysPerSecond(r) ?? []));
    lines.push(`| ${LETTER[id]} ${ROW_LABELS[id]} | ${runs.map((r) => fixed(r.wallSeconds, 2)).join(', ')} | ${speed ? formatCount(speed) : '—'} |`);
  }
  lines.push('', 'Runs of a group alternate in order, each into an emptied target (the cluster row: its copy repeated into the emptied target cluster); a run with a problem is left out of the median.');
  return lines;
}

export function renderReport(info: RunInfo, rows: RowResult[], repeats: RowResult[], scaling: ScalingPoint[] | undefined): string {
  const find = (id: RowId): RowResult | undefined => rows.find((r) => r.id === id);
  const migrate = find('migrate');
  return [
    '# Benchmark results',
    '',
    'Written by `npm run bench` (tools/bench.ts); rerun it rather than editing this file.',
    '',
    '| | |',
    '|---|---|',
    `| date | ${info.date} |`,
    `| redis | ${info.redisVersion} |`,
    `| node | ${info.nodeVersion} |`,
    `| keys | ${formatCount(info.keys)}: 85% strings of 20-100 bytes, 4% hashes, 4% lists, 3% sets, 3.5% zsets (5 elements each), 0.5% streams (3 entries, half with a consumer group); 10% with a TTL |`,
    `| dataset | ${(info.datasetBytes / MB).toFixed(1)} MB (source INFO memory used_memory_dataset), seeded in ${info.seedSeconds.toFixed(1)} s |`,
    `| machine | ${info.machine} |`,
    '',
    '| row | wall s | keys/s | MB/s | tool CPU s | tool peak RSS MB | server CPU s (source / target) | load | target digest | vs (c) | notes |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((row) => rowLine(row, info, migrate)),
    '',
    'MB/s is the source\'s used_memory_dataset divided by wall time: the in-memory size moved per second, not bytes on the wire',
    '(summing DUMP sizes would cost a pass of its own). MB = 2^20 bytes. CPU s (user + sys) and peak RSS are of the tool process',
    '(tsx and the node process it starts), from /usr/bin/time; rows (c) and (d) run inside redis-server, so they have none.',
    'For (a′) keys/s and MB/s are keys and data checked, not copied.',
    'Server CPU s is the change in INFO cpu (user + sys, fork children included once reaped) of each redis-server over the row.',
    'Load is the 1-minute load average as the row ended; the row itself adds about 2 (tool and two servers), so well above 2 on',
    'this 2-core machine means other work was competing and the figures are pessimistic.',
    'Wall time of the tool rows includes starting node and tsx. Each row copies into a target emptied by FLUSHALL, with its config reset;',
    'the target digest is DEBUG DIGEST compared with the source\'s. (a′) runs right after (a) on the target (a) filled, not emptied: it',
    'writes nothing and must report every key identical (exit 0); its digest check is equal by construction and kept as a guard.',
    '(a″) is (a) with CHECKPOINT_FILE set: the resilience a run always has (reply watchdog, lost-batch retry) plus the checkpoint',
    'written ten times a second; it is held to 0.97× (a), by the medians of interleaved runs (see Repeats).',
    '(f), (f′) and (g) start from the source saved to an .rdb file (SAVE): (f) and (f′) copy it into the emptied target with',
    'SOURCE_RDB_FILE, read by our reader or loaded into a private redis-server (its RSS is the peak); (g) is a redis-server',
    'loading the same file, timed until it accepts connections: the limit for reading the file.',
    '',
    floorLine(info.toolFloor, 'the same command on an empty database', '(a), (a′) and (b)'),
    floorLine(info.fileFloor, 'the native reader on an empty .rdb file', '(f)'),
    '',
    `Ratios (keys/s): (r)/(a) = ${times(speedRatio(find('replica'), find('dump')))}, (a)/(c) = ${times(speedRatio(find('dump'), migrate))}, (b)/(c) = ${times(speedRatio(find('type'), migrate))}, (a)/(d) = ${times(speedRatio(find('dump'), find('replicaof')))}, ` +
      `(e)/(a) = ${times(speedRatio(find('cluster'), find('dump')))}, (e′)/(e) = ${times(medianSpeedRatio('cluster-workers', 'cluster', rows, repeats))}, (a″)/(a) = ${times(speedRatio(find('checkpoint'), find('dump')))}; wall time (a′)/(a) = ${times(wallRatio(find('compare'), find('dump')))}.`,
    '',
    '(e) copies the same keys between two 3-master clusters on this machine: six redis-servers and the tool share the 2 cores, so',
    'it shows the cost of routing by slot and scanning every master, not the scaling that masters on their own machines would give.',
    'Its server CPU s are summed over the masters of each cluster, and its target digest is the XOR of the masters\' DEBUG DIGESTs',
    '(equal to one server\'s digest of the same keys when an odd number of masters hold keys). (e′) is the same copy with',
    'WORKERS=2: two processes, each a half of the slots; its tool CPU s add up both workers and the process that runs them.',
    'On two cores shared with six servers, its speed-up is bounded by the servers\' own CPU.',
    '',
    '## Targets',
    '',
    ...targetLines(rows, repeats, info),
    '',
    '## Repeats (every copy row three times, interleaved; the medians behind the (a″) and (f)/(f′) targets)',
    '',
    ...pairedLines(rows, repeats),
    '',
    '## Script calls (tool rows)',
    '',
    ...scriptLines(rows),
    '',
    '## Memory scaling (row (a) at 200,000 and 2,000,000 keys)',
    '',
    ...scalingLines(scaling),
    '',
  ].join('\n');
}

export function chartBars(rows: RowResult[]): ChartBar[] {
  return rows.map((row) => ({
    label: ROW_LABELS[row.id],
    value: keysPerSecond(row),
    // Its keys/s are keys checked; the unit on the bar says so, as the title speaks of copying.
    unit: row.id === 'compare' ? 'keys/s checked' : 'keys/s',
    reference: row.id === 'migrate' || row.id === 'replicaof' || row.id === 'rdb-load',
  }));
}
