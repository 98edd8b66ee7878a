// mergeStreams (lib/concurrency.ts) on its own: several streams read as one (a cluster's masters' snapshots),
// each item once, streams that are all ready taking turns, and an early stop that leaves no stream running.
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

describe('mergeStreams', () => {
  it('gives every item of every stream once', async () => {
    const all = await take(mergeStreams([ready('a', 5), ready('b', 3), ready('c', 0)]), 100);
    expect(all.sort()).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2']);
  });

  it('streams that are all ready take turns: none waits for another to end', async () => {
    const first = await take(mergeStreams([ready('a', 100), ready('b', 100), ready('c', 100)]), 6);
    expect(new Set(first.map((item) => item[0]))).toEqual(new Set(['a', 'b', 'c']));
  });

  it('a stream that fails fails the whole, once its turn comes', async () => {
    async function* failing(): AsyncGenerator<string> {
      yield 'x0';
      throw new Error('link lost');
    }
    await expect(take(mergeStreams([ready('a', 3), failing()]), 100)).rejects.toThrow('link lost');
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
});
