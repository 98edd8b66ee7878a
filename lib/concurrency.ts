// Bounded concurrency: a list's tasks with at most N at once, and a stream's batches with at most N in flight.

/**
 * Runs tasks with at most `limit` at once, keeping results in order. After a failure no new task starts, and
 * the failure is thrown only once the running ones have ended: nothing of this call is still writing when
 * its caller retries (two copies of one big key building at once would corrupt each other).
 */
export async function mapLimited<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const index = next++;
      try {
        results[index] = await task(items[index] as T);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
  return results;
}

/**
 * Tasks started one after another with at most `limit` running: `add` waits for room first, and `drain` waits
 * for every task still running. A task's failure is the task's own business (catch it inside).
 */
export class InFlight {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly limit: () => number) {}

  get size(): number {
    return this.running.size;
  }

  /** Waits until fewer than the limit are running. */
  async room(): Promise<void> {
    while (this.running.size >= this.limit()) await Promise.race(this.running);
  }

  /** Tracks a started task until it settles; `settled` runs after it, whatever happened. */
  add(task: Promise<void>, settled?: () => void): void {
    const tracked: Promise<void> = task.finally(() => {
      this.running.delete(tracked);
      settled?.();
    });
    this.running.add(tracked);
  }

  async drain(): Promise<void> {
    await Promise.all(this.running);
  }
}
