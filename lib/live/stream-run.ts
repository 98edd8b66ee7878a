// MIGRATION_MODE=live on a source read as its replica: the snapshot copied as any, then every master's stream
// applied (stream-apply.ts) until the cutover: Ctrl-C or SIGTERM (or LIVE_IDLE_TIMEOUT) takes each master's
// offset at that moment, applies the stream up to it exactly, and verifies the keys it changed.
import { Migration } from '../copy/migration.js';
import { ConnectionLost } from '../net/recovery.js';
import { asText } from '../net/reply.js';
import { readings } from '../report/metrics.js';
import { formatDuration, Progress } from '../report/progress.js';
import { formatBytes, summaryLines } from '../report/summary.js';
import { addCounts, noCounts, type MigrationResult } from '../records.js';
import { leavesKeysOut, type Endpoint, type Settings } from '../settings.js';
import { LinkLost, ReplicaLink, ReplicationRefused } from '../sources/replica-link.js';
import { CommandKeys } from './command-keys.js';
import { keySlot } from '../net/cluster.js';
import { snapshotRecords } from '../sources/replication.js';
import { SourceError, type StreamSource } from '../sources/source.js';
import { fingerprintOf } from '../copy/checkpoint.js';
import { StreamCheckpoint } from './stream-checkpoint.js';
import { LagStats } from './lag.js';
import { copySnapshot, emptyResult, refuseOccupiedTarget, verifyChanged, watchServers, type LiveContext, type LiveOutcome } from './replicate.js';
import { RecopyFeed, StreamApplier, StreamStop, StreamTally } from './stream-apply.js';

/** Keys the stream changed that are remembered for the verification; past this many, every key is verified. */
const CHANGED_KEYS_MAX = 200_000;

