// KEY_EXCLUDE_PATTERN is matched here, not by Redis, so its glob rules must be Redis's own. The oracle is a
// real redis-server: for each pattern, the keys our RegExp accepts must be exactly the keys
// `SCAN 0 MATCH <pattern>` returns, over a few hundred keys full of glob metacharacters and binary bytes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisServer } from './helpers/servers.js';
import { globMatches } from '../lib/sources/glob.js';

/** Symbols keys are built from: letters, every glob metacharacter, control and high bytes, a UTF-8 letter. */
const SYMBOLS: Buffer[] = [
  ...['a', 'b', 'c', 'k', 'x', '*', '?', '[', ']', '\\', '-', '^', ' ', '\n', 'é'].map((s) => Buffer.from(s)),
  Buffer.from([0x00]),
  Buffer.from([0xff]),
  Buffer.from([0x80]),
];

/** A small seeded PRNG, so a failure names the same keys every time. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every key of one and two symbols, a hundred longer random ones, and a few aimed at the patterns below. */
function testKeys(): Buffer[] {
  const keys = new Map<string, Buffer>();
  const add = (key: Buffer): void => void keys.set(key.toString('hex'), key);
  for (const a of SYMBOLS) {
    add(a);
    for (const b of SYMBOLS) add(Buffer.concat([a, b]));
  }
  const random = mulberry32(20240611);
  for (let i = 0; i < 100; i++) {
    const length = 3 + Math.floor(random() * 4);
    add(Buffer.concat(Array.from({ length }, () => SYMBOLS[Math.floor(random() * SYMBOLS.length)] as Buffer)));
  }
  for (const key of ['kx]', 'k]]', 'k\\]', 'kx', 'k]x', '\\*x', '*x', 'abc', 'a-c', 'tmp:1', 'é-é', 'x\\', '[]a]']) add(Buffer.from(key));
  return [...keys.values()];
}

/** Patterns as an operator would write them (JavaScript string escapes shown in the comments). */
const PATTERNS: string[] = [
  '*',
  'a*',
  '?b*',
  '*x',
  '??',
  '[a-c]*',
  '[^a]*',
  '\\*x', // \*x: a literal star, then x
  '\\?*', // \?*: a literal question mark first
  'k[x\\]]*', // k[x\]]*: an escaped ] inside a class
  '[\\[\\]]*', // [\[\]]*: both brackets, escaped, inside a class
  '*[*?]*',
  '[-a]?',
  '[a\\-c]*', // [a\-c]*: an escaped dash is a dash, not a range
  '[\\^a]*', // [\^a]*: an escaped caret is a caret, not a negation
  '[a^]*',
  '*\\\\*', // *\\*: keys holding a backslash
  '\\\\', // \\: the key made of one backslash
  'x\\', // x\: a trailing backslash is literal
  'é*',
  '*\n*',
  '[\u0000-\u001f]*',
  '[c-a]*', // a reversed range: Redis swaps its ends
  '[abc', // no closing bracket: Redis takes the rest as the class
  '[]a]*', // [] is an empty class in Redis: nothing matches
];

/** The keys `SCAN ... MATCH pattern` returns, as hex strings (binary-safe). */
async function redisMatches(server: RedisServer, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const reply: unknown = await server.client.sendCommand(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '100000']);
    if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`unexpected SCAN reply ${String(reply)}`);
    const [next, keys]: unknown[] = reply;
    cursor = Buffer.isBuffer(next) ? next.toString() : String(next);
    if (!Array.isArray(keys)) throw new Error('SCAN reply without a key list');
    for (const key of keys as unknown[]) {
      if (!Buffer.isBuffer(key)) throw new Error(`SCAN returned a non-Buffer key ${String(key)}`);
      found.push(key.toString('hex'));
    }
  } while (cursor !== '0');
  return found.sort();
}

/** The keys our matcher accepts, byte for byte, as lib/sources/scan.ts tests SCAN's keys. */
function ourMatches(keys: Buffer[], pattern: string): string[] {
  const glob = Buffer.from(pattern);
  return keys.filter((key) => globMatches(glob, key)).map((key) => key.toString('hex')).sort();
}

