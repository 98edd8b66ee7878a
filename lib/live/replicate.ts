// Live replication: subscribe, copy everything (live) or nothing (liveonly), then keep copying each changed
// key through the same pipeline until cutover; gaps start repair sweeps, and the changed keys are verified at the end.
import { isConnectionLoss } from '../net/connections.js';
import { ConnectionLost, type Recovery } from '../net/recovery.js';
import type { ErrorLog } from '../report/error-log.js';
import type { Interruption } from '../runtime.js';
import { leavesKeysOut, type Settings } from '../settings.js';
import { formatDuration, Progress } from '../report/progress.js';
import { summaryLines } from '../report/summary.js';
import { readings } from '../report/metrics.js';
import { compareInto, DiffSink, emptyTally, tallyLine, verifyAll, verifyBatches, type Tally, type VerificationSetup } from '../verify/comparison.js';
import type { KeyVerdict } from '../verify/compare-key.js';
import { ChangeFeed, LiveRefusal } from './events.js';
import { ChangeQueue } from './queue.js';
import { RepairSweep } from './sweep.js';
import { LagStats } from './lag.js';
import type { Side } from '../net/side.js';
import { leftOutTest } from '../sources/scan.js';
import { matchTest } from '../sources/glob.js';
import { asText } from '../net/reply.js';
import { scanPages } from '../net/scan-pages.js';
import { addCounts, displayKey, type MigrationResult, type RecordBatch, noCounts, noCrossings } from '../records.js';
import { Migration } from '../copy/migration.js';
import { withValues } from '../sources/server-values.js';

export { LiveRefusal } from './events.js';

export interface LiveContext {
  settings: Settings;
  source: Side;
  target: Side;
  /** The snapshot's batches (the usual scan), for MIGRATION_MODE=live. */
  snapshot: AsyncIterable<RecordBatch>;
  /** A fresh scan of the source, for a verification of every key. */
  rescan: () => AsyncIterable<RecordBatch>;
  recovery: Recovery;
  interruption: Interruption;
  log: ErrorLog;
  say: (line: string) => void;
  verification: VerificationSetup;
  /** Keys the snapshot's selection left out (KEY_EXCLUDE_PATTERN, KEY_PREFIX_STRIP), for its summary. */
  excluded: () => number;
  /** The snapshot's progress line, as a copy shows it. */
  startProgress: (counts: () => MigrationResult['counts'] & { bytes: number }) => Promise<Progress>;
}

export interface LiveOutcome {
  snapshot?: MigrationResult;
  live: MigrationResult;
  deleted: number;
  events: number;
  /** The first gaps' reasons, and how many there were. */
  gaps: string[];
  gapCount: number;
  /** A gap's repair sweep did not walk both sides to the end before the run stopped (Ctrl-C, a fatal stop). */
  uncovered: boolean;
  repairs: number;
  lag: { p50: number; p99: number; max: number; samples: number };
  verification?: Tally;
  /** Why the live phase ended. */
  ended: 'signal' | 'idle' | 'stopped early';
  fatal?: string;
  seconds: number;
  /** Read as a replica: the stream's figures (lib/live/stream-run.ts). */
  stream?: StreamFigures;
}

export interface StreamFigures {
  masters: number;
  /** Links cut and continued by partial resync: where. */
  cuts: string[];
  /** Links cut where the backlog no longer held the offset, started over from a new snapshot: where. */
  resyncs: string[];
  /** CHECKPOINT_FILE: what it records now, or why it could not be written. */
  checkpoint?: string;
  applied: number;
  transactions: number;
  skipped: number;
  recopied: number;
  /** Why keys were re-copied, with counts ("3 fed by keys outside the selection"). */
  reasons: string;
  /** Stream bytes the cutover's offsets were ahead of what was applied (0 unless stopped early). */
  behind: number;
  firstRefusal?: string;
}

/** Events after which a key may be a stream without a stream event of its own. */
const MAY_MAKE_A_STREAM = new Set(['rename_to', 'copy_to', 'move_to', 'restore']);

