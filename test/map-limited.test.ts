// lib/batch.ts on its own, no server: mapLimited's order, concurrency bound and failure rule, settleChunked
// (a batch's big keys copied alone, in their places), and how a write script's per-key answers are read.
import { describe, expect, it } from 'vitest';
import { mapLimited } from '../lib/concurrency.js';
import type { KeyOutcome } from '../lib/records.js';
import { recordCount } from '../lib/sources/server.js';
import { answerOf, CHUNKED_KEYS_AT_ONCE, settleChunked, type WriteAnswer } from '../lib/copy/context.js';

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve: (value: T) => void = () => undefined;
  let reject: (err: unknown) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every promise callback that is ready run (several rounds of the event loop). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** A task whose calls can be finished one by one from the test; records which items started and how many ran at once. */
function controlledTask<R>() {
  const calls = new Map<number, Deferred<R>>();
  let running = 0;
  let peak = 0;
  const task = async (item: number): Promise<R> => {
    const call = deferred<R>();
    calls.set(item, call);
    running += 1;
    peak = Math.max(peak, running);
    try {
      return await call.promise;
    } finally {
      running -= 1;
    }
  };
  return {
    task,
    started: (): number[] => [...calls.keys()],
    call: (item: number): Deferred<R> => {
      const found = calls.get(item);
      if (!found) throw new Error(`task ${item} has not started`);
      return found;
    },
    get running(): number {
      return running;
    },
    get peak(): number {
      return peak;
    },
  };
}

const key = (name: string): Buffer => Buffer.from(name);

describe('mapLimited', () => {
  it('returns the results in the order of the items, whatever order the tasks finish in', async () => {
    const items = [0, 1, 2, 3, 4];
    const control = controlledTask<string>();
    const all = mapLimited(items, items.length, control.task);
    await settle();
    for (const item of [...items].reverse()) {
      control.call(item).resolve(`result ${item}`);
      await settle();
    }
    expect(await all).toEqual(['result 0', 'result 1', 'result 2', 'result 3', 'result 4']);
  });

  it('runs at most `limit` tasks at once, and keeps `limit` running while items are left', async () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    let running = 0;
    let peak = 0;
    const alongside: number[] = [];
    const results = await mapLimited(items, 3, async (item) => {
      running += 1;
      peak = Math.max(peak, running);
      alongside.push(running);
      // Uneven durations, so tasks end out of order and a freed place is taken by the next item.
      for (let tick = 0; tick < (item * 7) % 5; tick++) await new Promise<void>((resolve) => setImmediate(resolve));
      running -= 1;
      return item * 10;
    });
    expect(results).toEqual(items.map((i) => i * 10));
    expect(peak).toBe(3);
    expect(alongside.every((n) => n <= 3)).toBe(true);
    expect(alongside).toHaveLength(20);
  });

  it('starts the next item only when a running task ends', async () => {
    const control = controlledTask<number>();
    const all = mapLimited([0, 1, 2, 3], 2, control.task);
    await settle();
    expect(control.started()).toEqual([0, 1]);
    control.call(1).resolve(1);
    await settle();
    expect(control.started()).toEqual([0, 1, 2]);
    control.call(0).resolve(0);
    await settle();
    expect(control.started()).toEqual([0, 1, 2, 3]);
    control.call(2).resolve(2);
    control.call(3).resolve(3);
    expect(await all).toEqual([0, 1, 2, 3]);
    expect(control.peak).toBe(2);
  });

  it('starts every item at once when the limit is above the number of items', async () => {
    const control = controlledTask<number>();
    const all = mapLimited([0, 1, 2], 10, control.task);
    await settle();
    expect(control.started()).toEqual([0, 1, 2]);
    for (const item of [0, 1, 2]) control.call(item).resolve(item);
    expect(await all).toEqual([0, 1, 2]);
  });

  it('returns an empty array for no items without calling the task', async () => {
    let calls = 0;
    expect(
      await mapLimited([], 4, async () => {
        calls += 1;
        return 1;
      }),
    ).toEqual([]);
    expect(calls).toBe(0);
  });

  it('after a failure starts no new task, and throws only once the tasks still running have ended', async () => {
    const control = controlledTask<number>();
    let outcome: { rejected: unknown } | { resolved: number[] } | undefined;
    const all = mapLimited([0, 1, 2, 3, 4, 5], 2, control.task).then(
      (resolved) => (outcome = { resolved }),
      (rejected: unknown) => (outcome = { rejected }),
    );
    await settle();
    expect(control.started()).toEqual([0, 1]);

    const failure = new Error('task 0 failed');
    control.call(0).reject(failure);
    await settle();
    expect(control.started(), 'no task may start after a failure').toEqual([0, 1]);
    expect(control.running, 'task 1 is still running').toBe(1);
    expect(outcome, 'the failure must wait for task 1 to end').toBeUndefined();

    control.call(1).resolve(1);
    await all;
    expect(outcome).toEqual({ rejected: failure });
    expect(control.started()).toEqual([0, 1]);
    expect(control.running).toBe(0);
  });

  it('throws the first failure when several running tasks fail', async () => {
    const control = controlledTask<number>();
    const all = mapLimited([0, 1, 2], 3, control.task);
    await settle();
    const first = new Error('first');
    control.call(2).reject(first);
    await settle();
    control.call(0).reject(new Error('second'));
    await settle();
    control.call(1).resolve(1);
    await expect(all).rejects.toBe(first);
  });

  it('treats a task that throws before returning a promise like one that rejects', async () => {
    const started: number[] = [];
    const task = (item: number): Promise<number> => {
      started.push(item);
      if (item === 1) throw new Error('thrown at once');
      return Promise.resolve(item);
    };
    await expect(mapLimited([0, 1, 2, 3], 1, task)).rejects.toThrow('thrown at once');
    expect(started).toEqual([0, 1]);
  });
});

