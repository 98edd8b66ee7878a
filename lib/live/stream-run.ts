// MIGRATION_MODE=live on a source read as its replica: the snapshot copied as any, then every master's stream
// applied (stream-apply.ts) until the cutover: Ctrl-C or SIGTERM (or LIVE_IDLE_TIMEOUT) takes each master's
// offset at that moment, applies the stream up to it exactly, and verifies the keys it changed.
import { Migration } from '../copy/migration.js';
import { withValues } from '../sources/server-values.js';
import { ConnectionLost } from '../net/recovery.js';
import { ConnectionError, describeError, isConnectionLoss, isRefusal } from '../net/connections.js';
import { asText } from '../net/reply.js';
import { readings } from '../report/metrics.js';
import { formatDuration, Progress } from '../report/progress.js';
import { formatBytes, summaryLines } from '../report/summary.js';
import { addCounts, noCounts, type MigrationResult } from '../records.js';
import { leavesKeysOut, type Endpoint, type Settings } from '../settings.js';
import { LinkLost, ReplicaLink, ReplicationRefused } from '../sources/replica-link.js';
import { CommandKeys } from './command-keys.js';
import { snapshotRecords } from '../sources/replication.js';
import { SourceError, type StreamSource } from '../sources/source.js';
import { StreamError } from '../sources/stream-commands.js';
import { fingerprintOf } from '../copy/checkpoint.js';
import { StreamCheckpoint } from './stream-checkpoint.js';
import { LagStats } from './lag.js';
import { copySnapshot, emptyResult, refuseOccupiedTarget, verifyChanged, watchServers, type LiveContext, type LiveOutcome } from './replicate.js';
import { RecopyFeed, StreamApplier, StreamStop, StreamTally } from './stream-apply.js';

/** Keys the stream changed that are remembered for the verification; past this many, every key is verified. */
const CHANGED_KEYS_MAX = 200_000;

export async function replicateStream(ctx: LiveContext, stream: StreamSource): Promise<LiveOutcome> {
  const { settings, say } = ctx;
  // A resumed run finds its own keys on the target, and copies no snapshot (a master that must start over does, below).
  if (!settings.overwrite && !stream.resuming) await refuseOccupiedTarget(ctx);
  const snapshot = await copySnapshot(ctx);
  if (stream.resuming) say(stream.resuming);
  else for (const line of summaryLines(snapshot, settings.errorLogFile, ctx.excluded(), leavesKeysOut(settings), settings.scanType)) say(`Snapshot: ${line}`);
  // A snapshot not copied to its end (Ctrl-C, a fatal stop, the error limit) has no stream to follow.
  if (snapshot.interrupted || snapshot.fatal || snapshot.errorLimitReached) {
    return { snapshot, live: emptyResult(), deleted: 0, events: 0, gaps: [], gapCount: 0, uncovered: false, repairs: 0, lag: new LagStats().summary(), ended: 'stopped early', fatal: snapshot.fatal, seconds: 0 };
  }
  const links = await stream.links();
  say(`Live: applying the replication stream of ${links.length} master(s) (${formatBytes(links.reduce((sum, link) => sum + link.behind, 0))} of it came during the copy); Ctrl-C or SIGTERM for the cutover`);
  const run = new StreamRun(ctx, stream, links, snapshot);
  try {
    await run.applyAll();
  } catch (err) {
    // Before any master's stream was taken (the source's command table or offsets refused): one line, exit 1.
    run.fail(err);
  } finally {
    await run.close();
  }
  return run.outcome();
}

