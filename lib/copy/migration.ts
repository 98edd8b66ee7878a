// The run loop: take the source's keys in batches, copy each batch with a fixed number in flight,
// count what happened to every key, pace as the Python script does, and stop on the error limit or a signal.
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError, isConnectionLoss, isLossReason, isRefusal, type Connection } from '../net/connections.js';
import type { Checkpoint, Ticket } from './checkpoint.js';
import { ConnectionLost, type Recovery } from '../net/recovery.js';
import { isRestoreRefused, restoreStored } from './restore.js';
import { copyAuto, copyByDump, copyByType, RestoreRefused } from './methods.js';
import { compareInto, type OutcomeRecorder } from '../verify/comparison.js';
import type { KeyVerdict } from '../verify/compare-key.js';
import type { Settings } from '../settings.js';
import { concatAll, InFlight, mapLimited } from '../concurrency.js';
import { CHUNKED_KEYS_AT_ONCE, underTargetNames, type CopyStats, type WriteContext } from './context.js';
import { byNode } from '../net/routing.js';
import type { Side } from '../net/side.js';
import { isClusterDown, isRedirect } from '../net/cluster.js';
import { type Counts, type CrossingCounts, type FailedOutcome, type KeyNames, type KeyOutcome, type MigrationResult, type NodeReads, type NodeState, type RecordBatch, type ServerValues, type StoredValue } from '../records.js';
import type { ErrorLog } from '../report/error-log.js';
import { OutcomeTally } from './tally.js';
import { piecesOf, RateLimiter } from './rate-limit.js';

/** Both sides of a run: each a server, or a cluster whose keys are routed by slot. */
interface RunContext {
  /** The source server, whose batches carry its values' reads: retried keys are compared with it. None for a file or a snapshot. */
  source?: Side;
  target: Side;
  settings: Settings;
  stats: CopyStats;
  /** Reconnects after a lost connection; without it, a loss ends the run. */
  recovery?: Recovery;
  checkpoint?: Checkpoint;
  /** Live replication: a key gone from the source is deleted on the target as well. */
  mirrorDeletions?: boolean;
}

/**
 * A retried file batch finds its own earlier RESTOREs, whose replies were lost, as existing keys: a key whose
 * DUMP on the target holds the file's bytes counts as restored, once. (A target that re-encodes on RESTORE,
 * a ziplist into 7.x say, dumps other bytes: such a key is then counted as skipped, never copied twice.)
 */
async function settleRetriedStored(target: Connection, outcomes: KeyOutcome[], stored: readonly StoredValue[], names: KeyNames): Promise<KeyOutcome[]> {
  return Promise.all(
    outcomes.map(async (outcome, i): Promise<KeyOutcome> => {
      if (outcome.status !== 'skipped') return outcome;
      let dumped: Awaited<ReturnType<Connection['send']>>;
      try {
        dumped = await target.send(['DUMP', names.toTarget(outcome.key)]);
      } catch (err) {
        // A user that may not DUMP (or a slot that moved): the key stays counted as skipped.
        if (isRefusal(err)) return outcome;
        throw err;
      }
      const value = (stored[i] as StoredValue).value;
      const ours = Buffer.isBuffer(dumped) && dumped.length === value.length + 10 && dumped.subarray(0, value.length).equals(value);
      return ours ? { key: outcome.key, status: 'restored' } : outcome;
    }),
  );
}

/** A server batch's values; a batch with neither form is a bug of its source. */
function valuesOf(batch: Pick<RecordBatch, 'server'>): ServerValues {
  if (!batch.server) throw new Error('a batch without values');
  return batch.server;
}

/** A batch's keys that one source node holds and one target node takes, with the source node's reads. */
interface CopyPair {
  reads: NodeReads;
  target: Connection;
  keys: Buffer[];
}