describe('settleChunked', () => {
  it('copies alone only the keys answered `chunked`, and puts each outcome in that key\'s place', async () => {
    const answers: WriteAnswer[] = [
      { key: key('a'), status: 'restored' },
      { key: key('big1'), status: 'chunked' },
      { key: key('b'), status: 'skipped' },
      { key: key('big2'), status: 'chunked' },
      { key: key('c'), status: 'failed', reason: 'ERR nope' },
    ];
    const before = answers.map((a) => ({ ...a }));
    const copiedAlone: string[] = [];
    const outcomes = await settleChunked(answers, async (k) => {
      copiedAlone.push(k.toString());
      return k.toString() === 'big1' ? { key: k, status: 'restored', via: 'byType' } : { key: k, status: 'vanished' };
    });
    expect(copiedAlone).toEqual(['big1', 'big2']);
    expect(outcomes).toEqual([
      { key: key('a'), status: 'restored' },
      { key: key('big1'), status: 'restored', via: 'byType' },
      { key: key('b'), status: 'skipped' },
      { key: key('big2'), status: 'vanished' },
      { key: key('c'), status: 'failed', reason: 'ERR nope' },
    ]);
    expect(answers, 'the answers given are not changed').toEqual(before);
  });

  it('calls nothing when no key is chunked', async () => {
    const answers: WriteAnswer[] = [
      { key: key('a'), status: 'restored' },
      { key: key('b'), status: 'vanished' },
    ];
    let calls = 0;
    const outcomes = await settleChunked(answers, async (k): Promise<KeyOutcome> => {
      calls += 1;
      return { key: k, status: 'restored' };
    });
    expect(calls).toBe(0);
    expect(outcomes).toEqual(answers);
  });

  it(`copies at most CHUNKED_KEYS_AT_ONCE (${CHUNKED_KEYS_AT_ONCE}) big keys at once`, async () => {
    const answers: WriteAnswer[] = Array.from({ length: 30 }, (_, i) => ({ key: key(`k${i}`), status: i % 3 === 0 ? 'restored' : 'chunked' }));
    let running = 0;
    let peak = 0;
    const outcomes = await settleChunked(answers, async (k) => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise<void>((resolve) => setImmediate(resolve));
      running -= 1;
      return { key: k, status: 'skipped' };
    });
    expect(peak).toBe(CHUNKED_KEYS_AT_ONCE);
    expect(outcomes.map((o) => `${o.key.toString()} ${o.status}`)).toEqual(answers.map((a, i) => `k${i} ${a.status === 'chunked' ? 'skipped' : 'restored'}`));
  });

  it('rejects with the failure of a key copied alone', async () => {
    const answers: WriteAnswer[] = [{ key: key('big'), status: 'chunked' }];
    await expect(settleChunked(answers, () => Promise.reject(new Error('connection lost')))).rejects.toThrow('connection lost');
  });
});

describe("answerOf reads a write script's answer for one key", () => {
  it('1 is restored, 0 skipped, 2 vanished and 3 chunked', () => {
    const k = key('k');
    expect(answerOf(k, 1)).toEqual({ key: k, status: 'restored' });
    expect(answerOf(k, 0)).toEqual({ key: k, status: 'skipped' });
    expect(answerOf(k, 2)).toEqual({ key: k, status: 'vanished' });
    expect(answerOf(k, 3)).toEqual({ key: k, status: 'chunked' });
  });

  it('anything else is a failure whose reason is the answer\'s text', () => {
    const k = key('k');
    expect(answerOf(k, 'ERR bad payload')).toEqual({ key: k, status: 'failed', reason: 'ERR bad payload' });
    expect(answerOf(k, Buffer.from('OOM command not allowed'))).toEqual({ key: k, status: 'failed', reason: 'OOM command not allowed' });
    expect(answerOf(k, 4)).toEqual({ key: k, status: 'failed', reason: '4' });
    expect(answerOf(k, '1'), 'only the integer 1 means written').toEqual({ key: k, status: 'failed', reason: '1' });
    expect(answerOf(k, null)).toEqual({ key: k, status: 'failed', reason: '' });
    expect(answerOf(k, undefined)).toEqual({ key: k, status: 'failed', reason: '' });
  });
});

describe('recordCount', () => {
  it("counts one record per ';' in a batch header", () => {
    expect(recordCount('')).toBe(0);
    expect(recordCount('no terminator')).toBe(0);
    expect(recordCount('1000,5;')).toBe(1);
    expect(recordCount('-1,5;-2,0;1700000000000,12;')).toBe(3);
    expect(recordCount(';;;;')).toBe(4);
    expect(recordCount('-1,5;-1,7')).toBe(1);
  });
});
