// Redis's glob patterns (SCAN MATCH, KEY_EXCLUDE_PATTERN), matched byte for byte by a port of its own matcher.

const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const BACKSLASH = 0x5c;
const CARET = 0x5e;
const DASH = 0x2d;

/** Redis compares range ends as C `char`, which is signed: bytes from 0x80 sort below 'a'. */
const signed = (byte: number): number => (byte > 127 ? byte - 256 : byte);

/**
 * Redis's own glob matcher (stringmatchlen in util.c), ported byte for byte so KEY_EXCLUDE_PATTERN means
 * exactly what SCAN MATCH would: escapes inside classes, reversed ranges, unclosed classes and all.
 */
export function globMatches(pattern: Uint8Array, key: Uint8Array): boolean {
  return matchFrom(pattern, 0, key, 0, { giveUp: false });
}

function matchFrom(p: Uint8Array, pi: number, s: Uint8Array, si: number, state: { giveUp: boolean }): boolean {
  while (pi < p.length && si < s.length) {
    const c = p[pi];
    if (c === STAR) {
      while (pi + 1 < p.length && p[pi + 1] === STAR) pi++;
      if (pi === p.length - 1) return true;
      for (; si < s.length; si++) {
        if (matchFrom(p, pi + 1, s, si, state)) return true;
        if (state.giveUp) return false;
      }
      // No match for the rest from anywhere: longer matches for earlier stars cannot help either.
      state.giveUp = true;
      return false;
    } else if (c === QUESTION) {
      si++;
    } else if (c === OPEN) {
      const [matched, end] = matchClass(p, pi + 1, s[si] as number);
      if (!matched) return false;
      pi = end;
      si++;
    } else {
      if (c === BACKSLASH && p.length - pi >= 2) pi++;
      if (p[pi] !== s[si]) return false;
      si++;
    }
    pi++;
    if (si === s.length) {
      while (pi < p.length && p[pi] === STAR) pi++;
      break;
    }
  }
  return pi === p.length && si === s.length;
}

/** A [...] class from just after '['; returns whether `byte` is in it, and where the class ends. */
function matchClass(p: Uint8Array, start: number, byte: number): [boolean, number] {
  let pi = start;
  const negate = p[pi] === CARET;
  if (negate) pi++;
  let match = false;
  for (;; pi++) {
    if (p[pi] === BACKSLASH && p.length - pi >= 2) {
      pi++;
      if (p[pi] === byte) match = true;
    } else if (p[pi] === CLOSE) {
      break;
    } else if (pi >= p.length) {
      pi--; // an unclosed class takes the rest of the pattern
      break;
    } else if (p.length - pi >= 3 && p[pi + 1] === DASH) {
      const [low, high] = [signed(p[pi] as number), signed(p[pi + 2] as number)].sort((a, b) => a - b) as [number, number];
      if (signed(byte) >= low && signed(byte) <= high) match = true;
      pi += 2;
    } else if (p[pi] === byte) {
      match = true;
    }
  }
  return [negate ? !match : match, pi];
}

/** SCAN MATCH as a test of keys: none for a bare `*`, which selects every key (the empty one too, as SCAN does not filter then). */
export function matchTest(pattern: string): ((key: Uint8Array) => boolean) | undefined {
  if (pattern === '*') return undefined;
  const bytes = Buffer.from(pattern);
  return (key) => globMatches(bytes, key);
}

/** A pattern as a test of keys; undefined for the empty pattern (nothing to test). Compiled once, used per key. */
export function globTest(pattern: string): ((key: Uint8Array) => boolean) | undefined {
  if (pattern === '') return undefined;
  const bytes = Buffer.from(pattern);
  return (key) => globMatches(bytes, key);
}
