// WORKERS=N: this run split into N processes of this machine, each a contiguous share of the run's slots
// (SOURCE_SLOTS), with their output prefixed, one progress line that adds theirs up, one summary, the worst
// exit status, and every stop passed on to all of them.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { noCounts, type Counts } from '../records.js';
import { Progress, type ProgressSnapshot } from '../report/progress.js';
import { formatDuration } from '../report/progress.js';
import { tallyLine, type Tally } from '../verify/comparison.js';
import { readings, WORKER_VARIABLE, type LiveReading, type WorkerReport } from '../report/metrics.js';
import { Interruption } from '../runtime.js';
import { ALL_SLOTS, leavesKeysOut, slotRangesText, splitSlots, type Settings } from '../settings.js';
import { EXIT, worse } from './exit.js';
import { say } from './session.js';

interface Worker {
  index: number;
  slots: string;
  child: ChildProcess;
  summaryFile: string;
  latest?: WorkerReport;
  exited: Promise<number>;
}

/** Runs the workers to their end; the exit status is the worst of theirs. */
export async function runWorkers(settings: Settings): Promise<number> {
  const started = new Date();
  const dir = mkdtempSync(join(tmpdir(), 'rkm-workers-'));
  // One error log for all: emptied here when FILEMOD=w, then each worker appends its lines.
  if (settings.errorLogMode === 'w') writeFileSync(settings.errorLogFile, '');
  const shares = splitSlots(settings.sharding.slots ?? ALL_SLOTS, settings.workers);
  say(`Running ${settings.workers} workers on this machine, each a share of the slots ${slotRangesText(settings.sharding.slots ?? ALL_SLOTS)}; their lines start with [worker N]`);
  const workers = shares.map((share, index) => startWorker(settings, index, slotRangesText(share), join(dir, `summary-${index}.json`)));
  // Ctrl-C, a SIGTERM, or a launcher (npx) stopped: passed on to every worker, which drains and reports.
  const interruption = new Interruption();
  interruption.onRequest(() => {
    for (const { child } of workers) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  readings.progress = () => addedUp(workers);
  readings.reconnects = () => workers.reduce((sum, w) => sum + (w.latest?.reconnects ?? 0), 0);
  readings.live = () => liveAddedUp(workers);
  const progress = new Progress(settings.progress, readings.progress);
  try {
    const codes = await Promise.all(workers.map((w) => w.exited));
    progress.stop();
    const status = codes.reduce<number>((worst, code) => worse(worst, documented(code)), EXIT.ok);
    report(settings, workers, codes, status, started);
    return status;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function startWorker(settings: Settings, index: number, slots: string, summaryFile: string): Worker {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    [WORKER_VARIABLE]: String(index),
    WORKERS: '1',
    SOURCE_SLOTS: slots,
    SHARD_COUNT: '1',
    SHARD_INDEX: '0',
    PROGRESS: 'off',
    // The run serves the workers' figures added up, on its own port.
    METRICS_PORT: '0',
    FILEMOD: 'a',
    SUMMARY_JSON_FILE: summaryFile,
    CHECKPOINT_FILE: settings.checkpointFile ? `${settings.checkpointFile}.worker-${index}` : '',
    // The run's rate limits, shared out: the workers together keep to them.
    MAX_KEYS_PER_SECOND: shareOf(settings.rateLimits.keysPerSecond, settings.workers),
    MAX_BYTES_PER_SECOND: shareOf(settings.rateLimits.bytesPerSecond, settings.workers),
  };
  delete env.JOB_COMPLETION_INDEX;
  // The same script under the same loader (tsx), as this process runs it.
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const exited = new Promise<number>((resolve) => {
    child.on('error', (err) => {
      say(`[worker ${index}] could not start: ${err.message}`);
      resolve(EXIT.settingsOrConnection);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal === 'SIGINT' || signal === 'SIGTERM' ? EXIT.interrupted : EXIT.settingsOrConnection)));
  });
  const worker: Worker = { index, slots, child, summaryFile, exited };
  prefixLines(child.stdout, process.stdout, `[worker ${index}] `);
  prefixLines(child.stderr, process.stderr, `[worker ${index}] `);
  child.on('message', (report: WorkerReport) => (worker.latest = report));
  return worker;
}

/** A limit shared by `workers`: 0 stays none, and a share is never below 1 (0 would mean none). */
function shareOf(limit: number, workers: number): string {
  return String(limit === 0 ? 0 : Math.max(1, Math.floor(limit / workers)));
}

function prefixLines(from: NodeJS.ReadableStream | null, to: NodeJS.WriteStream, prefix: string): void {
  if (!from) return;
  createInterface({ input: from, crlfDelay: Infinity }).on('line', (line) => void to.write(`${prefix}${line}\n`));
}

/** A worker's exit code as one of the documented statuses: a signal's death (128 + n) is an interruption. */
function documented(code: number): number {
  if ((Object.values(EXIT) as number[]).includes(code)) return code;
  return code >= 128 ? EXIT.interrupted : EXIT.settingsOrConnection;
}

/** Live mode's figures of every worker: the largest lag, the queues added up. */
function liveAddedUp(workers: readonly Worker[]): LiveReading {
  const lives = workers.flatMap((w) => (w.latest?.live ? [w.latest.live] : []));
  return { lagSeconds: Math.max(0, ...lives.map((l) => l.lagSeconds)), queued: lives.reduce((sum, l) => sum + l.queued, 0) };
}

/** Every worker's last progress, added up; a wait shown is the first worker's that waits. */
function addedUp(workers: readonly Worker[]): ProgressSnapshot {
  const sum: ProgressSnapshot = { scanned: 0, total: 0, bytes: 0, ...noCounts() };
  for (const worker of workers) {
    const latest = worker.latest?.progress;
    if (!latest) continue;
    for (const field of ['scanned', 'total', 'bytes', 'restored', 'skipped', 'failed', 'vanished'] as const) sum[field] += latest[field];
    sum.waiting ??= latest.waiting;
  }
  return sum;
}

/** What a worker's SUMMARY_JSON_FILE holds that the run adds up. */
interface WorkerSummary {
  counts?: (Counts & { excluded?: number }) | null;
  bytes_moved?: number;
  verification?: Record<string, Record<string, unknown>> | null;
}

function readSummary(file: string): WorkerSummary | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as WorkerSummary;
  } catch {
    return undefined;
  }
}