/** How often every known stream is copied again, for what its consumers read (which sends no event). */
const STREAM_RESYNC_MS = 5000;
/** How often both sides are asked whether they are there, so a server lost while no change comes is noticed. */
const HEARTBEAT_MS = 1000;

/**
 * The source's streams, found by SCAN TYPE stream when the live phase starts and from stream events after:
 * a consumer's XREADGROUP or XACK changes a group and sends no keyspace event, so these are copied again
 * every few seconds and once more at the cutover. Bounded; past the bound, the sweep settles group state.
 */
class StreamWatch {
  overflow = false;
  private readonly keys = new Map<string, Buffer>();
  /** Keys that may be streams (renamed into place, say): their TYPE is asked at the next resync. */
  private readonly maybe = new Map<string, Buffer>();

  constructor(private readonly max: number) {}

  add(key: Buffer): void {
    if (this.keys.size < this.max) this.keys.set(key.toString('latin1'), key);
    else if (!this.keys.has(key.toString('latin1'))) this.overflow = true;
  }

  consider(key: Buffer): void {
    if (this.maybe.size < this.max) this.maybe.set(key.toString('latin1'), key);
  }

  async find(source: Side, settings: Settings): Promise<void> {
    const leftOut = leftOutTest(settings);
    for (const master of source.masters) {
      for await (const keys of scanPages(master, { match: settings.matchPattern, count: 1000, type: 'stream' })) {
        for (const key of keys) if (!leftOut(key)) this.add(key);
        if (this.overflow) break;
      }
    }
  }

  all(): IterableIterator<Buffer> {
    return this.keys.values();
  }

  /** Every known stream queued to be copied again; the possible ones first asked their TYPE. */
  async requeue(source: Side, queue: ChangeQueue): Promise<void> {
    const maybe = [...this.maybe.values()];
    this.maybe.clear();
    const types = await Promise.all(maybe.map((key) => source.nodeFor(key).send(['TYPE', key])));
    maybe.forEach((key, i) => asText(types[i] ?? null) === 'stream' && this.add(key));
    for (const key of this.keys.values()) if (!queue.has(key)) queue.add(key, Date.now(), false);
  }
}

/** Changed keys remembered for the final verification; past this many, every key is verified instead. */
const CHANGED_KEYS_MAX = 200_000;
const GAP_LINES_MAX = 20;