/** Batches in flight at full speed: enough to keep both servers busy at once, small enough to bound memory. */
const BATCHES_IN_FLIGHT = 4;
/** Times a key whose cluster slot moved or is moving is located again and retried before it counts as failed. */
const REDIRECT_ATTEMPTS = 5;
/** The longest wait between two tries of keys a cluster refused while down. */
const CLUSTER_DOWN_RETRY_MS = 1000;
/** The pause before another try of a redirected key: doubling from 100 ms, at most CLUSTER_DOWN_RETRY_MS. */
const redirectPause = (attempt: number): Promise<void> => sleep(Math.min(50 * 2 ** attempt, CLUSTER_DOWN_RETRY_MS));

export class Migration {
  private readonly tally: OutcomeTally;
  /** Keys deleted on the target because they were gone from the source (live replication). */
  deleted = 0;
  private method: 'dump' | 'type' | 'auto';
  private fallbackReason: string | undefined;
  private stopping = false;
  private interrupted = false;
  private fatal: string | undefined;
  private wakeUp: (() => void) | undefined;
  /** Big keys' builds a lost connection left behind; removed after the next reconnection. */
  private readonly abandoned: Buffer[] = [];
  /** MAX_KEYS_PER_SECOND and MAX_BYTES_PER_SECOND. */
  private readonly limiter: RateLimiter;

  constructor(
    private readonly run: RunContext,
    log: ErrorLog,
    private readonly say: (line: string) => void,
    private readonly journal?: OutcomeRecorder,
  ) {
    this.method = run.settings.copyMethod;
    this.limiter = new RateLimiter(run.settings.rateLimits, () => run.stats.bytesMoved);
    this.tally = new OutcomeTally(run.settings, log, say);
  }

  /**
   * One batch, in pieces when a rate limit is set (each waiting its turn; one piece otherwise). Its checkpoint
   * ticket is confirmed, with every piece's outcomes, only once all of them are copied, and its `settled` runs
   * then: a piece that ends before an earlier one never moves the checkpoint past keys still in flight. False
   * once the run stops (the batch then is not confirmed).
   */
  private async copyInPieces(batch: RecordBatch, inFlight: InFlight, wholes: Set<Promise<void>>): Promise<boolean> {
    const { limiter } = this;
    const copies: Promise<KeyOutcome[] | undefined>[] = [];
    let ticket: Ticket | undefined;
    let whole = true;
    for (const piece of limiter.limited ? piecesOf(batch, () => limiter.pieceKeys) : [batch]) {
      await inFlight.room();
      await this.pauseIfOwed();
      await this.holdToRate(piece.keys.length);
      if (this.stopping) {
        whole = false;
        break;
      }
      if (batch.position && !ticket) ticket = this.run.checkpoint?.started(batch.position);
      const copying = piece.stored ? this.copyStored(piece.keys, piece.stored) : this.copyBatch(valuesOf(piece), piece.keys);
      const recorded = copying.then(
        (outcomes) => {
          this.record(outcomes);
          return outcomes;
        },
        (err: unknown) => void this.abort(err),
      );
      copies.push(recorded);
      inFlight.add(recorded.then(() => undefined));
    }
    let settledWith: KeyOutcome[] | undefined;
    const done = Promise.all(copies)
      .then((parts) => {
        const outcomes = parts.every((p): p is KeyOutcome[] => p !== undefined) ? concatAll(parts) : undefined;
        if (whole) settledWith = outcomes;
        if (ticket && whole && outcomes && this.fatal === undefined) this.run.checkpoint?.confirm(ticket, outcomes);
      })
      .finally(() => {
        wholes.delete(done);
        batch.settled?.(settledWith);
      });
    wholes.add(done);
    return whole;
  }

  /** Keys by outcome so far. */
  get counts(): Counts {
    return this.tally.counts;
  }

  get crossing(): CrossingCounts {
    return this.tally.crossing;
  }

  /** Ctrl-C: no new batches; the ones in flight finish and are counted. */
  interrupt(): void {
    this.interrupted = true;
    this.stopping = true;
    this.wakeUp?.();
  }

  /** No new batches will be copied: Ctrl-C, the error limit, or a failure of the whole run. */
  get stopped(): boolean {
    return this.stopping;
  }

  /** The method in use now: `auto` until a fallback, then the method it fell back to. */
  get methodUsed(): string {
    return this.method === 'auto' ? 'dump' : this.method;
  }