export async function replicateStream(ctx: LiveContext, stream: StreamSource): Promise<LiveOutcome> {
  const { settings, source: origin, target, say } = ctx;
  // A resumed run finds its own keys on the target, and copies no snapshot (a master that must start over does, below).
  if (!settings.overwrite && !stream.resuming) await refuseOccupiedTarget(ctx);
  const snapshot = await copySnapshot(ctx);
  if (stream.resuming) say(stream.resuming);
  else for (const line of summaryLines(snapshot, settings.errorLogFile, ctx.excluded(), leavesKeysOut(settings), settings.scanType)) say(`Snapshot: ${line}`);
  const lag = new LagStats();
  if (snapshot.interrupted || snapshot.fatal) {
    return { snapshot, live: emptyResult(), deleted: 0, events: 0, gaps: [], gapCount: 0, uncovered: false, repairs: 0, lag: lag.summary(), ended: 'stopped early', fatal: snapshot.fatal, seconds: 0 };
  }
  const links = await stream.links();
  const waiting = links.reduce((sum, link) => sum + link.behind, 0);
  say(`Live: applying the replication stream of ${links.length} master(s) (${formatBytes(waiting)} of it came during the copy); Ctrl-C or SIGTERM for the cutover`);

  const started = Date.now();
  const tally = new StreamTally();
  const feed = new RecopyFeed();
  const migration = new Migration({ source: origin, target, settings: { ...settings, overwrite: true }, stats: { bytesMoved: 0 }, recovery: ctx.recovery, mirrorDeletions: true }, ctx.log, say);
  const copying = migration.copyAll(feed.batches());
  feed.servedBy(copying);
  let ended: LiveOutcome['ended'] = 'signal';
  let fatal: string | undefined;
  /** Per master, the offset to apply up to before stopping; set at the cutover. */
  let cutover: number[] | undefined;
  let lastActive = Date.now();
  const stop = (why: LiveOutcome['ended'], reason?: string): void => {
    if (cutover) return;
    ended = why;
    fatal ??= reason;
    // Stopped early: at once. A cutover: up to where each master stands now.
    const now = links.map(() => (why === 'stopped early' ? 0 : Infinity));
    cutover = now;
    if (why !== 'stopped early') void offsetsNow(ctx, links).then((offsets) => offsets.forEach((offset, i) => now[i] === Infinity && (now[i] = offset)));
  };
  ctx.interruption.onRequest(() => stop('signal'));
  if (ctx.interruption.requested) stop('signal');
  const idle = settings.live.idleTimeoutMs;
  const watch = setInterval(() => {
    if (migration.stopped) stop('stopped early');
    else if (idle > 0 && Date.now() - lastActive >= idle && links.every((link) => link.behind === 0)) stop('idle');
  }, 200);
  // Both sides asked for a PING each second: a connection lost while the stream is quiet is reconnected (re-copies
  // and the verification read the source), and past RECONNECT_TIMEOUT the run stops.
  const heartbeat = watchServers(ctx, () => false, (reason) => stop('stopped early', reason));
  const progress = Progress.ofLine(settings.progress, () => streamLine(tally, lag, links, started));
  const before = readings.progress?.();
  readings.progress = () => ({ scanned: before?.scanned ?? 0, total: before?.total ?? 0, bytes: before?.bytes ?? 0, ...addCounts(snapshot.counts, { ...noCounts(), restored: tally.applied }) });
  readings.live = () => ({ lagSeconds: 0, queued: links.reduce((sum, link) => sum + link.behind, 0) });

  const keys = await CommandKeys.learn(origin.masters[0] ?? origin.nodeForSlot(0));
  const cuts: string[] = [];
  const resyncs: string[] = [];
  /**
   * A master that can only give a full resync: its selected keys deleted on the target (all of them, unless the
   * source is a cluster: then those in its slots), its new snapshot copied, and its stream followed from there.
   */
  const startOver = async (applier: StreamApplier, link: ReplicaLink, i: number): Promise<void> => {
    const master = origin.masters[i];
    await applier.flushTarget((key) => !origin.cluster || origin.nodeForSlot(keySlot(key)) === master);
    const copy = new Migration({ target, settings: { ...settings, overwrite: true }, stats: { bytesMoved: 0 }, recovery: ctx.recovery }, ctx.log, say);
    const copied = await copy.copyAll(snapshotRecords(link, settings, () => cutover?.[i] === 0));
    if (copied.fatal) throw new StreamStop(`the new snapshot of ${link.label} could not be copied: ${copied.fatal}`);
    tally.resnapshotted += copied.counts.restored;
    tally.failed += copied.counts.failed;
    say(`${link.label}: ${copied.counts.restored} keys copied from its new snapshot (${copied.counts.failed} failed); the stream continues from offset ${link.offset}`);
  };
  const appliers: StreamApplier[] = [];
  // A cluster master's slot: after a failover, the stream is continued on the master that serves it then.
  const slots = origin.mastersBySlot.map((m) => m.slot);
  const where = async (i: number): Promise<{ endpoint: Endpoint; label: string }> => {
    const slot = slots[i] ?? 0;
    if (origin.cluster) await origin.refreshSlots().catch(() => undefined);
    const node = origin.cluster ? origin.nodeForSlot(slot) : (origin.masters[i] ?? origin.nodeForSlot(0));
    return { endpoint: node.endpoint, label: node.label };
  };
  const applying = links.map(async (first, i) => {
    const applier = new StreamApplier(first, keys, {
      settings, origin, target, log: ctx.log, lag, tally, changedMax: CHANGED_KEYS_MAX,
      recopy: (batch) => feed.recopy(batch, settings.pipelineBatchSize),
      recover: (label, err) => ctx.recovery.recover(label, err),
      stopAt: () => cutover?.[i],
      active: () => (lastActive = Date.now()),
    }, stream.databases?.[i]);
    appliers.push(applier);
    // Resuming where the backlog passed the recorded offset: this master starts over before its stream.
    if (first.startsOver && !first.streaming) {
      try {
        say(`${first.startsOver}: starting over from a new snapshot; the target's selected keys from that master are deleted first, as a replica empties itself before it loads one`);
        await startOver(applier, first, i);
        resyncs.push(`${first.label} (resuming)`);
      } catch (err) {
        return stop('stopped early', stopReason(err));
      }
    }
    for (;;) {
      try {
        await applier.run();
        return;
      } catch (err) {
        const link = links[i] as ReplicaLink;
        if (!(err instanceof LinkLost) || settings.reconnectTimeoutMs <= 0 || cutover?.[i] === 0) return stop('stopped early', stopReason(err));
        say(`${err.message}: continuing from offset ${link.offset} by partial resync (for up to RECONNECT_TIMEOUT=${settings.reconnectTimeoutMs / 1000} s)`);
        try {
          const next = await resumed(link, () => where(i), settings, () => cutover?.[i] === 0);
          links[i] = next;
          const moved = next.label === link.label ? '' : ` on ${next.label} (its slots' master now: a failover)`;
          if (next.startsOver === undefined) {
            cuts.push(`${link.label} at offset ${link.offset}${moved}`);
            say(`${link.label}: the stream continues from offset ${link.offset}${moved} (partial resync)`);
          } else {
            say(`${next.startsOver}: starting over from a new snapshot; the target's selected keys from that master are deleted first, as a replica empties itself before it loads one`);
            await startOver(applier, next, i);
            resyncs.push(`${link.label} at offset ${link.offset}`);
          }
        } catch (lost) {
          return stop('stopped early', stopReason(lost));
        }
        link.close();
        applier.follow(links[i] as ReplicaLink);
      }
    }
  });
  const checkpoint = settings.checkpointFile ? new StreamCheckpoint(settings.checkpointFile, fingerprintOf(settings), () => appliers.flatMap((applier) => applier.position() ?? [])) : undefined;
  await Promise.all(applying);
  await checkpoint?.finish();
  // The links are this run's now (a cut one replaced by its continuation): closed once the stream is applied.
  for (const link of links) link.close();
  heartbeat.stop();
  clearInterval(watch);
  progress.stop();
  feed.close();
  const copied = await copying;
  const behind = links.reduce((sum, link, i) => sum + Math.max(0, Math.min(cutover?.[i] ?? 0, link.offset + link.behind) - link.offset), 0);
  const counts = { ...copied.counts, restored: copied.counts.restored + tally.applied, failed: copied.counts.failed + tally.failed };
  const live: MigrationResult = { ...copied, counts, fatal: fatal ?? copied.fatal };
  const outcome: LiveOutcome = {
    snapshot, live, deleted: migration.deleted, events: tally.commands, gaps: [], gapCount: 0, uncovered: false, repairs: 0, lag: lag.summary(),
    ended, fatal: live.fatal, seconds: (Date.now() - started) / 1000,
    stream: { cuts, resyncs, checkpoint: checkpoint && (checkpoint.problem ? `${settings.checkpointFile} could not be written (${checkpoint.problem}): a rerun cannot resume from it` : `${settings.checkpointFile} records each master's offset: a rerun with it continues the streams from there`), masters: links.length, applied: tally.applied, transactions: tally.transactions, skipped: tally.skipped, recopied: tally.recopiedTotal, reasons: tally.reasonsLine(), behind, firstRefusal: tally.firstRefusal },
  };
  if (!live.fatal) outcome.verification = await verifyChanged(ctx, [...tally.changed.values()], tally.changedOverflow || settings.verify);
  return outcome;
}

