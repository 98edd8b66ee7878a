// concatAll: the parts of parallel work joined in order, as Array.prototype.flat joins them (which costs ~75 ns an element).
import { describe, expect, it } from 'vitest';
import { concatAll } from '../lib/concurrency.js';

describe('concatAll', () => {
  it.each([
    [[], []],
    [[[]], []],
    [[[1, 2, 3]], [1, 2, 3]],
    [[[1], [], [2, 3], [4]], [1, 2, 3, 4]],
  ])('%j gives what flat() gives', (parts, joined) => {
    expect(concatAll(parts)).toEqual(joined);
    expect(concatAll(parts)).toEqual(parts.flat());
  });

  it('joins one level only (pairs stay pairs), into a new array even from one part', () => {
    const pairs = [[['a', 'b']], [['c', 'd']]];
    expect(concatAll(pairs)).toEqual([['a', 'b'], ['c', 'd']]);
    const only = [1, 2];
    const joined = concatAll([only]);
    joined.push(3);
    expect(only).toEqual([1, 2]);
  });
});