  async copyAll(batches: AsyncIterable<RecordBatch>): Promise<MigrationResult> {
    const { settings } = this.run;
    const inFlight = new InFlight(() => (settings.sleepSeconds > 0 ? 1 : BATCHES_IN_FLIGHT));
    const wholes = new Set<Promise<void>>();
    try {
      for await (const batch of batches) {
        if (!(await this.copyInPieces(batch, inFlight, wholes))) break;
      }
    } catch (err) {
      this.abort(err);
    }
    await inFlight.drain();
    await Promise.all(wholes);
    await this.dropAbandoned();
    return {
      counts: this.counts,
      crossing: this.crossing,
      errorLimitReached: this.tally.errorLimitReached,
      interrupted: this.interrupted,
      fallbackReason: this.fallbackReason,
      fatal: this.fatal,
    };
  }

  /**
   * A server's batch, split by the pair of nodes that hold its keys (one pair unless a side is a cluster), each
   * pair's values read on its source node. A pair whose connection is lost is copied again once both sides answer
   * (`lostSince` set); one that fails otherwise as a whole stops the run, and the outcomes of the pairs that
   * finished are still counted.
   */
  private async copyBatch(values: ServerValues, keys: readonly Buffer[], lostSince?: number): Promise<KeyOutcome[]> {
    const { source, target } = this.run;
    const outcomes = concatAll(await Promise.all(this.pairsOf(values, keys).map((pair) => this.orStop(this.copyPair(values, pair, lostSince)))));
    return source?.cluster || target.cluster ? this.followRedirects(outcomes, (o) => this.copyWhereItLivesOrRetry(values, o)) : outcomes;
  }

  /** A batch whose values came with it (an .rdb file): RESTOREd on the node each key belongs to. */
  private async copyStored(keys: readonly Buffer[], stored: readonly StoredValue[], lostSince?: number): Promise<KeyOutcome[]> {
    const { target } = this.run;
    if (!target.cluster) return this.orStop(this.restoreOn(target.nodeForSlot(0), keys, stored, lostSince));
    const { names } = this.run.settings;
    const parts = await Promise.all(byNode(target, keys, stored, (key) => names.toTarget(key)).map((group) => this.orStop(this.restoreOn(group.node, group.keys, group.values, lostSince))));
    const outcomes = concatAll(parts);
    // Built at the first redirect only: a key's name as text costs every key of every batch otherwise.
    let byKey: Map<string, StoredValue> | undefined;
    return this.followRedirects(outcomes, async ({ key }) => {
      byKey ??= new Map(keys.map((name, i) => [name.toString('latin1'), stored[i] as StoredValue]));
      const value = byKey.get(key.toString('latin1')) as StoredValue;
      try {
        return await this.restoreOn(await target.locate(names.toTarget(key)), [key], [value], lostSince);
      } catch (err) {
        // A node lost while the key was located: the same way as any lost batch.
        return this.retryAfterLoss(err, target.lost, lostSince, (since) => this.copyStored([key], [value], since));
      }
    });
  }

  private async restoreOn(node: Connection, keys: readonly Buffer[], stored: readonly StoredValue[], lostSince: number | undefined): Promise<KeyOutcome[]> {
    try {
      const outcomes = await this.restoreOrByType(node, keys, stored);
      this.dropIfDemoted(node, outcomes);
      this.run.recovery?.progressed();
      return lostSince !== undefined ? await settleRetriedStored(node, outcomes, stored, this.run.settings.names) : outcomes;
    } catch (err) {
      // Only this node was written to: a lost socket (its pipeline's, which may fail before node-redis notices) is its.
      const lost = node.lostBecause !== undefined || isConnectionLoss(err) ? node : undefined;
      return this.retryAfterLoss(err, lost, lostSince, (since) => this.copyStored(keys, stored, since));
    }
  }

  /**
   * Live replication: keys gone from the source (deleted, expired, evicted, renamed away) go from the target
   * too. With SCAN_TYPE, only a target key of that type is deleted (the run never copied others).
   */
  private async deleteVanished(target: Connection, outcomes: readonly KeyOutcome[]): Promise<void> {
    const gone = outcomes.filter((o) => o.status === 'vanished').map((o) => o.key);
    const type = this.run.settings.scanType.toLowerCase();
    const deleted = await Promise.all(gone.map((key) => this.deleteWhereItLives(target, key, type)));
    this.deleted += deleted.reduce((sum, n) => sum + n, 0);
  }