export async function replicate(ctx: LiveContext): Promise<LiveOutcome> {
  const { settings, source, target, say } = ctx;
  if (!settings.overwrite) await refuseOccupiedTarget(ctx);
  const queue = new ChangeQueue(settings.live.queueSize);
  const gaps: string[] = [];
  let gapCount = 0;
  const compare = { ttlToleranceMs: settings.ttlToleranceMs, chunkSize: settings.chunkSize, dumpMaxBytes: settings.dumpMaxBytes, names: settings.names };
  const sweep = new RepairSweep(source, target, queue, { match: settings.matchPattern, leftOut: leftOutTest(settings), names: settings.names, rate: settings.live.sweepRate, compare }, ctx.log);
  const changed = new Map<string, Buffer>();
  const streams = new StreamWatch(settings.live.queueSize);
  let changedOverflow = false;
  let lastChange = Date.now();
  /** A gap (counted and logged), or only a new sweep (`counts` false: a subscription back after its gap). */
  const gap = (reason: string, counts = true): void => {
    sweep.requestFull();
    if (!counts) return;
    gapCount += 1;
    if (gaps.length < GAP_LINES_MAX) gaps.push(reason);
    ctx.log.write(`Gap in the source's events: ${reason}; a repair sweep covers it`, 'WARNING');
  };
  const feed = new ChangeFeed(source, { db: settings.source.db, match: settings.matchPattern, leftOut: leftOutTest(settings), probe: settings.live.probe, reconnectTimeoutMs: settings.reconnectTimeoutMs, say }, (key, event) => {
    lastChange = Date.now();
    sweep.sawEvent(key);
    if (event.startsWith('x')) streams.add(key);
    else if (MAY_MAKE_A_STREAM.has(event)) streams.consider(key);
    // A change dropped while a sweep is pending still needs a pass that begins after it; it is one gap only.
    if (!queue.add(key)) {
      if (sweep.pendingFull) sweep.requestFull();
      else gap(`the queue of changed keys is full (LIVE_QUEUE_SIZE=${settings.live.queueSize})`);
    }
    if (changed.size < CHANGED_KEYS_MAX) changed.set(key.toString('latin1'), key);
    else changedOverflow = true;
  }, gap);
  // Subscribed before the snapshot's first SCAN: a change during the copy is queued and applied after it.
  try {
    await feed.start();
  } catch (err) {
    await feed.stop();
    throw err;
  }
  say(`Live: subscribed to the source's keyspace events on ${source.masters.length} master(s)${settings.mode === 'live' ? '; copying the keys first' : ''}`);

  let snapshot: MigrationResult | undefined;
  const started = Date.now();
  try {
    if (settings.mode === 'live') {
      snapshot = await copySnapshot(ctx);
      for (const line of summaryLines(snapshot, settings.errorLogFile, ctx.excluded(), leavesKeysOut(settings), settings.scanType)) say(`Snapshot: ${line}`);
      if (snapshot.interrupted || snapshot.fatal) {
        return { snapshot, live: emptyResult(), deleted: 0, events: feed.events, gaps, gapCount, uncovered: false, repairs: 0, lag: new LagStats().summary(), ended: 'stopped early', fatal: snapshot.fatal, seconds: 0 };
      }
      say(`Live: applying changes (${queue.size} queued during the copy); Ctrl-C or SIGTERM for the cutover`);
    }

    // Streams' consumer groups change with no event (XREADGROUP, XACK): every stream is copied again now and then.
    await streams.find(source, settings);
    const resync = setInterval(() => void streams.requeue(source, queue).catch(() => undefined), STREAM_RESYNC_MS);
    // The live phase: the same pipeline, every write a replace, keys gone from the source deleted.
    const lag = new LagStats();
    const migration = new Migration({ source, target, settings: { ...settings, overwrite: true }, stats: { bytesMoved: 0 }, recovery: ctx.recovery, mirrorDeletions: true }, ctx.log, say);
    let ended: LiveOutcome['ended'] = 'signal';
    let lostFor: string | undefined;
    let stopping = ctx.interruption.requested;
    const stop = (why: LiveOutcome['ended']): void => {
      if (stopping) return;
      stopping = true;
      ended = why;
      queue.nudge();
    };
    ctx.interruption.onRequest(() => stop('signal'));
    const idle = settings.live.idleTimeoutMs;
    const watch = setInterval(() => {
      // The copy's own stop (the error limit) ends the wait for changes too, which may never come.
      if (feed.fatal || migration.stopped) stop('stopped early');
      else if (idle > 0 && Date.now() - lastChange >= idle && queue.size === 0 && queue.inFlight === 0 && !sweep.pendingFull) stop('idle');
    }, 200);
    const heartbeat = watchServers(ctx, () => queue.inFlight > 0, (reason) => {
      lostFor ??= reason;
      stop('stopped early');
    });
    const liveStart = Date.now();
    const progress = Progress.ofLine(settings.progress, () => liveLine(migration, queue, lag, gapCount, sweep.repairs, liveStart));
    watchLive(snapshot, migration, queue);
    const sweeping = sweep.run(() => stopping);
    const changes = liveBatches(queue, settings.pipelineBatchSize, () => stopping, lag, async () => {
      // The feed stops first, so the queue can only shrink; then what is queued is drained, every stream with it.
      await feed.stop();
      clearInterval(resync);
      await streams.requeue(source, queue);
    });
    const live = await migration.copyAll(withValues(changes, source, settings));
    // The copy can end by itself (a server lost past RECONNECT_TIMEOUT): the sweep and the feed stop with it.
    stop('stopped early');
    heartbeat.stop();
    clearInterval(watch);
    clearInterval(resync);
    progress.stop();
    await sweeping;
    await sweep.finish();
    // Keys the last sweep queued are copied too, before anyone looks.
    // The same Migration again: its counts go on adding up.
    const leftover = live.fatal ? live : await migration.copyAll(withValues(liveBatches(queue, settings.pipelineBatchSize, () => true, lag, async () => undefined), source, settings));
    const result = { ...leftover, fatal: live.fatal ?? leftover.fatal ?? feed.fatal ?? lostFor };
    const seconds = (Date.now() - started) / 1000;
    const outcome: LiveOutcome = {
      snapshot, live: result, deleted: migration.deleted, events: feed.events, gaps, gapCount, uncovered: sweep.pendingFull, repairs: sweep.repairs, lag: lag.summary(), ended, fatal: result.fatal, seconds,
    };
    for (const key of streams.all()) if (changed.size < CHANGED_KEYS_MAX) changed.set(key.toString('latin1'), key);
    if (!result.fatal) outcome.verification = await verifyChanged(ctx, [...changed.values()], changedOverflow || settings.verify);
    return outcome;
  } finally {
    await feed.stop();
  }
}

