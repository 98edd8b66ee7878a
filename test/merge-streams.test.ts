// mergeStreams (lib/concurrency.ts) on its own: several streams read as one (a cluster's masters' scans or
// snapshots), each item once, streams that are all ready taking turns, a slow stream holding back none, each
// read at most one item ahead, and an early stop that leaves no stream running.
import { describe, expect, it } from 'vitest';
import { mergeStreams } from '../lib/concurrency.js';

/** A stream whose items are always ready at once, as a snapshot spooled ahead of a slow target is. */
async function* ready(name: string, count: number): AsyncGenerator<string> {
  for (let i = 0; i < count; i++) yield `${name}${i}`;
}

async function take<T>(stream: AsyncIterable<T>, count: number): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) {
    out.push(item);
    if (out.length === count) break;
  }
  return out;
}

/** An iterator as a stream. */
const iterable = <T>(iterator: AsyncIterator<T>): AsyncIterable<T> => ({ [Symbol.asyncIterator]: () => iterator });

/** An async iterator over `items` whose every next() waits for the test to release it, and counts the calls. */
function gatedSource<T>(items: T[]) {
  const waiting: (() => void)[] = [];
  let calls = 0;
  let index = 0;
  const iterator: AsyncIterator<T> = {
    next: () => {
      calls += 1;
      return new Promise<IteratorResult<T>>((resolve) => {
        waiting.push(() => (index < items.length ? resolve({ done: false, value: items[index++] as T }) : resolve({ done: true, value: undefined })));
      });
    },
  };
  return {
    iterator,
    /** Answers the oldest pending next(). */
    release: (): void => {
      const answer = waiting.shift();
      if (!answer) throw new Error('no next() is pending');
      answer();
    },
    get calls(): number {
      return calls;
    },
    get pending(): number {
      return waiting.length;
    },
  };
}

async function* generate<T>(items: T[], pauseEvery = 0): AsyncGenerator<T> {
  for (const [i, item] of items.entries()) {
    if (pauseEvery > 0 && i % pauseEvery === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    yield item;
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

describe('mergeStreams', () => {
  it('streams that are all ready take turns: none waits for another to end', async () => {
    const first = await take(mergeStreams([ready('a', 100), ready('b', 100), ready('c', 100)]), 6);
    expect(new Set(first.map((item) => item[0]))).toEqual(new Set(['a', 'b', 'c']));
  });

  it('stopping early ends every stream', async () => {
    const ended: string[] = [];
    async function* watched(name: string): AsyncGenerator<string> {
      try {
        for (let i = 0; ; i++) yield `${name}${i}`;
      } finally {
        ended.push(name);
      }
    }
    await take(mergeStreams([watched('a'), watched('b')]), 3);
    await new Promise((resolve) => setImmediate(resolve));
    expect(ended.sort()).toEqual(['a', 'b']);
  });

  it('yields every item of every source once, each source in its own order', async () => {
    const sources = [
      Array.from({ length: 50 }, (_, i) => `a${i}`),
      Array.from({ length: 7 }, (_, i) => `b${i}`),
      [],
      Array.from({ length: 30 }, (_, i) => `c${i}`),
    ];
    const merged: string[] = [];
    for await (const item of mergeStreams(sources.map((items, i) => generate(items, i + 1)))) merged.push(item);
    expect([...merged].sort()).toEqual(sources.flat().sort());
    for (const prefix of ['a', 'b', 'c']) expect(merged.filter((x) => x.startsWith(prefix))).toEqual(sources.flat().filter((x) => x.startsWith(prefix)));
  });

  it('interleaves the sources as their items arrive: a slow source does not hold back a fast one', async () => {
    // The slow source waits 20 turns of the event loop before each item; the fast one has its items at once.
    const slowOne = async function* (): AsyncGenerator<string> {
      for (const item of ['slow0', 'slow1']) {
        for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
        yield item;
      }
    };
    const merged: string[] = [];
    for await (const item of mergeStreams([slowOne(), generate(Array.from({ length: 6 }, (_, i) => `fast${i}`))])) merged.push(item);
    expect(merged.slice(0, 6)).toEqual(['fast0', 'fast1', 'fast2', 'fast3', 'fast4', 'fast5']);
    expect(merged.slice(6)).toEqual(['slow0', 'slow1']);
  });

  it('yields in the order the sources answer, switching between them', async () => {
    const a = gatedSource(['a0', 'a1', 'a2']);
    const b = gatedSource(['b0', 'b1']);
    const merged = mergeStreams([iterable(a.iterator), iterable(b.iterator)]);
    const order: string[] = [];
    const take = async (): Promise<void> => {
      const next = await merged.next();
      if (!next.done) order.push(next.value);
    };
    let taking = take();
    await flush();
    b.release();
    await taking;
    taking = take();
    await flush();
    a.release();
    await taking;
    taking = take();
    await flush();
    a.release();
    await taking;
    taking = take();
    await flush();
    b.release();
    await taking;
    expect(order).toEqual(['b0', 'a0', 'a1', 'b1']);
  });

  it('reads each source at most one item ahead of what was taken from it', async () => {
    const a = gatedSource(['a0', 'a1', 'a2']);
    const b = gatedSource(['b0', 'b1', 'b2']);
    const merged = mergeStreams([iterable(a.iterator), iterable(b.iterator)]);
    const first = merged.next();
    await flush();
    expect([a.calls, b.calls], 'one next() per source to start').toEqual([1, 1]);
    a.release();
    expect(await first).toEqual({ done: false, value: 'a0' });
    await flush();
    // Taking a0 asked a for one more; b's first answer is still awaited.
    expect([a.calls, b.calls]).toEqual([2, 1]);
    expect([a.pending, b.pending]).toEqual([1, 1]);
    const second = merged.next();
    b.release();
    expect(await second).toEqual({ done: false, value: 'b0' });
    await flush();
    expect([a.calls, b.calls]).toEqual([2, 2]);
  });

  it('ends once every source has ended, and at once with no source', async () => {
    const none: string[] = [];
    for await (const item of mergeStreams<string>([])) none.push(item);
    expect(none).toEqual([]);
    const empties: string[] = [];
    for await (const item of mergeStreams([generate<string>([]), generate<string>([])])) empties.push(item);
    expect(empties).toEqual([]);
  });

  it("passes a source's failure on to the reader", async () => {
    const failing = async function* (): AsyncGenerator<string> {
      yield 'x0';
      throw new Error('SCAN failed');
    };
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const item of mergeStreams([failing(), generate(['y0', 'y1', 'y2'], 1)])) seen.push(item);
      })(),
    ).rejects.toThrow('SCAN failed');
    expect(seen).toContain('x0');
  });
});