  /** DEL on `node`, or where a cluster target says the key lives now (its slot moved or is moving). */
  private async deleteWhereItLives(node: Connection, sourceKey: Buffer, type: string): Promise<number> {
    const key = this.run.settings.names.toTarget(sourceKey);
    for (let attempt = 1; ; attempt++) {
      try {
        if (type && String(await node.send(['TYPE', key])).toLowerCase() !== type) return 0;
        return Number(await node.send(['DEL', key]));
      } catch (err) {
        if (!this.run.target.cluster || !isRedirect(describeError(err)) || attempt >= REDIRECT_ATTEMPTS) throw err;
        if (attempt > 1) await redirectPause(attempt);
        node = await this.run.target.locate(key);
      }
    }
  }

  /** A primary demoted mid-failover answers READONLY per key: that is the server's state, not the keys'. */
  private dropIfDemoted(target: Connection, outcomes: readonly KeyOutcome[]): void {
    const demoted = outcomes.find((o): o is FailedOutcome => o.status === 'failed' && isLossReason(o.reason));
    if (!demoted) return;
    target.drop(demoted.reason);
    throw new Error(demoted.reason);
  }

  /** The keys by the source node that holds them (with its reads), then by the target node that takes them. */
  private pairsOf(values: ServerValues, keys: readonly Buffer[]): CopyPair[] {
    const { names } = this.run.settings;
    return values.onNodes(keys).flatMap(({ reads, keys: share }) => byNode(this.run.target, share, share, (key) => names.toTarget(key)).map((to) => ({ reads, target: to.node, keys: to.keys })));
  }

  /** `lostSince`: set when this is a retry, to when the keys' first attempt was lost. */
  private async copyPair(values: ServerValues, pair: CopyPair, lostSince: number | undefined): Promise<KeyOutcome[]> {
    try {
      const outcomes = await this.copyOn(pair.reads, pair.target, pair.keys);
      this.dropIfDemoted(pair.target, outcomes);
      if (this.run.mirrorDeletions) await this.deleteVanished(pair.target, outcomes);
      this.run.recovery?.progressed();
      return lostSince !== undefined ? await this.settleRetried(outcomes) : outcomes;
    } catch (err) {
      const lost = [pair.reads.node, pair.target].find((node) => node.lostBecause !== undefined);
      return this.retryAfterLoss(err, lost, lostSince, (since) => this.copyBatch(values, pair.keys, since));
    }
  }

  /**
   * A retried batch finds its own earlier writes, whose replies were lost, as existing keys: a key that now
   * equals the source's counts as restored, once. Only a key that differs is a real skip.
   */
  private async settleRetried(outcomes: KeyOutcome[]): Promise<KeyOutcome[]> {
    const skipped = outcomes.filter((o) => o.status === 'skipped').map((o) => o.key);
    const { source, target, settings } = this.run;
    if (skipped.length === 0 || !source) return outcomes;
    const { ttlToleranceMs, chunkSize, dumpMaxBytes, names } = settings;
    let verdicts: KeyVerdict[];
    try {
      verdicts = await compareInto(source, target, { ttlToleranceMs, chunkSize, dumpMaxBytes, names })(skipped);
    } catch (err) {
      // A user that may write but not read the target (or a slot that moved): the keys stay counted as skipped.
      if (isRefusal(err)) return outcomes;
      throw err;
    }
    const ours = new Set(verdicts.filter((v) => v.verdict === 'identical').map((v) => v.key));
    return outcomes.map((o) => (o.status === 'skipped' && ours.has(o.key) ? { key: o.key, status: 'restored' } : o));
  }