/** What the summary says of the live phase, its gaps and repairs, and the verification. */
export function liveSummaryLines(outcome: LiveOutcome, errorLogFile: string): string[] {
  if (outcome.stream) return streamSummaryLines(outcome, outcome.stream, errorLogFile);
  const { live, lag } = outcome;
  const lines = [
    `Live: ${live.counts.restored} changes applied, ${outcome.deleted} keys deleted, ${live.counts.failed} failed, from ${outcome.events} events over ${formatDuration(outcome.seconds)}; ` +
      `lag p50 ${lag.p50} ms, p99 ${lag.p99} ms, max ${lag.max} ms`,
  ];
  if (live.counts.failed > 0) lines.push(`Errors occurred during the execution. Check |${errorLogFile}| for details`);
  if (outcome.gapCount > 0) {
    const covered = outcome.uncovered
      ? 'the run stopped before a repair sweep had covered the last of them: keys changed in it may differ, check with MIGRATION_MODE=compare'
      : 'each was covered by a repair sweep';
    lines.push(`Gaps in the source's events: ${outcome.gapCount} (${outcome.gaps.slice(0, 3).join('; ')}); ${covered}`);
  }
  lines.push(`Repairs: ${outcome.repairs} keys differed with no event to say so${outcome.repairs > 0 ? ` (each in |${errorLogFile}|)` : ''}`);
  if (outcome.fatal) lines.push(`Stopped early: ${outcome.fatal}`);
  if (outcome.verification) lines.push(`Verification of changed keys: ${tallyLine(outcome.verification)}`);
  return lines;
}

/** What the summary says of a live phase on the replication stream. */
function streamSummaryLines(outcome: LiveOutcome, stream: StreamFigures, errorLogFile: string): string[] {
  const { live, lag } = outcome;
  const lines = [
    `Live: ${stream.applied} commands applied from the replication stream (${stream.transactions} transactions), ${stream.recopied} keys re-copied, ${outcome.deleted} keys deleted, ` +
      `${live.counts.failed} failed, over ${formatDuration(outcome.seconds)}; lag p50 ${lag.p50} ms, p99 ${lag.p99} ms, max ${lag.max} ms`,
  ];
  if (stream.cuts.length > 0) lines.push(`Replication links cut and continued by partial resync, nothing copied again: ${stream.cuts.length} (${stream.cuts.slice(0, 3).join('; ')})`);
  if (stream.resyncs.length > 0) lines.push(`Replication links cut past the source's backlog, started over from a new snapshot (the target's keys from those masters deleted first): ${stream.resyncs.length} (${stream.resyncs.slice(0, 3).join('; ')})`);
  if (stream.checkpoint) lines.push(`Checkpoint: ${stream.checkpoint}`);
  if (stream.recopied > 0) lines.push(`Re-copied from the source, as their commands could not be applied as they came: ${stream.reasons}${stream.firstRefusal ? ` (first refusal: ${stream.firstRefusal})` : ''}`);
  if (live.counts.failed > 0) lines.push(`Errors occurred during the execution. Check |${errorLogFile}| for details`);
  lines.push(outcome.fatal
    ? `Stopped early: ${outcome.fatal}${stream.behind > 0 ? ` (${stream.behind} bytes of the stream not applied)` : ''}`
    : `Cutover: the stream of ${stream.masters} master(s) applied up to the offset the source had (0 bytes behind)`);
  if (outcome.verification) lines.push(`Verification of changed keys: ${tallyLine(outcome.verification)}`);
  return lines;
}