/** The live phase of a run read as a replica: every master's applier, the re-copies, the cutover, the checkpoint. */
class StreamRun {
  private readonly started = Date.now();
  private readonly tally = new StreamTally();
  private readonly lag = new LagStats();
  private readonly feed = new RecopyFeed();
  private readonly migration: Migration;
  private readonly copying: Promise<MigrationResult>;
  private readonly appliers: StreamApplier[] = [];
  private readonly cuts: string[] = [];
  private readonly resyncs: string[] = [];
  /** A cluster master's slot: after a failover, its stream is continued on the master that serves it then. */
  private readonly slots: number[];
  private ended: LiveOutcome['ended'] = 'signal';
  private fatal: string | undefined;
  /** Per master, the offset to apply up to before stopping; set at the cutover (0: stop at once). */
  private cutover: number[] | undefined;
  private lastActive = Date.now();
  private readonly timers: { stop(): void }[] = [];
  private checkpoint: StreamCheckpoint | undefined;

  constructor(private readonly ctx: LiveContext, private readonly stream: StreamSource, private readonly links: ReplicaLink[], private readonly snapshot: MigrationResult) {
    const { settings, source, target } = ctx;
    this.migration = new Migration({ source, target, settings: { ...settings, overwrite: true }, stats: { bytesMoved: 0 }, recovery: ctx.recovery, mirrorDeletions: true }, ctx.log, ctx.say);
    this.copying = this.migration.copyAll(withValues(this.feed.batches(), source, settings));
    this.feed.servedBy(this.copying);
    this.feed.stopped = () => this.migration.stopped;
    this.slots = source.mastersBySlot.map((m) => m.slot);
  }

  /**
   * Stops the live phase. A cutover (Ctrl-C, SIGTERM, idle) applies each stream up to where its master stands
   * now; a fatal stop ends at once, even after a cutover began, and its reason is kept.
   */
  private stop(why: LiveOutcome['ended'], reason?: string): void {
    if (why === 'stopped early') {
      this.ended = why;
      this.fatal ??= reason;
      if (this.cutover) this.cutover.fill(0);
      else this.cutover = this.links.map(() => 0);
      return;
    }
    if (this.cutover) return;
    this.ended = why;
    const now = this.links.map(() => Infinity);
    this.cutover = now;
    void offsetsNow(this.ctx, this.links).then((offsets) => offsets.forEach((offset, i) => now[i] === Infinity && (now[i] = offset ?? (this.links[i] as ReplicaLink).offset)));
  }

  /** A stop for a reason `stopReason` can say; anything else is a bug, and goes on up. */
  fail(err: unknown): void {
    this.stop('stopped early', stopReason(err));
  }

  async applyAll(): Promise<void> {
    const { ctx, links } = this;
    const { settings, source } = ctx;
    ctx.interruption.onRequest(() => this.stop('signal'));
    if (ctx.interruption.requested) this.stop('signal');
    this.watch();
    // A resumed run cannot know how far the killed one got: up to where each master stands now, keys are re-copied.
    const recopyUntil = this.stream.resuming ? await offsetsNow(ctx, links) : links.map(() => 0);
    const unknown = recopyUntil.findIndex((offset) => offset === undefined);
    if (unknown >= 0) throw new StreamStop(`${links[unknown]?.label ?? 'the source'} did not say its offset (INFO replication), which a resumed run needs to know what it may have applied already`);
    const keys = await CommandKeys.learn(() => source.masters[0] ?? source.nodeForSlot(0), (label, err, lostSince) => ctx.recovery.recover(label, err, lostSince));
    this.checkpoint = settings.checkpointFile ? new StreamCheckpoint(settings.checkpointFile, fingerprintOf(settings), () => this.appliers.flatMap((applier) => applier.position() ?? [])) : undefined;
    await Promise.all(links.map((link, i) => this.follow(link, i, keys, recopyUntil[i] ?? 0)));
  }

