// What a run does when a server goes away mid-copy: wait and reconnect both sides with backoff for up to
// RECONNECT_TIMEOUT, one reconnection at a time however many batches noticed the loss, then let them retry.
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from './connections.js';
import type { Side } from './side.js';

/** The run gave up on a lost server: RECONNECT_TIMEOUT passed, or is 0. */
export class ConnectionLost extends Error {}

/** What the progress line shows while the run waits for a server. */
export interface Waiting {
  reason: string;
  /** ms since the epoch. */
  since: number;
  /** 'waiting' for a server that answers but cannot serve yet (a cluster that is down); else 'reconnecting'. */
  doing?: 'reconnecting' | 'waiting';
}

const FIRST_PAUSE_MS = 100;
const LONGEST_PAUSE_MS = 2000;

export class Recovery {
  /** Times both sides were whole again after a loss. */
  reconnections = 0;
  waiting: Waiting | undefined;
  private ongoing: Promise<void> | undefined;
  private closed = false;
  /** When the first loss since the last good batch was seen: the timeout counts from there. */
  private troubleSince: number | undefined;

  constructor(
    private readonly sides: readonly Side[],
    private readonly timeoutMs: number,
    private readonly stopped: () => boolean,
  ) {}

  /** The run is over: a late loss (a read-ahead) reconnects nothing. */
  close(): void {
    this.closed = true;
  }

  /**
   * Shows on the progress line that keys wait for a server that answers but cannot serve them yet (a cluster
   * that is down), unless a reconnection is shown already; the returned call takes it away again.
   */
  showWaiting(reason: string, since: number): () => void {
    if (this.waiting) return () => undefined;
    const shown: Waiting = { reason, since, doing: 'waiting' };
    this.waiting = shown;
    return () => {
      if (this.waiting === shown) this.waiting = undefined;
    };
  }

  /** A batch got through to the target: a later loss starts a new timeout. */
  progressed(): void {
    this.troubleSince = undefined;
  }

  /**
   * Resolves once every side answers again after `err` (seen on `label`'s connection); throws ConnectionLost
   * when that takes longer than RECONNECT_TIMEOUT, counted from `lostSince` (when the work at hand was first
   * lost) or from the first loss since the last good batch, or when the run is being stopped.
   */
  recover(label: string, err: unknown, lostSince?: number): Promise<void> {
    const reason = `${label} (${describeError(err)})`;
    if (this.timeoutMs <= 0) return Promise.reject(new ConnectionLost(`lost the connection to ${reason}`));
    // The same work lost again and again (a server that answers PING but not us): it has had its time.
    if (lostSince !== undefined && Date.now() - lostSince >= this.timeoutMs) {
      return Promise.reject(new ConnectionLost(`lost the connection to ${reason}; still failing after ${Math.round((Date.now() - lostSince) / 1000)} s (RECONNECT_TIMEOUT)`));
    }
    if (this.stopped() || this.closed) return Promise.reject(new ConnectionLost(`lost the connection to ${reason}; the run is stopping`));
    this.ongoing ??= this.reconnectAll(reason).finally(() => (this.ongoing = undefined));
    return this.ongoing;
  }

  private async reconnectAll(reason: string): Promise<void> {
    const since = (this.troubleSince ??= Date.now());
    this.waiting = { reason, since };
    try {
      for (let attempt = 0; ; attempt++) {
        // Always a pause first: a server that keeps refusing (LOADING) is never asked in a tight loop.
        await sleep(Math.min(LONGEST_PAUSE_MS, FIRST_PAUSE_MS * 2 ** attempt));
        let lastError: unknown;
        let reconnected = false;
        for (const side of this.sides) {
          try {
            reconnected = (await side.reconnect()) || reconnected;
          } catch (err) {
            lastError = err;
          }
        }
        if (lastError === undefined) {
          if (reconnected) this.reconnections += 1;
          if (Date.now() - since < this.timeoutMs) return;
          throw new ConnectionLost(`lost the connection to ${reason}; no batch got through for ${Math.round((Date.now() - since) / 1000)} s (RECONNECT_TIMEOUT)`);
        }
        const seconds = Math.round((Date.now() - since) / 1000);
        if (this.stopped() || this.closed) throw new ConnectionLost(`lost the connection to ${reason}; the run was stopped while reconnecting`);
        if (Date.now() - since >= this.timeoutMs) {
          throw new ConnectionLost(`lost the connection to ${reason}; still unreachable after ${seconds} s (RECONNECT_TIMEOUT): ${describeError(lastError)}`);
        }
      }
    } finally {
      this.waiting = undefined;
    }
  }
}
