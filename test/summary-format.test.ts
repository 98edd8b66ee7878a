// What a run prints, on its own (lib/progress.ts, lib/report.ts): durations, byte sizes, the progress line,
// the summary lines the Python script printed, and the JSON summary. No server is started.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatDuration, progressLine, type ProgressSnapshot } from '../lib/report/progress.js';
import { afterLossLines, countsText, crossingLines, formatBytes, summaryLines, timingLine, writeJsonSummary } from '../lib/report/summary.js';
import type { MigrationResult } from '../lib/records.js';

const dir = mkdtempSync(join(tmpdir(), 'summary-format-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('formatDuration', () => {
  it('never shows 60 seconds or 60 minutes: a value is rounded before it is cut into units', () => {
    expect(formatDuration(59.7)).toBe('1 min 0 s');
    expect(formatDuration(119.6)).toBe('2 min 0 s');
    expect(formatDuration(3599.6)).toBe('1 h 0 min');
  });

  it('shows tenths below 10 s, whole seconds below a minute', () => {
    expect(formatDuration(0)).toBe('0.0 s');
    expect(formatDuration(3.14)).toBe('3.1 s');
    expect(formatDuration(9.94)).toBe('9.9 s');
    expect(formatDuration(10)).toBe('10 s');
    expect(formatDuration(42.4)).toBe('42 s');
  });

  it('shows minutes and seconds below an hour, hours and minutes above', () => {
    expect(formatDuration(60)).toBe('1 min 0 s');
    expect(formatDuration(90)).toBe('1 min 30 s');
    expect(formatDuration(3_599)).toBe('59 min 59 s');
    expect(formatDuration(3_600)).toBe('1 h 0 min');
    expect(formatDuration(7_325)).toBe('2 h 2 min');
    expect(formatDuration(100 * 3_600 + 59 * 60 + 59)).toBe('100 h 59 min');
  });

  it('shows ? for a time it cannot know (no rate yet)', () => {
    expect(formatDuration(Infinity)).toBe('?');
    expect(formatDuration(Number.NaN)).toBe('?');
  });
});

describe('progressLine', () => {
  const snapshot = (s: Partial<ProgressSnapshot>): ProgressSnapshot => ({ scanned: 0, total: 0, bytes: 0, restored: 0, skipped: 0, failed: 0, vanished: 0, ...s });

  it('gives scanned of total, percentage, rates, ETA and the counts', () => {
    const line = progressLine(snapshot({ scanned: 1_500, total: 6_000, bytes: 3_000_000, restored: 1_200, skipped: 250, failed: 30, vanished: 20 }), 2);
    expect(line).toBe('1,500/6,000 keys (25.0%), 750 keys/s, 1.5 MB/s, ETA 6.0 s; restored 1,200, skipped 250, failed 30, vanished 20');
  });

  it('takes the scanned count as the total once the scan passes the DBSIZE estimate', () => {
    expect(progressLine(snapshot({ scanned: 1_200, total: 1_000 }), 1)).toMatch(/^1,200\/1,200 keys \(100\.0%\), 1,200 keys\/s, 0\.0 MB\/s, ETA 0\.0 s;/);
  });

  it('shows an empty source as done, and an unknown ETA before any time has passed', () => {
    expect(progressLine(snapshot({}), 0)).toBe('0/0 keys (100.0%), 0 keys/s, 0.0 MB/s, ETA ?; restored 0, skipped 0, failed 0, vanished 0');
    expect(progressLine(snapshot({ total: 10 }), 5)).toMatch(/^0\/10 keys \(0\.0%\), 0 keys\/s, 0\.0 MB\/s, ETA \?;/);
  });

  it('says what the run waits for, and for how long', () => {
    const since = Date.now() - 30_000;
    expect(progressLine(snapshot({ waiting: { reason: 'source 10.0.0.1:6379 connection lost', since } }), 1)).toMatch(/; reconnecting: source 10\.0\.0\.1:6379 connection lost, for 30 s$/);
    expect(progressLine(snapshot({ waiting: { reason: 'CLUSTERDOWN', since, doing: 'waiting' } }), 1)).toMatch(/; waiting: CLUSTERDOWN, for 30 s$/);
  });
});

describe('formatBytes', () => {
  it('uses decimal units, one decimal above bytes', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1_000)).toBe('1.0 KB');
    expect(formatBytes(1_536)).toBe('1.5 KB');
    expect(formatBytes(1_500_000)).toBe('1.5 MB');
    expect(formatBytes(2_500_000_000)).toBe('2.5 GB');
    expect(formatBytes(2.5e12)).toBe('2.5 TB');
  });

  it('stops at TB', () => {
    expect(formatBytes(1.234e15)).toBe('1234.0 TB');
  });
});

