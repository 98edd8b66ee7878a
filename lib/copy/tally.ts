// What a copy keeps of its outcomes: counts by outcome and by way across versions, each failure and each key that
// lost something in the error log, the Python script's pacing rule, and the error limit.
import { displayKey, noCounts, noCrossings, type Counts, type CrossingCounts, type KeyOutcome } from '../records.js';
import { oneLine } from '../report/error-log.js';

export interface TallyRules {
  /** PIPELINE_BATCH_SIZE: a pause is owed after this many keys written (or failed). */
  pipelineBatchSize: number;
  /** MAX_PROCESSED_EXISTING_KEYS_LIMIT: a pause is owed after this many keys skipped. */
  existingKeysPauseEvery: number;
  /** MAX_ERRORED_KEYS_LIMIT: the copy stops at this many failed keys; 0 for no limit. */
  maxErroredKeys: number;
}

/** Where failures and keys that lost something are written. */
export interface OutcomeLog {
  keyFailed(key: Buffer, reason: string): void;
  keyDegraded(key: Buffer, without: string): void;
}

export class OutcomeTally {
  readonly counts: Counts = noCounts();
  readonly crossing: CrossingCounts = noCrossings();
  private reached = false;
  /** The latest failure, named on the console if the error limit stops the run. */
  private lastFailure: { key: Buffer; reason: string } | undefined;
  private writesSincePause = 0;
  private skipsSincePause = 0;
  private pauseOwed = false;

  constructor(private readonly rules: TallyRules, private readonly log: OutcomeLog, private readonly say: (line: string) => void) {}

  /** The error limit was reached (said once, with the last failure, when it was). */
  get errorLimitReached(): boolean {
    return this.reached;
  }

  record(outcomes: readonly KeyOutcome[]): void {
    for (const outcome of outcomes) {
      this.counts[outcome.status] += 1;
      if (outcome.status === 'failed') {
        this.log.keyFailed(outcome.key, outcome.reason);
        this.lastFailure = outcome;
      } else if (outcome.via) this.crossing[outcome.via] += 1;
      if (outcome.status !== 'failed' && outcome.dropped) {
        this.crossing.degraded += 1;
        this.log.keyDegraded(outcome.key, outcome.dropped);
      }
      if (outcome.status === 'skipped') this.skipsSincePause += 1;
      if (outcome.status === 'restored' || outcome.status === 'failed') this.writesSincePause += 1;
    }
    this.checkErrorLimit();
    // The Python script pauses after each full pipeline and after every N skipped keys.
    if (this.writesSincePause >= this.rules.pipelineBatchSize) {
      this.writesSincePause = 0;
      this.pauseOwed = true;
    }
    if (this.skipsSincePause >= this.rules.existingKeysPauseEvery) {
      this.skipsSincePause = 0;
      this.pauseOwed = true;
    }
  }

  /** Whether a pause is owed now; asking takes it. */
  takePause(): boolean {
    const owed = this.pauseOwed;
    this.pauseOwed = false;
    return owed;
  }

  private checkErrorLimit(): void {
    const limit = this.rules.maxErroredKeys;
    if (limit > 0 && this.counts.failed >= limit && !this.reached) {
      this.reached = true;
      this.say(`Max errored keys limit of ${limit} reached`);
      if (this.lastFailure) this.say(`The last failure, key |${displayKey(this.lastFailure.key)}|: ${oneLine(this.lastFailure.reason)}`);
    }
  }
}