/** How long the cutover waits for a master to say its offset before applying what has come. */
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
      const link = await ReplicaLink.resume(endpoint, label, { onWaiting: () => undefined, spoolBytes: settings.spoolBytes }, cut.replicationId, cut.offset);
      link.startAcks();
      return link;
    } catch (err) {
      if (!(err instanceof LinkLost) && !(err instanceof ReplicationRefused && err.passing)) throw err;
      if (Date.now() >= deadline || stopped()) throw new LinkLost(`${cut.label}: the replication link was cut and not back within RECONNECT_TIMEOUT=${settings.reconnectTimeoutMs / 1000} s (${err.message})`);
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

/** Each link's master's offset now (INFO replication), where the cutover stops. */
async function offsetsNow(ctx: LiveContext, links: ReplicaLink[]): Promise<number[]> {
  return Promise.all(links.map(async (link, i) => {
    const node = ctx.source.masters[i];
    if (!node) return link.offset;
    try {
      const info = asText(await Promise.race([node.send(['INFO', 'replication']), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no reply')), OFFSET_WAIT_MS).unref())]));
      const offset = /^master_repl_offset:(\d+)/m.exec(info)?.[1];
      return offset === undefined ? link.offset : Math.max(Number(offset), link.offset);
    } catch {
      // The source away at the cutover: what has come is applied, and the rest is said as behind.
      return link.offset + link.behind;
    }
  }));
}

/** Why a master's stream stopped being applied, as the summary's "Stopped early" says it; anything else is a bug. */
function stopReason(err: unknown): string {
  if (err instanceof StreamStop || err instanceof ConnectionLost || err instanceof SourceError) return err.message;
  if (err instanceof LinkLost) return `${err.message}; the replication stream cannot be followed past it (run the migration again for a new snapshot)`;
  throw err;
}

function streamLine(tally: StreamTally, lag: LagStats, links: ReplicaLink[], since: number): string {
  const seconds = Math.max((Date.now() - since) / 1000, 0.001);
  const behind = links.reduce((sum, link) => sum + link.behind, 0);
  return `live: ${Math.round(lag.recentRate()).toLocaleString('en-US')} commands/s, ${tally.applied.toLocaleString('en-US')} applied in ${formatDuration(seconds)}, ` +
    `${formatBytes(behind)} behind, ${tally.recopiedTotal} re-copied, ${tally.failed} failed`;
}