/** The run's summary: the workers' statuses, their counts added up, and the same as JSON with SUMMARY_JSON_FILE. */
function report(settings: Settings, workers: readonly Worker[], codes: readonly number[], status: number, started: Date): void {
  const summaries = workers.map((w) => readSummary(w.summaryFile));
  const counts = summaries.reduce<Counts & { excluded: number }>((sum, s) => {
    if (s?.counts) for (const field of ['restored', 'skipped', 'failed', 'vanished', 'excluded'] as const) sum[field] += s.counts[field] ?? 0;
    return sum;
  }, { ...noCounts(), excluded: 0 });
  const verification = addUpVerification(summaries);
  const missing = workers.filter((_, i) => summaries[i] === undefined).map((w) => w.index);
  say(`All ${workers.length} workers ended: exit status ${codes.map((code, i) => `${code} (worker ${i})`).join(', ')}`);
  if (missing.length > 0) say(`Workers ${missing.join(', ')} left no summary (stopped before the end): their keys are not in the counts below`);
  if (summaries.some((s) => s?.counts)) {
    say(`Number of restored keys: ${counts.restored}`);
    say(`Number of skipped keys: ${counts.skipped}`);
    say(`Number of failed keys: ${counts.failed}`);
    say(`Number of vanished keys: ${counts.vanished}`);
    if (leavesKeysOut(settings)) say(`Number of excluded keys: ${counts.excluded}`);
  }
  for (const [name, tally] of Object.entries(verification)) say(`Verification (${name}), all workers: ${tallyLine(tally as unknown as Tally)}`);
  const seconds = (Date.now() - started.getTime()) / 1000;
  say(`Elapsed time: ${formatDuration(seconds)} (${workers.length} workers)`);
  if (!settings.summaryJsonFile) return;
  const doc = {
    mode: settings.dryRun ? 'dry-run' : settings.mode,
    exit_status: status,
    started_at: started.toISOString(),
    finished_at: new Date().toISOString(),
    elapsed_seconds: seconds,
    bytes_moved: summaries.reduce((sum, s) => sum + (s?.bytes_moved ?? 0), 0),
    counts: summaries.some((s) => s?.counts) ? counts : null,
    verification: Object.keys(verification).length > 0 ? verification : null,
    workers: workers.map((w, i) => ({ index: w.index, slots: w.slots, exit_status: codes[i], summary: summaries[i] ?? null })),
  };
  writeFileSync(settings.summaryJsonFile, `${JSON.stringify(doc, null, 2)}\n`);
}

/** Each verification tally (copy, compare, live) summed field by field over the workers. */
function addUpVerification(summaries: readonly (WorkerSummary | undefined)[]): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const summary of summaries) {
    for (const [name, tally] of Object.entries(summary?.verification ?? {})) out[name] = addNumbers(out[name] ?? {}, tally);
  }
  return out;
}

function addNumbers(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [field, value] of Object.entries(b)) {
    const mine = out[field];
    if (typeof value === 'number') out[field] = (typeof mine === 'number' ? mine : 0) + value;
    else if (value !== null && typeof value === 'object') out[field] = addNumbers((mine ?? {}) as Record<string, unknown>, value as Record<string, unknown>);
  }
  return out;
}