  /**
   * After a lost connection (`lost`, when a connection says so) or a loss reply: once both sides answer again,
   * the work is done `again`, knowing since when it has been lost (RECONNECT_TIMEOUT counts from there).
   * Anything else (a refusal, a bug, or the run giving up) is rethrown.
   */
  private async retryAfterLoss(err: unknown, lost: NodeState | undefined, lostSince: number | undefined, again: (since: number) => Promise<KeyOutcome[]>): Promise<KeyOutcome[]> {
    const { recovery } = this.run;
    if (!recovery || err instanceof ConnectionLost || !(isConnectionLoss(err) || lost)) throw err;
    const since = lostSince ?? Date.now();
    await recovery.recover(lost?.label ?? 'a server', lost?.lostBecause ?? err, since);
    await this.dropAbandoned();
    return again(since);
  }

  /**
   * Builds left by a lost connection or a refusal, removed now where their slot is served now: a killed master's
   * replica, promoted, holds what had reached it. One that fails again expires by itself.
   */
  private async dropAbandoned(): Promise<void> {
    const builds = this.abandoned.splice(0);
    const { target } = this.run;
    await Promise.all(builds.map((build) => target.locate(build).then((node) => node.send(['DEL', build])).catch(() => undefined)));
  }

  /** The work's outcomes; none, and the run stopped, when it failed as a whole. */
  private orStop(work: Promise<KeyOutcome[]>): Promise<KeyOutcome[]> {
    return work.catch((err: unknown) => {
      this.abort(err);
      return [];
    });
  }

  /**
   * Keys a cluster node refused because their slot moved or is moving (resharding): each is located again
   * (MOVED re-reads the slot map, ASK sends the write with ASKING) and copied there, a few times at most.
   * Keys refused because the cluster is down (a failover under way) are tried again for as long as a lost
   * connection would be, RECONNECT_TIMEOUT.
   */
  private async followRedirects(outcomes: KeyOutcome[], again: (outcome: KeyOutcome) => Promise<KeyOutcome[]>): Promise<KeyOutcome[]> {
    const started = Date.now();
    let unshow: (() => void) | undefined;
    try {
      for (let attempt = 0; this.fatal === undefined; attempt++) {
        const redirected = new Set(outcomes.filter((o) => o.status === 'failed' && isRedirect(o.reason)));
        if (redirected.size === 0) break;
        const down = [...redirected].filter((o): o is FailedOutcome => o.status === 'failed' && isClusterDown(o.reason));
        if (attempt >= REDIRECT_ATTEMPTS && !(down.length === redirected.size && Date.now() - started < this.run.settings.reconnectTimeoutMs)) break;
        if (down.length > 0 && attempt > 0) unshow ??= this.run.recovery?.showWaiting(`a cluster that is down (${down[0]?.reason})`, started);
        if (attempt > 0) await redirectPause(attempt);
        const retried = await mapLimited([...redirected], CHUNKED_KEYS_AT_ONCE, (outcome) => this.orStop(again(outcome)));
        outcomes = [...outcomes.filter((o) => !redirected.has(o)), ...retried.flat()];
      }
    } finally {
      unshow?.();
    }
    return outcomes;
  }

  /** A redirected key whose copy lost its connection goes the way of any lost batch: reconnect, then again. */
  private async copyWhereItLivesOrRetry(values: ServerValues, outcome: KeyOutcome): Promise<KeyOutcome[]> {
    try {
      return await this.copyWhereItLives(values, outcome);
    } catch (err) {
      const { source, target } = this.run;
      return this.retryAfterLoss(err, source?.lost ?? target.lost, undefined, (since) => this.copyBatch(values, [outcome.key], since));
    }
  }

  /** One redirected key, copied where it lives now on both sides (a big key's abandoned build expires by itself). */
  private async copyWhereItLives(values: ServerValues, { key }: KeyOutcome): Promise<KeyOutcome[]> {
    const [reads, target] = await Promise.all([values.locate(key), this.run.target.locate(this.run.settings.names.toTarget(key))]);
    const outcomes = await this.copyOn(reads, target, [key]);
    if (this.run.mirrorDeletions) await this.deleteVanished(target, outcomes);
    return outcomes;
  }

