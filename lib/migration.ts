// The run loop: take the source's keys in batches, copy each batch with a fixed number in flight,
// count what happened to every key, pace as the Python script does, and stop on the error limit or a signal.
import { describeError } from './connections.js';
import type { CopyContext, KeyOutcome } from './batch.js';
import { copyBatchAuto, copyBatchByDump, RestoreRefused } from './copy-dump.js';
import { copyBatchByType } from './copy-type.js';
import type { ErrorLog } from './error-log.js';
import type { KeyJournal } from './verification.js';

export interface Counts {
  restored: number;
  skipped: number;
  failed: number;
  vanished: number;
}

export interface MigrationResult {
  counts: Counts;
  errorLimitReached: boolean;
  interrupted: boolean;
  /** Set when `auto` switched from dump to type; the target's reason. */
  fallbackReason?: string;
  /** Set when the run ended early because a server went away or answered nonsense. */
  fatal?: string;
}

/** Batches in flight at full speed: enough to keep both servers busy at once, small enough to bound memory. */
const BATCHES_IN_FLIGHT = 4;

export class Migration {
  readonly counts: Counts = { restored: 0, skipped: 0, failed: 0, vanished: 0 };
  private method: 'dump' | 'type' | 'auto';
  private fallbackReason: string | undefined;
  private stopping = false;
  private interrupted = false;
  private errorLimitReached = false;
  private fatal: string | undefined;
  private writesSincePause = 0;
  private skipsSincePause = 0;
  private pauseOwed = false;
  private wakeUp: (() => void) | undefined;

  constructor(
    private readonly ctx: CopyContext,
    private readonly log: ErrorLog,
    private readonly say: (line: string) => void,
    private readonly journal?: KeyJournal,
  ) {
    this.method = ctx.settings.copyMethod;
  }

  /** Ctrl-C: no new batches; the ones in flight finish and are counted. */
  interrupt(): void {
    this.interrupted = true;
    this.stopping = true;
    this.wakeUp?.();
  }

  /** The method in use now: `auto` until a fallback, then the method it fell back to. */
  get methodUsed(): string {
    return this.method === 'auto' ? 'dump' : this.method;
  }

  async run(batches: AsyncIterable<Buffer[]>): Promise<MigrationResult> {
    const { settings } = this.ctx;
    const inFlight = new Set<Promise<void>>();
    const limit = settings.sleepSeconds > 0 ? 1 : BATCHES_IN_FLIGHT;
    try {
      for await (const batch of batches) {
        while (inFlight.size >= limit) await Promise.race(inFlight);
        await this.pauseIfOwed();
        if (this.stopping) break;
        const task: Promise<void> = this.copyBatch(batch).then(
          (outcomes) => this.record(outcomes),
          (err: unknown) => this.abort(err),
        );
        const tracked = task.finally(() => inFlight.delete(tracked));
        inFlight.add(tracked);
      }
    } catch (err) {
      this.abort(err);
    }
    await Promise.all(inFlight);
    return {
      counts: this.counts,
      errorLimitReached: this.errorLimitReached,
      interrupted: this.interrupted,
      fallbackReason: this.fallbackReason,
      fatal: this.fatal,
    };
  }

  private async copyBatch(keys: Buffer[]): Promise<KeyOutcome[]> {
    if (this.method === 'type') return copyBatchByType(this.ctx, keys);
    if (this.method === 'auto') {
      return copyBatchAuto(this.ctx, keys, (reason) => {
        if (this.method !== 'auto') return;
        this.method = 'type';
        this.fallbackReason = reason;
        this.say(`The target refused RESTORE (${reason}); copying by type from now on`);
      });
    }
    try {
      return await copyBatchByDump(this.ctx, keys);
    } catch (err) {
      if (!(err instanceof RestoreRefused)) throw err;
      return [...err.settled, ...err.unsettled.map((key): KeyOutcome => ({ key, status: 'failed', reason: err.reason }))];
    }
  }

  private record(outcomes: KeyOutcome[]): void {
    this.journal?.add(outcomes);
    for (const outcome of outcomes) {
      this.counts[outcome.status] += 1;
      if (outcome.status === 'failed') this.log.keyFailed(outcome.key, outcome.reason);
      if (outcome.status === 'skipped') this.skipsSincePause += 1;
      if (outcome.status === 'restored' || outcome.status === 'failed') this.writesSincePause += 1;
    }
    this.checkErrorLimit();
    // The Python script pauses after each full pipeline and after every N skipped keys.
    if (this.writesSincePause >= this.ctx.settings.pipelineBatchSize) {
      this.writesSincePause = 0;
      this.pauseOwed = true;
    }
    if (this.skipsSincePause >= this.ctx.settings.existingKeysPauseEvery) {
      this.skipsSincePause = 0;
      this.pauseOwed = true;
    }
  }

  private checkErrorLimit(): void {
    const limit = this.ctx.settings.maxErroredKeys;
    if (limit > 0 && this.counts.failed >= limit && !this.errorLimitReached) {
      this.errorLimitReached = true;
      this.stopping = true;
      this.say(`Max errored keys limit of ${limit} reached`);
    }
  }

  private abort(err: unknown): void {
    const lost = [this.ctx.source, this.ctx.target].find((c) => c.lostBecause !== undefined);
    this.fatal ??= lost ? `lost the connection to ${lost.label} (${lost.lostBecause})` : describeError(err);
    this.stopping = true;
  }

  private async pauseIfOwed(): Promise<void> {
    const seconds = this.ctx.settings.sleepSeconds;
    if (!this.pauseOwed || seconds <= 0 || this.stopping) return;
    this.pauseOwed = false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, seconds * 1000);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wakeUp = undefined;
  }
}