/** The copy before the live phase: the usual migration; Ctrl-C during it stops the run (there is nothing to cut over to). */
export async function copySnapshot(ctx: LiveContext): Promise<MigrationResult> {
  const stats = { bytesMoved: 0 };
  const migration = new Migration({ source: ctx.source, target: ctx.target, settings: ctx.settings, stats, recovery: ctx.recovery }, ctx.log, ctx.say);
  const off = (): void => migration.interrupt();
  ctx.interruption.onRequest(off);
  if (ctx.interruption.requested) migration.interrupt();
  const progress = await ctx.startProgress(() => ({ ...migration.counts, bytes: stats.bytesMoved }));
  try {
    return await migration.copyAll(ctx.snapshot);
  } finally {
    progress.stop();
  }
}

/** Queued keys in batches, as long as the run goes on; once stopping, `closeFeed` runs and the queue is drained. */
async function* liveBatches(queue: ChangeQueue, size: number, stopping: () => boolean, lag: LagStats, closeFeed: () => Promise<void>): AsyncGenerator<RecordBatch> {
  let closed = false;
  for (;;) {
    if (stopping() && !closed) {
      await closeFeed();
      closed = true;
    }
    const taken = queue.take(size);
    if (taken.length === 0) {
      if (closed && queue.size === 0) return;
      await queue.changed(closed ? 20 : 200);
      continue;
    }
    const keys = taken.map((t) => t.key);
    yield { keys, settled: () => {
      lag.add(taken.filter((t) => t.timed).map((t) => t.since));
      queue.release(keys);
    } };
  }
}

/**
 * Live mode replaces and deletes target keys as the source does: on a target that holds none of the selected
 * keys, or with OVERWRITE_EXISTING_KEYS=true. Scanning stops at the first such key (an empty target costs nothing).
 */
export async function refuseOccupiedTarget(ctx: LiveContext): Promise<void> {
  const { settings } = ctx;
  const leftOut = leftOutTest(settings);
  const { names } = settings;
  // The pattern is the source's names': a renaming run looks at every target key under its source name.
  const matches = names.renames ? matchTest(settings.matchPattern) : undefined;
  const ours = (key: Buffer): boolean => {
    const source = names.toSource(key);
    return source !== undefined && !leftOut(source) && (!matches || matches(source));
  };
  for (const master of ctx.target.masters) {
    for await (const keys of scanPages(master, { match: names.renames ? '*' : settings.matchPattern, count: 1000 })) {
      const found = keys.find(ours);
      if (found) {
        throw new LiveRefusal(
          `MIGRATION_MODE=${settings.mode} replaces and deletes target keys as the source changes them, and ${master.label} already holds |${displayKey(found)}|, ` +
          'which SCAN_MATCH_PATTERN selects: empty the target first, or set OVERWRITE_EXISTING_KEYS=true to let live mode replace such keys',
        );
      }
    }
  }
}

/**
 * The cutover check: every key changed during the live phase, compared with the source (one gone from the
 * source must be gone from the target too); every key when asked (VERIFY=true) or when too many changed to remember.
 */