  /**
   * Values that came with their keys, RESTOREd; with COPY_METHOD=auto, a target that refuses RESTORE itself has
   * them decoded and written by type instead, from its first refusal on (as a server's keys are read by type).
   */
  private async restoreOrByType(node: Connection, keys: readonly Buffer[], stored: readonly StoredValue[]): Promise<KeyOutcome[]> {
    const ctx = this.writeContext(node);
    const { names } = this.run.settings;
    const outcomes = await underTargetNames(names, keys, (named) => restoreStored(ctx, named, stored, this.method === 'type'));
    // A batch sent before another one's refusal switched the run meets the refusal too: it goes by type as well.
    if (this.run.settings.copyMethod !== 'auto') return outcomes;
    const refused = outcomes.flatMap((o, i) => (o.status === 'failed' && isRestoreRefused(o.reason) ? [i] : []));
    const first = outcomes[refused[0] ?? -1];
    if (!first || first.status !== 'failed') return outcomes;
    this.fallBackToType(first.reason);
    const again = await underTargetNames(names, refused.map((i) => keys[i] as Buffer), (named) => restoreStored(ctx, named, refused.map((i) => stored[i] as StoredValue), true));
    refused.forEach((index, j) => (outcomes[index] = again[j] as KeyOutcome));
    return outcomes;
  }

  /** COPY_METHOD=auto after the target's first refusal of RESTORE: by type for the rest of the run, said once. */
  private fallBackToType(reason: string): void {
    if (this.method !== 'auto') return;
    this.method = 'type';
    this.fallbackReason = reason;
    this.say(`The target refused RESTORE (${reason}); copying by type from now on`);
  }

  /** What a writer needs to write on `target`. */
  private writeContext(target: Connection): WriteContext {
    const { settings, stats } = this.run;
    return { target, settings, stats, abandoned: this.abandoned, throttle: this.holdChunkToRate };
  }

  /** A source node's keys onto one target node, the way the run copies now, their values read as `values` gives them. */
  private async copyOn(values: NodeReads, target: Connection, keys: Buffer[]): Promise<KeyOutcome[]> {
    const ctx = this.writeContext(target);
    if (this.method === 'type') return copyByType(ctx, values, keys);
    if (this.method === 'auto') return copyAuto(ctx, values, keys, (reason) => this.fallBackToType(reason));
    try {
      return await copyByDump(ctx, values, keys);
    } catch (err) {
      if (!(err instanceof RestoreRefused)) throw err;
      return [...err.settled, ...err.unsettled.map((key): KeyOutcome => ({ key, status: 'failed', reason: err.reason }))];
    }
  }

  private record(outcomes: KeyOutcome[]): void {
    this.journal?.add(outcomes);
    this.tally.record(outcomes);
    if (this.tally.errorLimitReached) this.stopping = true;
  }

  private abort(err: unknown): void {
    const lost = this.run.source?.lost ?? this.run.target.lost;
    // ConnectionLost names the server and the wait already; any other loss is named here.
    if (err instanceof ConnectionLost || !lost) this.fatal ??= describeError(err);
    else this.fatal ??= `lost the connection to ${lost.label} (${lost.lostBecause})`;
    this.stopping = true;
  }

  private async pauseIfOwed(): Promise<void> {
    const seconds = this.run.settings.sleepSeconds;
    if (seconds <= 0 || this.stopping || !this.tally.takePause()) return;
    await this.nap(seconds * 1000);
  }

  /** Waits until the rate limits let `count` more keys start, then counts them as started. */
  private async holdToRate(count: number): Promise<void> {
    if (!this.limiter.limited) return;
    for (let ms = this.limiter.waitMs(); ms > 0 && !this.stopping; ms = this.limiter.waitMs()) await this.nap(ms);
    this.limiter.start(count);
  }

  /**
   * Between a big key's chunks: waits while MAX_BYTES_PER_SECOND is spent, even while the run drains after Ctrl-C
   * (the key is finished at the limit; a second Ctrl-C ends the run at once).
   */
  private readonly holdChunkToRate = async (): Promise<void> => {
    for (let ms = this.limiter.chunkWaitMs(); ms > 0; ms = this.limiter.chunkWaitMs()) await sleep(ms);
  };

  /** A pause that Ctrl-C or the end of the run cuts short. */
  private async nap(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wakeUp = undefined;
  }
}