  /** Timers: idle and the copy's own stop, a heartbeat on both sides, the progress line, METRICS_PORT. */
  private watch(): void {
    const { settings } = this.ctx;
    const idle = settings.live.idleTimeoutMs;
    const timer = setInterval(() => {
      if (this.migration.stopped) this.stop('stopped early');
      else if (idle > 0 && Date.now() - this.lastActive >= idle && this.links.every((link) => link.behind === 0)) this.stop('idle');
    }, 200);
    this.timers.push({ stop: () => clearInterval(timer) });
    // Both sides asked for a PING each second: a connection lost while the stream is quiet is reconnected (re-copies
    // and the verification read the source), and past RECONNECT_TIMEOUT the run stops.
    // Once the cutover began, the run's recovery stands down (it is stopping): the verification reconnects for itself,
    // and a lost target still stops the appliers with its own reason.
    this.timers.push(watchServers(this.ctx, () => false, (reason) => !this.cutover && this.stop('stopped early', reason)));
    this.timers.push(Progress.ofLine(settings.progress, () => streamLine(this.tally, this.lag, this.links, this.started)));
    const before = readings.progress?.();
    readings.progress = () => ({ scanned: before?.scanned ?? 0, total: before?.total ?? 0, bytes: before?.bytes ?? 0, ...addCounts(this.snapshot.counts, { ...noCounts(), restored: this.tally.applied }) });
    readings.live = () => ({ lagSeconds: 0, queued: this.links.reduce((sum, link) => sum + link.behind, 0) });
  }

