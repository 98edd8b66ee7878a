// RepeatWatch, the fixed-size filter that finds the keys a file holds more than once (the copy end to end:
// rdb-file.test.ts): never misses a repeat, and rarely suspects a key seen once, so the second read is rare.
import { describe, expect, it } from 'vitest';
import type { KeyOutcome, RecordBatch } from '../lib/records.js';
import { RepeatWatch, repeatsEnding } from '../lib/sources/repeated-keys.js';

const key = (prefix: string, n: number): Buffer => Buffer.from(`${prefix}:${n}`);

describe('RepeatWatch', () => {
  it('every key seen twice is a candidate, in its own database only, within a batch or across batches', () => {
    const watch = new RepeatWatch(true);
    const keys = Array.from({ length: 1000 }, (_, n) => key('a', n));
    watch.addAll(0, keys);
    watch.addAll(0, keys.filter((_, n) => n % 2 === 0));
    watch.addAll(1, keys.filter((_, n) => n % 2 === 1));
    watch.addAll(2, [key('b', 1), key('b', 1)]);
    expect(watch.isCandidate(2, key('b', 1))).toBe(true);
    for (let n = 0; n < 1000; n++) expect(watch.isCandidate(0, key('a', n)), `a:${n}`).toBe(n % 2 === 0);
    expect(watch.isCandidate(1, key('a', 1))).toBe(false);
  });

  it('300,000 distinct keys of one shape (and binary ones) make no candidate: the file is not read a second time', () => {
    const watch = new RepeatWatch(true);
    for (let first = 0; first < 200_000; first += 500) watch.addAll(0, Array.from({ length: 500 }, (_, i) => key('bench:string', first + i)));
    const binary = Array.from({ length: 100_000 }, (_, n) => {
      const bytes = Buffer.alloc(8);
      bytes.writeDoubleLE(n / 7);
      return bytes;
    });
    watch.addAll(3, binary);
    expect(watch.candidateTotal).toBe(0);
  });

  it('the empty key and keys that differ in one byte are told apart', () => {
    const watch = new RepeatWatch(true);
    const bytes = Array.from({ length: 256 }, (_, b) => b);
    watch.addAll(0, [Buffer.alloc(0), ...bytes.map((b) => Buffer.from([b])), ...bytes.map((b) => Buffer.from([0, b]))]);
    expect(watch.candidateTotal).toBe(0);
    watch.addAll(0, [Buffer.from('other'), Buffer.alloc(0)]);
    expect(watch.isCandidate(0, Buffer.from('other'))).toBe(false);
    expect(watch.isCandidate(0, Buffer.alloc(0))).toBe(true);
  });

  it('without overwriting, the keys the target answered as existing are the suspects, up to 10,000; the rest are said to be unchecked', () => {
    const watch = new RepeatWatch(false);
    const keys = Array.from({ length: 10_002 }, (_, n) => key('k', n));
    const batch: RecordBatch = { keys, stored: [] };
    watch.watch(5, batch);
    const outcomes = keys.map((k, n): KeyOutcome => ({ key: k, status: n === 0 ? 'restored' : 'skipped' }));
    batch.settled?.(outcomes);
    expect([watch.candidateTotal, watch.unchecked]).toEqual([10_000, 1]);
    expect([watch.isCandidate(5, key('k', 0)), watch.isCandidate(5, key('k', 1)), watch.isCandidate(0, key('k', 1))]).toEqual([false, true, false]);
    expect(repeatsEnding([], false, watch.unchecked)).toEqual({ lines: ['Not checked for keys the file holds more than once: 1 keys the target answered as existing, past the first 10,000 (those were counted)'], failed: 0 });
  });
});
