// Key routing without a cluster (lib/net/cluster.ts): hash slots against values CLUSTER KEYSLOT gave on
// Redis 7.0.15, the hash-tag rules of the cluster spec, slotTag, and mergeBatches, which interleaves the
// batches of every master's scan.
import { describe, expect, it } from 'vitest';
import { mergeBatches } from '../lib/sources/scan.js';
import { keySlot, SLOT_COUNT, slotTag } from '../lib/net/cluster.js';

const slot = (key: string | Buffer): number => keySlot(typeof key === 'string' ? Buffer.from(key, 'latin1') : key);

describe('keySlot', () => {
  it('is CRC16/XMODEM of the key mod 16384, as CLUSTER KEYSLOT answers', () => {
    // CLUSTER KEYSLOT on redis-server 7.0.15.
    const known: Record<string, number> = { foo: 12182, '123456789': 12739, '': 0, a: 15495, bar: 5061, key: 12539, 'key:1': 6657, user1000: 3443, '\x80': 4488 };
    for (const [key, expected] of Object.entries(known)) expect(slot(key), JSON.stringify(key)).toBe(expected);
    expect(slot('123456789'), 'the CRC16/XMODEM check value').toBe(0x31c3);
  });

  it('hashes only the {tag} when a key has one, so keys sharing a tag share a slot', () => {
    expect(slot('{user1000}.following')).toBe(3443);
    expect(slot('{user1000}.followers')).toBe(3443);
    expect(slot('{key}:1')).toBe(slot('key'));
    expect(slot('{key}:1')).not.toBe(slot('key:1'));
    expect(slot('{a}')).toBe(15495);
  });

  it('takes the first { and the first } after it, even when more braces follow', () => {
    expect(slot('foo{{bar}}zap'), "the tag is '{bar'").toBe(4015);
    expect(slot('foo{{bar}}zap')).toBe(slot('{bar'));
    expect(slot('foo{bar}{zap}'), "the tag is 'bar'").toBe(5061);
    expect(slot('{{}}'), "the tag is '{'").toBe(4092);
    expect(slot('{ }'), "the tag is ' '").toBe(9314);
  });

  it('hashes the whole key when the first tag is empty or never closed', () => {
    expect(slot('foo{}{bar}'), 'an empty first tag: the whole key, not bar').toBe(8363);
    expect(slot('foo{}{bar}')).not.toBe(slot('bar'));
    expect(slot('{}')).toBe(15257);
    expect(slot('{}x')).toBe(10595);
    expect(slot('x{}')).toBe(2608);
    expect(slot('no-close{tag')).toBe(2638);
    expect(slot('}{'), 'a } before the { does not close it').toBe(12793);
  });

  it('works on bytes: a binary key with a tag hashes the tag bytes', () => {
    expect(slot(Buffer.from([0x00, 0xff, 0x7b, 0x80, 0x7d]))).toBe(4488);
    expect(slot(Buffer.from([0x00, 0xff, 0x7b, 0x80, 0x7d]))).toBe(slot('\x80'));
    const bytes = new Uint8Array([0x7b, 0x61, 0x7d, 0x00]);
    expect(keySlot(bytes)).toBe(15495);
  });

  it('never leaves 0 to 16383', () => {
    const outside = Array.from({ length: 5000 }, (_, n) => slot(`key:${n}`)).filter((s) => !(Number.isInteger(s) && s >= 0 && s < SLOT_COUNT));
    expect(outside).toEqual([]);
  });
});

describe('slotTag', () => {
  it('gives, for every slot, a tag whose keys hash to that slot', () => {
    const wrong: number[] = [];
    for (let s = 0; s < SLOT_COUNT; s++) if (slot(`{${slotTag(s)}}:probe`) !== s) wrong.push(s);
    expect(wrong).toEqual([]);
  });

  it('gives the smallest decimal number that hashes to the slot', () => {
    const smallest = new Map<number, string>();
    for (let n = 0; smallest.size < SLOT_COUNT; n++) {
      const s = slot(String(n));
      if (!smallest.has(s)) smallest.set(s, String(n));
    }
    const differ: number[] = [];
    for (let s = 0; s < SLOT_COUNT; s++) if (slotTag(s) !== smallest.get(s)) differ.push(s);
    expect(differ).toEqual([]);
    expect(slotTag(slot('0'))).toBe('0');
    expect(slotTag(slot('7'))).toBe('7');
  });

  it('gives every slot a tag of its own', () => {
    const tags = new Set(Array.from({ length: SLOT_COUNT }, (_, s) => slotTag(s)));
    expect(tags.size).toBe(SLOT_COUNT);
    expect([...tags].filter((tag) => !/^(0|[1-9][0-9]*)$/.test(tag))).toEqual([]);
  });
});

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

describe('mergeBatches', () => {
  it('yields every item of every source once, each source in its own order', async () => {
    const sources = [
      Array.from({ length: 50 }, (_, i) => `a${i}`),
      Array.from({ length: 7 }, (_, i) => `b${i}`),
      [],
      Array.from({ length: 30 }, (_, i) => `c${i}`),
    ];
    const merged: string[] = [];
    for await (const item of mergeBatches(sources.map((items, i) => generate(items, i + 1)))) merged.push(item);
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
    for await (const item of mergeBatches([slowOne(), generate(Array.from({ length: 6 }, (_, i) => `fast${i}`))])) merged.push(item);
    expect(merged.slice(0, 6)).toEqual(['fast0', 'fast1', 'fast2', 'fast3', 'fast4', 'fast5']);
    expect(merged.slice(6)).toEqual(['slow0', 'slow1']);
  });

  it('yields in the order the sources answer, switching between them', async () => {
    const a = gatedSource(['a0', 'a1', 'a2']);
    const b = gatedSource(['b0', 'b1']);
    const merged = mergeBatches([a.iterator, b.iterator]);
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
    const merged = mergeBatches([a.iterator, b.iterator]);
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
    for await (const item of mergeBatches<string>([])) none.push(item);
    expect(none).toEqual([]);
    const empties: string[] = [];
    for await (const item of mergeBatches([generate<string>([]), generate<string>([])])) empties.push(item);
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
        for await (const item of mergeBatches([failing(), generate(['y0', 'y1', 'y2'], 1)])) seen.push(item);
      })(),
    ).rejects.toThrow('SCAN failed');
    expect(seen).toContain('x0');
  });
});