/** Hex keys with their bytes shown, for a readable failure message. */
function shown(hexKeys: string[]): string[] {
  return hexKeys.map((hex) => JSON.stringify(Buffer.from(hex, 'hex').toString('latin1')));
}

describe('globMatches matches exactly the keys Redis SCAN MATCH matches', () => {
  let server: RedisServer;
  const keys = testKeys();

  beforeAll(async () => {
    server = await startRedis();
    await Promise.all(keys.map((key) => server.client.sendCommand(['SET', key, '1'])));
    expect(Number(await server.cmd('DBSIZE'))).toBe(keys.length);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('the key set is a few hundred keys with every metacharacter and binary bytes', () => {
    expect(keys.length).toBeGreaterThan(300);
    for (const symbol of SYMBOLS) expect(keys.some((key) => key.includes(symbol))).toBe(true);
  });

  it.each(PATTERNS.map((pattern) => [JSON.stringify(pattern), pattern] as const))('pattern %s', async (_name, pattern) => {
    const expected = await redisMatches(server, pattern);
    let ours: string[] = [];
    expect(() => {
      ours = ourMatches(keys, pattern);
    }, 'globMatches must accept every pattern Redis accepts').not.toThrow();
    const onlyOurs = ours.filter((key) => !expected.includes(key));
    const onlyRedis = expected.filter((key) => !ours.includes(key));
    expect({ onlyOurs: shown(onlyOurs), onlyRedis: shown(onlyRedis) }).toEqual({ onlyOurs: [], onlyRedis: [] });
    expect(ours).toEqual(expected);
  });

  it('the patterns are not vacuous: most match some keys and none match all but *', async () => {
    const sizes = await Promise.all(PATTERNS.map(async (pattern) => (await redisMatches(server, pattern)).length));
    expect(sizes.filter((n) => n > 0).length).toBeGreaterThanOrEqual(PATTERNS.length - 2);
    expect(sizes.filter((n) => n === keys.length)).toHaveLength(1);
  });
});

describe('globMatches on its own', () => {
  it('anchors the whole key', () => {
    expect(globMatches(Buffer.from('tmp:*'), Buffer.from('tmp:1', 'latin1'))).toBe(true);
    expect(globMatches(Buffer.from('tmp:*'), Buffer.from('x:tmp:1', 'latin1'))).toBe(false);
    expect(globMatches(Buffer.from('tmp'), Buffer.from('tmp:1', 'latin1'))).toBe(false);
  });

  it('lets * and ? cross newlines and match any byte', () => {
    expect(globMatches(Buffer.from('a*b'), Buffer.from('a\n\x00\xffb', 'latin1'))).toBe(true);
    expect(globMatches(Buffer.from('a?b'), Buffer.from('a\nb', 'latin1'))).toBe(true);
    expect(globMatches(Buffer.from('a?b'), Buffer.from('a\n\nb', 'latin1'))).toBe(false);
  });

  it('treats RegExp metacharacters in the glob as literal bytes', () => {
    expect(globMatches(Buffer.from('a.b'), Buffer.from('axb', 'latin1'))).toBe(false);
    expect(globMatches(Buffer.from('a.b'), Buffer.from('a.b', 'latin1'))).toBe(true);
    expect(globMatches(Buffer.from('(x)+$'), Buffer.from('(x)+$'))).toBe(true);
    expect(globMatches(Buffer.from('(x)+$'), Buffer.from('xx'))).toBe(false);
  });

  it('matches a UTF-8 pattern against the UTF-8 bytes of a key, read as latin1', () => {
    const key = Buffer.from('café:1').toString('latin1');
    expect(globMatches(Buffer.from('café:*'), Buffer.from(key, 'latin1'))).toBe(true);
    expect(globMatches(Buffer.from('caf?:*'), Buffer.from(key, 'latin1'))).toBe(false); // é is two bytes
    expect(globMatches(Buffer.from('caf??:*'), Buffer.from(key, 'latin1'))).toBe(true);
  });
});
