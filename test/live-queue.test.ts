// Live mode's bookkeeping on its own (lib/live/queue.ts, lib/live/lag.ts): the queue of keys to copy (one
// entry per key, arrival order, bounded, never two copies of a key at once) and the lag histogram.
import { describe, expect, it } from 'vitest';
import { ChangeQueue } from '../lib/live/queue.js';
import { LagStats } from '../lib/live/lag.js';

const k = (name: string): Buffer => Buffer.from(name, 'latin1');
const names = (taken: { key: Buffer }[]): string[] => taken.map((t) => t.key.toString('latin1'));

describe('ChangeQueue', () => {
  it('holds one entry per key however often it changes, dated by its oldest change not yet copied', () => {
    const queue = new ChangeQueue(10);
    queue.add(k('a'), 100);
    queue.add(k('b'), 150);
    queue.add(k('a'), 200);
    queue.add(k('a'), 300);
    expect(queue.size).toBe(2);
    const taken = queue.take(10);
    expect(names(taken)).toEqual(['a', 'b']);
    expect(taken.map((t) => t.since)).toEqual([100, 150]);
  });

  it('hands out keys oldest first, at most `max` at a time', () => {
    const queue = new ChangeQueue(10);
    for (const [i, name] of ['k1', 'k2', 'k3', 'k4', 'k5'].entries()) queue.add(k(name), i);
    expect(names(queue.take(2))).toEqual(['k1', 'k2']);
    expect(names(queue.take(2))).toEqual(['k3', 'k4']);
    expect(names(queue.take(2))).toEqual(['k5']);
    expect(queue.take(2)).toEqual([]);
    expect(queue.size).toBe(0);
    expect(queue.inFlight).toBe(5);
  });

  it('keeps a change to a key being copied waiting until that copy is released, then hands it out', () => {
    const queue = new ChangeQueue(10);
    queue.add(k('a'), 1);
    queue.add(k('b'), 2);
    expect(names(queue.take(10))).toEqual(['a', 'b']);
    queue.add(k('a'), 3);
    queue.add(k('c'), 4);
    expect(names(queue.take(10)), 'a is still being copied').toEqual(['c']);
    expect(queue.size).toBe(1);
    queue.release([k('a'), k('b')]);
    const again = queue.take(10);
    expect(names(again)).toEqual(['a']);
    expect(again[0]?.since).toBe(3);
  });

  it('tells whether a key is waiting or being copied', () => {
    const queue = new ChangeQueue(10);
    expect(queue.has(k('a'))).toBe(false);
    queue.add(k('a'));
    expect(queue.has(k('a'))).toBe(true);
    queue.take(1);
    expect(queue.has(k('a'))).toBe(true);
    queue.release([k('a')]);
    expect(queue.has(k('a'))).toBe(false);
  });

  it('tells keys apart byte for byte, binary ones included', () => {
    const queue = new ChangeQueue(10);
    queue.add(Buffer.from([0xff, 0x00]));
    queue.add(Buffer.from([0xff, 0x01]));
    queue.add(Buffer.from([0xc3, 0xbf, 0x00]));
    expect(queue.size).toBe(3);
    expect(queue.has(Buffer.from([0xff, 0x00]))).toBe(true);
    expect(queue.has(Buffer.from([0xff]))).toBe(false);
  });

  it('when full, refuses a new key and marks the gap, but still takes a change to a key it holds', () => {
    const queue = new ChangeQueue(2);
    expect(queue.add(k('a'), 1)).toBe(true);
    expect(queue.add(k('b'), 2)).toBe(true);
    expect(queue.overflowed).toBe(false);
    expect(queue.add(k('a'), 3), 'a is queued already').toBe(true);
    expect(queue.overflowed).toBe(false);
    expect(queue.add(k('c'), 4)).toBe(false);
    expect(queue.overflowed).toBe(true);
    expect(queue.has(k('c'))).toBe(false);
    queue.take(1);
    expect(queue.add(k('c'), 5), 'keys being copied take no room').toBe(true);
  });

  it('counts lag only from changes: a copy the run asked for itself waits without lag until the key changes', () => {
    const queue = new ChangeQueue(10);
    queue.add(k('periodic'), 1_000, false);
    expect(queue.oldestAge(5_000)).toBe(0);
    queue.add(k('changed'), 2_000);
    expect(queue.oldestAge(5_000)).toBe(3_000);
    queue.add(k('periodic'), 4_000, true);
    const taken = queue.take(10);
    expect(taken.map((t) => [t.key.toString(), t.since, t.timed])).toEqual([
      ['periodic', 4_000, true],
      ['changed', 2_000, true],
    ]);
  });

  it('keeps the oldest change of a key when a periodic copy of it is asked for later', () => {
    const queue = new ChangeQueue(10);
    queue.add(k('a'), 1_000);
    queue.add(k('a'), 3_000, false);
    expect(queue.oldestAge(5_000)).toBe(4_000);
    expect(queue.take(1)[0]).toMatchObject({ since: 1_000, timed: true });
  });

  it('has an oldest age of 0 when empty', () => {
    expect(new ChangeQueue(10).oldestAge(123)).toBe(0);
  });

  it('wakes a waiting changed() when a key is added, or released with keys waiting', async () => {
    const queue = new ChangeQueue(10);
    let started = performance.now();
    const added = queue.changed(10_000);
    queue.add(k('a'));
    await added;
    expect(performance.now() - started).toBeLessThan(1_000);

    queue.take(1);
    queue.add(k('a'));
    started = performance.now();
    const released = queue.changed(10_000);
    queue.release([k('a')]);
    await released;
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('lets changed() time out when nothing happens, and nudge() end it at once', async () => {
    const queue = new ChangeQueue(10);
    let started = performance.now();
    await queue.changed(20);
    expect(performance.now() - started).toBeGreaterThanOrEqual(15);
    started = performance.now();
    const waiting = queue.changed(10_000);
    queue.nudge();
    await waiting;
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe('LagStats', () => {
  const NOW = 1_700_000_000_000;

  it('is all zeros before any sample', () => {
    const lag = new LagStats();
    expect(lag.summary()).toEqual({ p50: 0, p99: 0, max: 0, samples: 0 });
    expect(lag.recentRate(NOW)).toBe(0);
  });

  it('gives the lag under which half and 99% of the changes were copied, and the largest', () => {
    const lag = new LagStats();
    lag.add(Array.from({ length: 100 }, (_, i) => NOW - (i + 1)), NOW);
    expect(lag.summary()).toEqual({ p50: 50, p99: 99, max: 100, samples: 100 });
    expect(lag.percentile(1)).toBe(100);
    expect(lag.percentile(0.01)).toBe(1);
  });

  it('counts every change of a batch, added over several calls', () => {
    const lag = new LagStats();
    lag.add([NOW - 10, NOW - 10, NOW - 10], NOW);
    lag.add([NOW - 2_000], NOW);
    expect(lag.summary()).toEqual({ p50: 10, p99: 2_000, max: 2_000, samples: 4 });
  });

  it('counts a change dated after its copy (clocks apart) as no lag', () => {
    const lag = new LagStats();
    lag.add([NOW + 500], NOW);
    expect(lag.summary()).toEqual({ p50: 0, p99: 0, max: 0, samples: 1 });
  });

  it('keeps the largest lag exact past 60 s, where the histogram stops', () => {
    const lag = new LagStats();
    lag.add([NOW - 90_000], NOW);
    expect(lag.summary().max).toBe(90_000);
    expect(lag.summary().p99).toBe(60_000);
  });

  it('gives the rate of the last five seconds in copies per second', () => {
    const lag = new LagStats();
    lag.add(Array.from({ length: 10 }, () => NOW), NOW);
    lag.add(Array.from({ length: 10 }, () => NOW + 1_000), NOW + 1_000);
    expect(lag.recentRate(NOW + 1_000)).toBe(4);
    expect(lag.recentRate(NOW + 5_050), 'the first ten are more than five seconds old').toBe(2);
    expect(lag.recentRate(NOW + 6_000)).toBe(0);
  });

  it('adds copies within the same tenth of a second together', () => {
    const lag = new LagStats();
    lag.add([NOW], NOW);
    lag.add([NOW + 50, NOW + 50], NOW + 50);
    expect(lag.recentRate(NOW + 99)).toBe(3 / 5);
  });
});