export async function verifyChanged(ctx: LiveContext, keys: Buffer[], everything: boolean): Promise<Tally> {
  // A connection cut since the last heartbeat (the cutover may come sooner) is opened again first.
  for (const side of [ctx.source, ctx.target]) if (side.lost) await side.reconnect();
  const setup = ctx.verification;
  if (everything) return verifyAll(setup, ctx.rescan());
  const tally = emptyTally();
  const sink = new DiffSink(setup.output);
  const compare = compareInto(ctx.source, ctx.target, setup.options);
  async function* batches(): AsyncGenerator<Buffer[]> {
    for (let i = 0; i < keys.length; i += setup.batchSize) yield keys.slice(i, i + setup.batchSize);
  }
  try {
    await verifyBatches(batches(), async (batch) => {
      const verdicts = await compare(batch);
      const gone = verdicts.filter((v) => v.verdict === 'vanished');
      const still = await Promise.all(gone.map((v) => {
        const onTarget = ctx.settings.names.toTarget(v.key);
        return ctx.target.nodeFor(onTarget).send(['EXISTS', onTarget]);
      }));
      const extra = new Set(gone.filter((_, j) => still[j] === 1).map((v) => v.key));
      const judged = verdicts.map((v): KeyVerdict => (extra.has(v.key) ? { key: v.key, verdict: 'different', category: 'value', detail: 'gone from the source, still on the target' } : v.verdict === 'vanished' ? { key: v.key, verdict: 'identical' } : v));
      sink.record(judged, tally, 'live');
    }, setup.shouldStop);
  } finally {
    sink.close();
  }
  return tally;
}

/** METRICS_PORT while live: the keys counted on from the snapshot's, the lag and the queue. */
function watchLive(snapshot: MigrationResult | undefined, migration: Migration, queue: ChangeQueue): void {
  const before = readings.progress?.();
  readings.progress = () => ({ scanned: before?.scanned ?? 0, total: before?.total ?? 0, bytes: before?.bytes ?? 0, ...addCounts(snapshot?.counts ?? noCounts(), migration.counts) });
  readings.live = () => ({ lagSeconds: queue.oldestAge() / 1000, queued: queue.size });
}

function liveLine(migration: Migration, queue: ChangeQueue, lag: LagStats, gaps: number, repairs: number, since: number): string {
  const seconds = Math.max((Date.now() - since) / 1000, 0.001);
  const rate = Math.round(lag.recentRate()).toLocaleString('en-US');
  return `live: ${rate} changes/s, ${migration.counts.restored.toLocaleString('en-US')} applied in ${formatDuration(seconds)}, ${queue.size} queued, ` +
    `lag ${(queue.oldestAge() / 1000).toFixed(1)} s, ${migration.deleted} deleted, ${migration.counts.failed} failed, ${gaps} gaps, ${repairs} repairs`;
}

export function emptyResult(): MigrationResult {
  return { counts: noCounts(), crossing: noCrossings(), errorLimitReached: false, interrupted: false };
}

/**
 * Asks every master of both sides for a PING while nothing is being copied: a server lost then is reconnected
 * as for a lost batch, and `lost` is told once RECONNECT_TIMEOUT is past (otherwise the run would wait for
 * changes with a dead target, or a source whose events no longer come).
 */
export function watchServers(ctx: LiveContext, busy: () => boolean, lost: (reason: string) => void): { stop(): void } {
  let checking = false;
  const check = async (): Promise<void> => {
    if (checking || busy()) return;
    checking = true;
    try {
      for (const master of [...ctx.source.masters, ...ctx.target.masters]) {
        try {
          await master.send(['PING']);
        } catch (err) {
          if (!isConnectionLoss(err) && master.lostBecause === undefined) throw err;
          await ctx.recovery.recover(master.label, err);
        }
      }
    } catch (err) {
      // A reply other than a loss (an ACL that refuses PING, say) is no reason to stop.
      if (err instanceof ConnectionLost) lost(err.message);
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), HEARTBEAT_MS);
  return { stop: () => clearInterval(timer) };
}
