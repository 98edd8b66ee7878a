// The keys live mode still has to copy: one entry per key however often it changes, in arrival order,
// bounded (past the bound a gap is marked, never a change dropped unseen), and never two copies of a key at once.

interface Waiting {
  key: Buffer;
  /** When the oldest change not yet copied arrived (ms since the epoch): the lag counts from here. */
  since: number;
  /** False for a copy the run asked for itself (a stream's periodic copy): not a change, so no lag. */
  timed: boolean;
}

export class ChangeQueue {
  private readonly waiting = new Map<string, Waiting>();
  /** Keys being copied now; a change that arrives meanwhile waits until that copy is done. */
  private readonly copying = new Set<string>();
  private wake: (() => void) | undefined;
  /** Set when a change could not be queued: only a sweep can tell what it was. */
  overflowed = false;

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.waiting.size;
  }

  get inFlight(): number {
    return this.copying.size;
  }

  /** A key changed at `at`. False when the queue is full and the key not already in it: a gap. */
  add(key: Buffer, at = Date.now(), timed = true): boolean {
    const id = key.toString('latin1');
    const queued = this.waiting.get(id);
    if (queued) {
      // A change to a key queued for a periodic copy: from now on its wait is a change's lag.
      if (timed && !queued.timed) Object.assign(queued, { since: at, timed: true });
      return true;
    }
    if (this.waiting.size >= this.capacity) {
      this.overflowed = true;
      return false;
    }
    this.waiting.set(id, { key, since: at, timed });
    this.wake?.();
    return true;
  }

  /**
   * Up to `max` keys to copy, oldest first, each marked as being copied. A key already being copied stays
   * queued: its next copy starts only after this one is done, so no older read can land after a newer one.
   */
  take(max: number): Waiting[] {
    const taken: Waiting[] = [];
    for (const [id, entry] of this.waiting) {
      if (taken.length >= max) break;
      if (this.copying.has(id)) continue;
      this.waiting.delete(id);
      this.copying.add(id);
      taken.push(entry);
    }
    return taken;
  }

  /** Those keys' copies are done (or failed): changes that arrived meanwhile may go now. */
  release(keys: readonly Buffer[]): void {
    for (const key of keys) this.copying.delete(key.toString('latin1'));
    if (this.waiting.size > 0) this.wake?.();
  }

  /** How long the oldest waiting change has waited, in ms (0 when none). */
  oldestAge(now = Date.now()): number {
    for (const entry of this.waiting.values()) if (entry.timed) return now - entry.since;
    return 0;
  }

  has(key: Buffer): boolean {
    const id = key.toString('latin1');
    return this.waiting.has(id) || this.copying.has(id);
  }

  /** Resolves when a key is added or released, or after `ms`, whichever comes first. */
  async changed(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
    this.wake = undefined;
  }

  /** Wakes a waiting `changed()` at once (the run is stopping). */
  nudge(): void {
    this.wake?.();
  }
}