  /** One master's stream until the cutover: a cut continued by partial resync, or started over from a new snapshot. */
  private async follow(first: ReplicaLink, i: number, keys: CommandKeys, recopyUntil: number): Promise<void> {
    const { ctx } = this;
    const { settings, source } = ctx;
    const applier = new StreamApplier(first, keys, {
      settings, origin: source, target: ctx.target, log: ctx.log, lag: this.lag, tally: this.tally, changedMax: CHANGED_KEYS_MAX,
      recopy: (batch) => this.feed.recopy(batch, settings.pipelineBatchSize),
      recover: (label, err) => ctx.recovery.recover(label, err),
      stopAt: () => this.cutover?.[i],
      active: () => (this.lastActive = Date.now()),
      owns: (key) => this.owns(i, key),
      appliesFunctions: i === 0,
      recopyUntil,
    }, this.stream.databases?.[i]);
    this.appliers.push(applier);
    try {
      // Resuming where the backlog passed the recorded offset: this master starts over before its stream.
      if (first.startsOver && !first.streaming) {
        ctx.say(startingOver(first.startsOver));
        await this.startOver(applier, first, i);
        this.resyncs.push(`${first.label} (resuming)`);
      }
      for (;;) {
        try {
          await applier.run();
          return;
        } catch (err) {
          if (!(err instanceof LinkLost) || settings.reconnectTimeoutMs <= 0 || this.cutover?.[i] === 0) throw err;
          await this.continueAfter(err, applier, i);
        }
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** A cut link: continued by partial resync where the stream now is served, or started over from a new snapshot. */
  private async continueAfter(err: LinkLost, applier: StreamApplier, i: number): Promise<void> {
    const { ctx, links } = this;
    const link = links[i] as ReplicaLink;
    ctx.say(`${err.message}: continuing from offset ${link.offset} by partial resync (for up to RECONNECT_TIMEOUT=${ctx.settings.reconnectTimeoutMs / 1000} s)`);
    link.close();
    const next = await resumed(link, () => this.where(i), ctx.settings, () => this.cutover?.[i] === 0);
    links[i] = next;
    applier.follow(next);
    const moved = next.label === link.label ? '' : ` on ${next.label} (its slots' master now: a failover)`;
    if (next.startsOver === undefined) {
      this.cuts.push(`${link.label} at offset ${link.offset}${moved}`);
      ctx.say(`${link.label}: the stream continues from offset ${link.offset}${moved} (partial resync)`);
      return;
    }
    ctx.say(startingOver(next.startsOver));
    await this.startOver(applier, next, i);
    this.resyncs.push(`${link.label} at offset ${link.offset}`);
  }

  /**
   * Whether a source key is master `i`'s: on a cluster, served by the node that serves master `i`'s slots now (after a
   * failover, the promoted replica), not by the node that served them when the run began.
   */
  private owns(i: number, key: Buffer): boolean {
    const { source } = this.ctx;
    return !source.cluster || source.nodeFor(key) === source.nodeForSlot(this.slots[i] ?? 0);
  }

  /** The server that serves master `i`'s stream now: itself, or for a cluster the master of its slot. */
  private async where(i: number): Promise<{ endpoint: Endpoint; label: string }> {
    const { source } = this.ctx;
    if (source.cluster) await source.refreshSlots().catch(() => undefined);
    const node = source.cluster ? source.nodeForSlot(this.slots[i] ?? 0) : (source.masters[i] ?? source.nodeForSlot(0));
    return { endpoint: node.endpoint, label: node.label };
  }

  /**
   * A master that can only give a full resync: its selected keys deleted on the target (all of them, unless the
   * source is a cluster: then those in its slots), its new snapshot copied, and its stream followed from there.
   */
  private async startOver(applier: StreamApplier, link: ReplicaLink, i: number): Promise<void> {
    const { ctx, tally } = this;
    await applier.flushTarget();
    const copy = new Migration({ target: ctx.target, settings: { ...ctx.settings, overwrite: true }, stats: { bytesMoved: 0 }, recovery: ctx.recovery }, ctx.log, ctx.say);
    const copied = await copy.copyAll(snapshotRecords(link, ctx.settings, () => this.cutover?.[i] === 0));
    if (copied.fatal || copied.errorLimitReached || copied.interrupted) throw new StreamStop(`the new snapshot of ${link.label} could not be copied whole${copied.fatal ? `: ${copied.fatal}` : ''}`);
    tally.resnapshotted += copied.counts.restored;
    tally.failed += copied.counts.failed;
    ctx.say(`${link.label}: ${copied.counts.restored} keys copied from its new snapshot (${copied.counts.failed} failed); the stream continues from offset ${link.offset}`);
  }

  /** Timers stopped, the checkpoint's last write, the links closed (this run's now), the re-copies drained. */
  async close(): Promise<void> {
    for (const timer of this.timers) timer.stop();
    await this.checkpoint?.finish();
    for (const link of this.links) link.close();
    this.feed.close();
    await this.copying;
  }

  async outcome(): Promise<LiveOutcome> {
    const { tally, links, ctx } = this;
    const copied = await this.copying;
    const behind = links.reduce((sum, link, i) => sum + Math.max(0, Math.min(this.cutover?.[i] ?? 0, link.offset + link.behind) - link.offset), 0);
    const counts = { ...copied.counts, restored: copied.counts.restored + tally.applied, failed: copied.counts.failed + tally.failed };
    // A stop with no reason of its own is the re-copies' (the error limit, a lost server).
    const fatal = this.fatal ?? copied.fatal ?? (this.ended === 'stopped early' && !copied.errorLimitReached ? 'the copy behind the live phase stopped' : undefined);
    const live: MigrationResult = { ...copied, counts, fatal };
    const checkpoint = this.checkpoint && (this.checkpoint.problem
      ? `${ctx.settings.checkpointFile} could not be written (${this.checkpoint.problem}): a rerun cannot resume from it`
      : `${ctx.settings.checkpointFile} records each master's offset: a rerun with it continues the streams from there`);
    const outcome: LiveOutcome = {
      snapshot: this.snapshot, live, deleted: this.migration.deleted, events: tally.commands, gaps: [], gapCount: 0, uncovered: false, repairs: 0, lag: this.lag.summary(),
      ended: this.ended, fatal, seconds: (Date.now() - this.started) / 1000,
      stream: {
        cuts: this.cuts, resyncs: this.resyncs, checkpoint, masters: links.length, applied: tally.applied, transactions: tally.transactions, skipped: tally.skipped,
        recopied: tally.recopiedTotal, reasons: tally.reasonsLine(), behind, firstRefusal: tally.firstRefusal,
      },
    };
    if (!fatal && !copied.errorLimitReached) outcome.verification = await verifyChanged(ctx, [...tally.changed.values()], tally.changedOverflow || ctx.settings.verify);
    return outcome;
  }
}

/** The line saying a master starts over from a new snapshot, and why. */
const startingOver = (why: string): string => `${why}: starting over from a new snapshot; the target's selected keys from that master are deleted first, as a replica empties itself before it loads one`;

/** How long a master is asked for its offset (INFO replication), at the cutover or on a resume; no answer: the stream stops where it is applied by then. */
const OFFSET_WAIT_MS = 5000;
/** Between tries to continue a cut link. */
const RETRY_MS = 500;

/**
 * A new link continuing the cut one's stream from its offset, tried every half second within RECONNECT_TIMEOUT, on
 * the server `where` names each time (a cluster's master for the slots, which a failover changes: psync2 lets
 * the promoted replica continue the same stream).
 * A master that can only give a full resync (its backlog passed the offset) gives one: the link says so.
 */
async function resumed(cut: ReplicaLink, where: () => Promise<{ endpoint: Endpoint; label: string }>, settings: Settings, stopped: () => boolean): Promise<ReplicaLink> {
  const deadline = Date.now() + settings.reconnectTimeoutMs;
  for (;;) {
    try {
      const { endpoint, label } = await where();
      const link = await ReplicaLink.resume(endpoint, label, { onWaiting: () => undefined, spoolBytes: settings.spoolBytes, spoolUse: cut.spoolUse }, cut.replicationId, cut.offset);
      link.startAcks();
      return link;
    } catch (err) {
      if (!(err instanceof LinkLost) && !(err instanceof ReplicationRefused && err.passing)) throw err;
      if (Date.now() >= deadline || stopped()) throw new LinkLost(`${cut.label}: the replication link was cut and not back within RECONNECT_TIMEOUT=${settings.reconnectTimeoutMs / 1000} s (${err.message})`);
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

/** Each link's master's offset now (INFO replication, within a few seconds); undefined where it did not say. */
async function offsetsNow(ctx: LiveContext, links: ReplicaLink[]): Promise<(number | undefined)[]> {
  return Promise.all(links.map(async (link, i) => {
    const node = ctx.source.masters[i];
    if (!node) return undefined;
    try {
      const info = asText(await Promise.race([node.send(['INFO', 'replication']), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no reply')), OFFSET_WAIT_MS).unref())]));
      const offset = /^master_repl_offset:(\d+)/m.exec(info)?.[1];
      return offset === undefined ? undefined : Math.max(Number(offset), link.offset);
    } catch {
      return undefined;
    }
  }));
}

/** Why a master's stream stopped being applied, as the summary's "Stopped early" says it; anything else is a bug. */
function stopReason(err: unknown): string {
  if (err instanceof StreamStop || err instanceof ConnectionLost || err instanceof SourceError || err instanceof ReplicationRefused || err instanceof ConnectionError || err instanceof StreamError) return err.message;
  if (err instanceof LinkLost) return `${err.message}; the replication stream cannot be followed past it (with CHECKPOINT_FILE a rerun continues it; else run the migration again)`;
  if (isConnectionLoss(err) || isRefusal(err)) return describeError(err);
  throw err;
}

function streamLine(tally: StreamTally, lag: LagStats, links: ReplicaLink[], since: number): string {
  const seconds = Math.max((Date.now() - since) / 1000, 0.001);
  const behind = links.reduce((sum, link) => sum + link.behind, 0);
  return `live: ${Math.round(lag.recentRate()).toLocaleString('en-US')} commands/s, ${tally.applied.toLocaleString('en-US')} applied in ${formatDuration(seconds)}, ` +
    `${formatBytes(behind)} behind, ${tally.recopiedTotal} re-copied, ${tally.failed} failed`;
}
