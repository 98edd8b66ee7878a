// What a run does when a server goes away mid-copy: wait and reconnect both sides with backoff for up to
// RECONNECT_TIMEOUT, one reconnection at a time however many batches noticed the loss, then let them retry.
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from './connections.js';
import type { Side } from './cluster.js';

/** The run gave up on a lost server: RECONNECT_TIMEOUT passed, or is 0. */
export class ConnectionLost extends Error {}

/** What the progress line shows while the run waits for a server. */
export interface Waiting {
  reason: string;
  since: number;
}

const FIRST_PAUSE_MS = 100;
const LONGEST_PAUSE_MS = 2000;

export class Recovery {
  /** Times both sides were whole again after a loss. */
  reconnections = 0;
  waiting: Waiting | undefined;
  private ongoing: Promise<void> | undefined;
  /** When the first loss since the last good batch was seen: the timeout counts from there. */
  private troubleSince: number | undefined;

  constructor(
    private readonly sides: readonly Side[],
    private readonly timeoutMs: number,
    private readonly stopped: () => boolean,
  ) {}

  /** A batch or a scan call got through: a later loss starts a new timeout. */
  progressed(): void {
    this.troubleSince = undefined;
  }

  /**
   * Resolves once every side answers again after `err` (seen on `label`'s connection); throws ConnectionLost
   * when that takes longer than RECONNECT_TIMEOUT or the run is being stopped.
   */
  recover(label: string, err: unknown): Promise<void> {
    const reason = `${label} (${describeError(err)})`;
    if (this.timeoutMs <= 0) return Promise.reject(new ConnectionLost(`lost the connection to ${reason}`));
    this.ongoing ??= this.reconnectAll(reason).finally(() => (this.ongoing = undefined));
    return this.ongoing;
  }

  private async reconnectAll(reason: string): Promise<void> {
    const since = (this.troubleSince ??= Date.now());
    this.waiting = { reason, since };
    try {
      for (let attempt = 0; ; attempt++) {
        let lastError: unknown;
        for (const side of this.sides) {
          try {
            await side.reconnect();
          } catch (err) {
            lastError = err;
          }
        }
        if (lastError === undefined) {
          this.reconnections += 1;
          return;
        }
        const seconds = Math.round((Date.now() - since) / 1000);
        if (this.stopped()) throw new ConnectionLost(`lost the connection to ${reason}; the run was stopped while reconnecting`);
        if (Date.now() - since >= this.timeoutMs) {
          throw new ConnectionLost(`lost the connection to ${reason}; still unreachable after ${seconds} s (RECONNECT_TIMEOUT): ${describeError(lastError)}`);
        }
        await sleep(Math.min(LONGEST_PAUSE_MS, FIRST_PAUSE_MS * 2 ** attempt));
      }
    } finally {
      this.waiting = undefined;
    }
  }
}
