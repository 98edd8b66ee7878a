// The glob engine of KEY_EXCLUDE_PATTERN and of .rdb and live-mode filters (globMatches, lib/sources/scan.ts),
// on its own. Each expected answer below is what SCAN MATCH answered on redis-server 7.0.15 for a database
// holding only that key (see test/filters.test.ts for the same comparison run live against a server).
import { describe, expect, it } from 'vitest';
import { globMatches } from '../lib/sources/glob.js';

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');
const matches = (pattern: string, key: string): boolean => globMatches(latin1(pattern), latin1(key));

/** [pattern, key, whether Redis matched] for every case of a group, each named in a failure. */
function expectAll(cases: [string, string, boolean][]): void {
  const wrong = cases.filter(([pattern, key, expected]) => matches(pattern, key) !== expected).map(([p, k, e]) => `${JSON.stringify(p)} ${e ? 'must' : 'must not'} match ${JSON.stringify(k)}`);
  expect(wrong).toEqual([]);
}

describe('globMatches, as Redis SCAN MATCH', () => {
  it('matches the whole key: a pattern without wildcards only itself', () => {
    expectAll([
      ['', '', true],
      ['', 'a', false],
      ['a', '', false],
      ['abc', 'abc', true],
      ['abc', 'abcd', false],
      ['abc', 'xabc', false],
    ]);
  });

  it('* matches any run of bytes, ? exactly one byte', () => {
    expectAll([
      ['*', 'abc', true],
      ['a*', 'a', true],
      ['a*', 'abc', true],
      ['a*', '', false],
      ['*a', 'ba', true],
      ['*a', 'ab', false],
      ['a*b*c', 'aXbYc', true],
      ['a*b*c', 'aXbY', false],
      ['a*b*c', 'abcabc', true],
      ['*b', 'aaab', true],
      ['*.txt', 'a.b.txt', true],
      ['*.txt', 'a.txtx', false],
      ['a?c', 'abc', true],
      ['a?c', 'ac', false],
      ['a?c', 'abbc', false],
      ['??', '\x00\xff', true],
    ]);
  });

  it('a pattern of more than one star, or a ? before it, does not match the empty key', () => {
    expectAll([
      ['**', '', false],
      ['?*', '', false],
    ]);
  });

  it('[abc] matches one byte of the set, [^abc] one byte not in it', () => {
    expectAll([
      ['[abc]', 'b', true],
      ['[abc]', 'd', false],
      ['[abc]', 'ab', false],
      ['[^abc]', 'd', true],
      ['[^abc]', 'a', false],
      ['[^abc]', '\xff', true],
      ['h[^e]llo', 'hallo', true],
      ['h[^e]llo', 'hello', false],
    ]);
  });

  it('[a-c] matches a range, in either order, with other members beside it', () => {
    expectAll([
      ['[a-c]', 'b', true],
      ['[a-c]', 'd', false],
      ['[c-a]', 'b', true],
      ['[c-a]', 'd', false],
      ['[a-cx]', 'x', true],
      ['[a-cx]', '-', false],
      ['[-a]', '-', true],
      ['h[a-b]llo', 'hbllo', true],
      ['user:[0-9]*', 'user:7abc', true],
      ['user:[0-9]*', 'user:x', false],
    ]);
  });

  it("takes the ] after a dash as a range's end, leaving the class open to the end of the pattern", () => {
    // [a-] is the range ']'..'a' (0x5d-0x61), and the class, never closed, takes the rest of the pattern.
    expectAll([
      ['[a-]', '-', false],
      ['[a-]', ']', true],
      ['[a-]', '_', true],
      ['[a-]x', 'a', true],
      ['[a-]x', ']x', false],
    ]);
  });

  it('escapes with a backslash, inside a class and out', () => {
    expectAll([
      ['\\*', '*', true],
      ['\\*', 'a', false],
      ['\\?', '?', true],
      ['\\?', 'a', false],
      ['\\[a]', '[a]', true],
      ['\\[a]', 'a', false],
      ['\\a', 'a', true],
      ['[\\]]', ']', true],
      ['[\\]]', '\\', false],
      ['[\\-]', '-', true],
      ['[a\\-z]', '-', true],
      ['[a\\-z]', 'b', false],
    ]);
  });

  it('reads a backslash that ends the pattern as a backslash', () => {
    expectAll([
      ['a\\', 'a\\', true],
      ['a\\', 'a', false],
    ]);
  });

  it('closes a class at its first ], so [] and []] match nothing and [^] anything', () => {
    expectAll([
      ['[]', '', false],
      ['[]', 'a', false],
      ['[]', ']', false],
      ['[]]', ']', false],
      ['[]a]', 'a', false],
      ['[^]', 'a', true],
      ['[^]', ']', true],
    ]);
  });

  it('runs an unclosed class to the end of the pattern', () => {
    expectAll([
      ['[abc', 'a', true],
      ['[abc', 'd', false],
      ['[', '', false],
      ['[', '[', false],
      ['x[', 'x[', false],
      ['[^', 'a', true],
      ['[^', '\xff', true],
      ['[^', 'ab', false],
    ]);
  });

  it('compares range ends as signed C chars: bytes from 0x80 sort below NUL', () => {
    expectAll([
      ['[\x80-\xff]', '\x90', true],
      ['[\x80-\xff]', 'a', false],
      // 'a'..0xff is, in signed chars, -1..97: 0xff and NUL..'a', not 'b' nor 0x80.
      ['[a-\xff]', '\x00', true],
      ['[a-\xff]', 'a', true],
      ['[a-\xff]', 'b', false],
      ['[a-\xff]', '\xff', true],
      ['[a-\xff]', '\x80', false],
    ]);
  });

  it('matches binary keys byte for byte, NUL included', () => {
    expectAll([
      ['k\x00*', 'k\x00\x01', true],
      ['k?v', 'k\x00v', true],
    ]);
    expect(globMatches(Buffer.from([0x6b, 0x00, 0x2a]), Buffer.from([0x6b, 0x01]))).toBe(false);
    expect(globMatches(new Uint8Array([0x2a, 0xff]), new Uint8Array([0x00, 0x00, 0xff]))).toBe(true);
  });

  it('gives up early on a pattern of many stars that cannot match, instead of backtracking for ever', () => {
    const pattern = `${'a*'.repeat(30)}b`;
    const key = 'a'.repeat(5_000);
    const started = performance.now();
    expect(matches(pattern, key)).toBe(false);
    expect(matches(pattern, `${key}b`)).toBe(true);
    expect(performance.now() - started).toBeLessThan(500);
  });
});
