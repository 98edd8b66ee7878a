// What a run tells at the end: the Python script's summary lines (unchanged), then the elapsed time and
// throughput, and, for machines, the same as one JSON document (SUMMARY_JSON_FILE).
import { writeFileSync } from 'node:fs';
import { formatDuration } from './progress.js';
import type { Tally } from '../verify/comparison.js';
import type { Counts, CrossingCounts, MigrationResult } from '../records.js';
import { slotRangesText, type Sharding } from '../settings.js';

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  // A value that would print as 1000.0 of a unit is shown in the next one.
  while (unit < units.length - 1 && (value >= 1000 || (unit > 0 && Number(value.toFixed(1)) >= 1000))) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** The parity lines, exactly as the Python script prints them, plus the vanished count on its own line. */
export function summaryLines(result: MigrationResult, errorLogFile: string, excluded: number, excludeActive: boolean, scanType: string): string[] {
  const { counts } = result;
  const lines: string[] = [];
  if (result.fatal) lines.push(`Stopped early: ${result.fatal}`);
  if (result.interrupted) lines.push('Interrupted: the batches in flight were finished, nothing more was read');
  lines.push(
    `Number of restored keys: ${counts.restored}`,
    `Number of skipped keys: ${counts.skipped}`,
    `Number of failed keys: ${counts.failed}`,
    `Number of vanished keys: ${counts.vanished}`,
  );
  if (excludeActive) lines.push(`Number of excluded keys: ${excluded}`);
  // SCAN's TYPE filter runs on the server, which does not say how many keys it passed over.
  if (scanType) lines.push(`Keys of other types than ${scanType} were not scanned (SCAN_TYPE)`);
  if (counts.failed > 0) lines.push(`Errors occurred during the execution. Check |${errorLogFile}| for details`);
  lines.push(...crossingLines(result.crossing, errorLogFile));
  return lines;
}

/** Said after the summary when a file held empty collections (left out: redis-server drops them when it loads the file). */
export function emptyKeysLines(empty: number): string[] {
  return empty > 0 ? [`${empty} keys in the file are empty collections, which redis-server drops when it loads the file: left out`] : [];
}

/** How keys crossed to an older target, said only when some did; keys that lost something are named in the log. */
export function crossingLines(crossing: CrossingCounts, errorLogFile: string): string[] {
  const lines: string[] = [];
  const { restamped, byType, degraded } = crossing;
  if (restamped + byType > 0) {
    lines.push(`Crossing RDB versions: ${restamped} keys restored with the target's older version stamp (their encodings are ones it reads), ${byType} written by type (encodings it does not read)`);
  }
  if (degraded > 0) lines.push(`${degraded} keys were restored without what the target cannot hold (hash-field expiries, a stream's IDMP history): each is named, with what it lost, in |${errorLogFile}|`);
  return lines;
}

/** `restored N, skipped N, failed N, vanished N`: one run's share of a resumed migration. */
export const countsText = (c: Counts): string => `restored ${c.restored}, skipped ${c.skipped}, failed ${c.failed}, vanished ${c.vanished}`;

/** What a run that lost connections must say: a target that is another process now, and how often it reconnected. */
export function afterLossLines(targetReplaced: boolean, reconnections: number): string[] {
  const lines: string[] = [];
  if (targetReplaced) lines.push('The target restarted or failed over during the run: writes it confirmed just before may not have reached its disk or replica. Check with MIGRATION_MODE=compare');
  if (reconnections > 0) lines.push(`Reconnected ${reconnections} time(s) after a lost connection; every batch whose reply was lost was copied again`);
  return lines;
}

interface Timing {
  startedAt: Date;
  finishedAt: Date;
  keys: number;
  bytes: number;
}

const seconds = (t: Timing): number => (t.finishedAt.getTime() - t.startedAt.getTime()) / 1000;
const perSecond = (n: number, t: Timing): number => (seconds(t) > 0 ? n / seconds(t) : 0);

export function timingLine(t: Timing): string {
  return `Elapsed time: ${formatDuration(seconds(t))}, ${Math.round(perSecond(t.keys, t)).toLocaleString('en-US')} keys/s, ${(perSecond(t.bytes, t) / 1e6).toFixed(1)} MB/s`;
}

export interface JsonSummary {
  mode: 'copy' | 'compare' | 'dry-run' | 'live' | 'liveonly';
  /** Live replication's figures (MIGRATION_MODE=live, liveonly). */
  live?: Record<string, unknown>;
  counts?: Counts & { excluded: number; empty?: number };
  crossing?: CrossingCounts;
  method?: { requested: string; used: string; fallbackReason: string | null };
  verification?: Record<string, Tally>;
  timing: Timing;
  exitStatus: number;
  /** The run's share of the keys, when it has one (SOURCE_SLOTS, SHARD_COUNT): slots as "0-5460,10923-16383". */
  shard?: { index: number; count: number; slots: string };
}

/** One JSON document for scripts and dashboards; keys in snake_case like most tools' JSON. */
export function writeJsonSummary(path: string, summary: JsonSummary): void {
  const { timing } = summary;
  const doc = {
    mode: summary.mode,
    exit_status: summary.exitStatus,
    started_at: timing.startedAt.toISOString(),
    finished_at: timing.finishedAt.toISOString(),
    elapsed_seconds: seconds(timing),
    keys_per_second: perSecond(timing.keys, timing),
    megabytes_per_second: perSecond(timing.bytes, timing) / 1e6,
    bytes_moved: timing.bytes,
    counts: summary.counts ?? null,
    crossing: summary.crossing ?? null,
    method: summary.method ? { requested: summary.method.requested, used: summary.method.used, fallback_reason: summary.method.fallbackReason } : null,
    verification: summary.verification ?? null,
    live: summary.live ?? null,
    // Only for a run limited to some slots: an unsharded run's document keeps its shape.
    ...(summary.shard ? { shard: summary.shard } : {}),
  };
  writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`);
}

/** Said before connecting, for a run limited to some slots: which share of the keys it copies. */
export function shardLine({ index, count, slots }: Sharding): string | undefined {
  if (!slots) return undefined;
  const share = `the keys in hash slots ${slotRangesText(slots)}`;
  return count > 1 ? `Shard ${index} of ${count} (0 to ${count - 1}): ${share}` : `Only ${share} (SOURCE_SLOTS)`;
}