describe('summaryLines', () => {
  const result = (r: Partial<MigrationResult>): MigrationResult => ({
    counts: { restored: 10, skipped: 2, failed: 0, vanished: 1 },
    crossing: { restamped: 0, byType: 0, degraded: 0 },
    errorLimitReached: false,
    interrupted: false,
    ...r,
  });

  it("are the Python script's four count lines for a clean run", () => {
    expect(summaryLines(result({}), 'errors.log', 0, false, '')).toEqual([
      'Number of restored keys: 10',
      'Number of skipped keys: 2',
      'Number of failed keys: 0',
      'Number of vanished keys: 1',
    ]);
  });

  it('name the excluded count only with an exclude pattern, and say SCAN_TYPE left other types unscanned', () => {
    const lines = summaryLines(result({}), 'errors.log', 0, true, 'hash');
    expect(lines.slice(4)).toEqual(['Number of excluded keys: 0', 'Keys of other types than hash were not scanned (SCAN_TYPE)']);
  });

  it('point at the error log when a key failed', () => {
    const lines = summaryLines(result({ counts: { restored: 1, skipped: 0, failed: 3, vanished: 0 } }), 'run-errors.log', 0, false, '');
    expect(lines).toContain('Number of failed keys: 3');
    expect(lines.at(-1)).toBe('Errors occurred during the execution. Check |run-errors.log| for details');
  });

  it('start with why the run stopped early or was interrupted', () => {
    const lines = summaryLines(result({ fatal: 'source went away', interrupted: true }), 'e.log', 0, false, '');
    expect(lines.slice(0, 3)).toEqual([
      'Stopped early: source went away',
      'Interrupted: the batches in flight were finished, nothing more was read',
      'Number of restored keys: 10',
    ]);
  });

  it('end with how keys crossed to an older target, when some did', () => {
    const lines = summaryLines(result({ crossing: { restamped: 4, byType: 1, degraded: 0 } }), 'e.log', 0, false, '');
    expect(lines.at(-1)).toMatch(/^Crossing RDB versions: 4 keys restored with the target's older version stamp .*, 1 written by type/);
  });
});

describe('crossingLines and afterLossLines', () => {
  it('say nothing when no key crossed or lost anything', () => {
    expect(crossingLines({ restamped: 0, byType: 0, degraded: 0 }, 'e.log')).toEqual([]);
    expect(afterLossLines(false, 0)).toEqual([]);
  });

  it('name keys restored without their hash-field expiries, and where they are listed', () => {
    expect(crossingLines({ restamped: 0, byType: 0, degraded: 2 }, 'e.log')).toEqual([
      "2 keys were restored without what the target cannot hold (hash-field expiries, a stream's IDMP history): each is named, with what it lost, in |e.log|",
    ]);
    expect(crossingLines({ restamped: 0, byType: 3, degraded: 1 }, 'e.log')).toHaveLength(2);
  });

  it('warn of a replaced target and count the reconnections', () => {
    const lines = afterLossLines(true, 2);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^The target restarted or failed over during the run/);
    expect(lines[1]).toBe('Reconnected 2 time(s) after a lost connection; every batch whose reply was lost was copied again');
  });
});

describe('timing and counts', () => {
  const timing = (seconds: number, keys: number, bytes: number) => ({ startedAt: new Date(1_000_000), finishedAt: new Date(1_000_000 + seconds * 1000), keys, bytes });

  it('timingLine gives the elapsed time, keys per second and MB per second', () => {
    expect(timingLine(timing(10, 12_345, 5_000_000))).toBe('Elapsed time: 10 s, 1,235 keys/s, 0.5 MB/s');
    expect(timingLine(timing(0, 100, 100))).toBe('Elapsed time: 0.0 s, 0 keys/s, 0.0 MB/s');
  });

  it('countsText lists the four counts', () => {
    expect(countsText({ restored: 1, skipped: 2, failed: 3, vanished: 4 })).toBe('restored 1, skipped 2, failed 3, vanished 4');
  });

  it('writeJsonSummary writes one snake_case document with the rates worked out', () => {
    const path = join(dir, 'summary.json');
    writeJsonSummary(path, {
      mode: 'copy',
      counts: { restored: 5, skipped: 0, failed: 0, vanished: 0, excluded: 2 },
      method: { requested: 'auto', used: 'type', fallbackReason: 'RESTORE refused' },
      timing: timing(4, 100, 2_000_000),
      exitStatus: 0,
    });
    const doc = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    expect(doc).toEqual({
      mode: 'copy',
      exit_status: 0,
      started_at: new Date(1_000_000).toISOString(),
      finished_at: new Date(1_004_000).toISOString(),
      elapsed_seconds: 4,
      keys_per_second: 25,
      megabytes_per_second: 0.5,
      bytes_moved: 2_000_000,
      counts: { restored: 5, skipped: 0, failed: 0, vanished: 0, excluded: 2 },
      crossing: null,
      method: { requested: 'auto', used: 'type', fallback_reason: 'RESTORE refused' },
      verification: null,
      live: null,
    });
  });
});

describe('formatBytes at a unit\'s edge', () => {
  it('shows a value that would round to 1000.0 of a unit in the next unit', () => {
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(999_999)).toBe('1.0 MB');
    expect(formatBytes(999_940)).toBe('999.9 KB');
  });
});
