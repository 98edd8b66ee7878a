// Bounded concurrency: a list's tasks with at most N at once, a stream's batches with at most N in flight, and
// several streams read at once as one; and the parts such work returns, joined in order.

/**
 * The parts joined in order into a new array, as `parts.flat()` does at a fraction of its cost: V8's flat spent
 * ~75 ns an element (measured), a copy loop a few; on the copy path every key's outcome passes through here.
 */
export function concatAll<T>(parts: readonly (readonly T[])[]): T[] {
  if (parts.length === 1) return (parts[0] as readonly T[]).slice();
  const out: T[] = [];
  for (const part of parts) for (const item of part) out.push(item);
  return out;
}

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

/**
 * Several streams as one, each item as it comes (several masters' scans or snapshots): every stream is read at
 * once, each at most one item ahead of the consumer, and streams that are all ready take turns.
 */
export async function* mergeStreams<T>(streams: AsyncIterable<T>[]): AsyncGenerator<T> {
  const iterators = streams.map((s) => s[Symbol.asyncIterator]());
  const pending = new Map<number, Promise<{ index: number; next: IteratorResult<T> }>>();
  const arm = (index: number): void => {
    const next = (iterators[index] as AsyncIterator<T>).next().then((result) => ({ index, next: result }));
    next.catch(() => undefined); // a stream that fails while another is awaited is seen at the next race
    pending.set(index, next);
  };
  iterators.forEach((_, index) => arm(index));
  try {
    while (pending.size > 0) {
      const { index, next } = await Promise.race(pending.values());
      if (next.done) {
        pending.delete(index);
        continue;
      }
      // Re-armed at the end of the map: the next race prefers the others, so no stream waits on a busy one.
      pending.delete(index);
      arm(index);
      yield next.value;
    }
  } finally {
    // Not awaited: a stream may be waiting on its input (a replication link, which the source's close() ends).
    for (const iterator of iterators) void iterator.return?.(undefined)?.catch(() => undefined);
  }
}
