// Key routing without a cluster (lib/net/cluster.ts): hash slots against values CLUSTER KEYSLOT gave on
// Redis 7.0.15, the hash-tag rules of the cluster spec, and slotTag.
import { describe, expect, it } from 'vitest';
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
