// MAX_KEYS_PER_SECOND and MAX_BYTES_PER_SECOND: a steady rate, with batches cut into pieces small enough that
// no second carries more than its share, and no credit saved up for a burst after a pause.
import type { RecordBatch } from '../records.js';
import type { RateLimits } from '../settings.js';

/** Pieces per second of the limit: the most one second can carry beyond its share is about this fraction. */
const PIECES_PER_SECOND = 40;

/**
 * A rate as a schedule: each amount taken moves the time the next one may start by amount / rate. Time not used
 * is not saved beyond one piece's worth, so a pause is never followed by a burst.
 */
export class SteadyRate {
  private next = 0;

  constructor(private readonly perSecond: number, private readonly clock: () => number = Date.now) {}

  /** The most one piece should carry. */
  get piece(): number {
    return Math.max(1, Math.floor(this.perSecond / PIECES_PER_SECOND));
  }

  /** Milliseconds to wait before more may start. */
  get waitMs(): number {
    return Math.max(0, this.next - this.clock());
  }

  /** Counts `amount` as started now (or at the scheduled time, if that is later). */
  take(amount: number): void {
    const earliest = this.clock() - (this.piece / this.perSecond) * 1000;
    this.next = Math.max(this.next, earliest) + (amount / this.perSecond) * 1000;
  }
}

/**
 * Both limits of a run. Keys are counted as each piece starts; bytes (value bytes sent to the target) as they are
 * sent, so a piece waits for what the pieces before it sent, and a big key copied in chunks waits between chunks.
 */
export class RateLimiter {
  private readonly keys: SteadyRate | undefined;
  private readonly bytes: SteadyRate | undefined;
  private bytesCounted = 0;
  private keysStarted = 0;
  private lastPiece = 0;

  constructor(limits: RateLimits, private readonly bytesSent: () => number, clock?: () => number) {
    this.keys = limits.keysPerSecond > 0 ? new SteadyRate(limits.keysPerSecond, clock) : undefined;
    this.bytes = limits.bytesPerSecond > 0 ? new SteadyRate(limits.bytesPerSecond, clock) : undefined;
  }

  get limited(): boolean {
    return this.keys !== undefined || this.bytes !== undefined;
  }

  /**
   * Keys one piece may hold: a share of the keys limit, and of the bytes limit at the bytes per key seen so far.
   * While bytes are limited, pieces start at one key and at most double each time, as the bytes of the keys in
   * flight are not known yet.
   */
  get pieceKeys(): number {
    let most = this.keys?.piece ?? Number.MAX_SAFE_INTEGER;
    if (this.bytes) {
      const perKey = Math.max(1, this.bytesSent()) / Math.max(1, this.keysStarted);
      most = Math.min(most, 2 * this.lastPiece || 1, Math.max(1, Math.floor(this.bytes.piece / perKey)));
    }
    return most;
  }

  /** Milliseconds before the next piece may start, the bytes sent since the last look counted first. */
  waitMs(): number {
    this.countBytesSent();
    return Math.max(this.keys?.waitMs ?? 0, this.bytes?.waitMs ?? 0);
  }

  /** A piece of `count` keys starts now. */
  start(count: number): void {
    this.keysStarted += count;
    this.lastPiece = count;
    this.keys?.take(count);
  }

  /** Milliseconds a big key's next chunk waits for the bytes limit. */
  chunkWaitMs(): number {
    this.countBytesSent();
    return this.bytes?.waitMs ?? 0;
  }

  private countBytesSent(): void {
    if (!this.bytes) return;
    const sent = this.bytesSent();
    if (sent > this.bytesCounted) this.bytes.take(sent - this.bytesCounted);
    this.bytesCounted = sent;
  }
}

/** A batch's keys (and their values, if it has them) in pieces of at most `most()` keys, asked before each piece. */
export function* piecesOf(batch: RecordBatch, most: () => number): Generator<Pick<RecordBatch, 'keys' | 'stored' | 'server'>> {
  let start = 0;
  do {
    const end = Math.min(batch.keys.length, start + Math.max(1, most()));
    const keys = batch.keys.slice(start, end);
    yield batch.stored ? { keys, stored: batch.stored.slice(start, end) } : { keys, server: batch.server };
    start = end;
  } while (start < batch.keys.length);
}
