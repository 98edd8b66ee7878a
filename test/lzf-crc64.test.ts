// LZF decompression (lib/rdb/lzf.ts) and CRC-64 (lib/rdb/crc64.ts) on their own: the LZF strings real
// servers put in their DUMP payloads, a round trip through a small LZF compressor written here, every
// malformed-input check, and CRC-64 over ranges and pieces. No server is started.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Crc64, crc64, crcHex } from '../lib/rdb/crc64.js';
import { lzfDecompress } from '../lib/rdb/lzf.js';
import type { Manifest } from './helpers/manifest.js';
import { slowCrc64 } from './helpers/crc64-reference.js';

const FIXTURES = ['redis-6.2', 'redis-7.0', 'redis-7.2', 'redis-7.4', 'valkey-8.0'] as const;
const readManifest = (name: string): Manifest => JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'rdb', `${name}.json`), 'utf8')) as Manifest;

/** An RDB length at `at`: 6-bit, 14-bit, 32-bit or 64-bit (big-endian), as rdb.c writes it. */
function rdbLength(bytes: Buffer, at: number): [number, number] {
  const first = bytes[at] as number;
  switch (first >> 6) {
    case 0:
      return [first & 0x3f, at + 1];
    case 1:
      return [((first & 0x3f) << 8) | (bytes[at + 1] as number), at + 2];
    default:
      if (first === 0x80) return [bytes.readUInt32BE(at + 1), at + 5];
      if (first === 0x81) return [Number(bytes.readBigUInt64BE(at + 1)), at + 9];
      throw new Error(`not a length: 0x${first.toString(16)}`);
  }
}

/** Every string DUMP that holds an LZF-compressed value (type 0, then the 0xc3 LZF encoding). */
const LZF_STRINGS = FIXTURES.flatMap((fixture) =>
  Object.values(readManifest(fixture).databases).flatMap((keys) =>
    Object.entries(keys).flatMap(([key64, entry]) => {
      const dump = Buffer.from(entry.dump as string, 'base64');
      if (entry.type !== 'string' || dump[0] !== 0 || dump[1] !== 0xc3) return [];
      const [compressedLength, afterFirst] = rdbLength(dump, 2);
      const [length, dataAt] = rdbLength(dump, afterFirst);
      const value = Buffer.from(entry.value as string, 'base64');
      return [{ name: `${fixture} ${Buffer.from(key64, 'base64').toString('latin1')}`, compressed: dump.subarray(dataAt, dataAt + compressedLength), length, value }];
    }),
  ),
);

/**
 * A small LZF compressor (liblzf's format: literal runs of 1 to 32 bytes, back references of 3 to 264 bytes
 * up to 8 KB back), greedy, so the round trip below reaches every form the decompressor reads.
 */
function lzfCompress(input: Buffer): Buffer {
  const out: number[] = [];
  let literal: number[] = [];
  const flush = (): void => {
    for (let i = 0; i < literal.length; i += 32) {
      const run = literal.slice(i, i + 32);
      out.push(run.length - 1, ...run);
    }
    literal = [];
  };
  const seen = new Map<number, number[]>();
  const triple = (i: number): number => ((input[i] as number) << 16) | ((input[i + 1] as number) << 8) | (input[i + 2] as number);
  for (let i = 0; i < input.length; ) {
    let best = 0;
    let bestDistance = 0;
    if (i + 2 < input.length) {
      for (const j of (seen.get(triple(i)) ?? []).slice(-16)) {
        if (i - j > 8192) continue;
        let n = 0;
        while (n < 264 && i + n < input.length && input[j + n] === input[i + n]) n++;
        if (n > best) [best, bestDistance] = [n, i - j];
      }
    }
    const from = i;
    if (best >= 3) {
      flush();
      const length = best - 2;
      const offset = bestDistance - 1;
      if (length < 7) out.push((length << 5) | (offset >> 8));
      else out.push((7 << 5) | (offset >> 8), length - 7);
      out.push(offset & 0xff);
      i += best;
    } else {
      literal.push(input[i] as number);
      i += 1;
    }
    for (let k = from; k < i && k + 2 < input.length; k++) {
      const list = seen.get(triple(k)) ?? [];
      list.push(k);
      seen.set(triple(k), list);
    }
  }
  flush();
  return Buffer.from(out);
}

/** Deterministic bytes: runs, repeats near and far (past 256 and 4096 bytes back), and noise. */
function sampleData(length: number, seed: number): Buffer {
  let state = seed;
  const random = (): number => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state;
  };
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; ) {
    const kind = random() % 4;
    const n = Math.min(length - i, 1 + (random() % 300));
    for (let k = 0; k < n; k++, i++) {
      if (kind === 0) out[i] = random() & 0xff;
      else if (kind === 1) out[i] = 0x41;
      else {
        const back = kind === 2 ? 1 + (random() % 200) : 300 + (random() % 7000);
        out[i] = i >= back ? (out[i - back] as number) : random() & 0xff;
      }
    }
  }
  return out;
}

describe('lzfDecompress', () => {
  it('expands every LZF-compressed string of every fixture to the value its server held', () => {
    expect(LZF_STRINGS.length, 'the fixtures hold LZF strings (str:lzf, the binary key, the bitmap, the dense HyperLogLog)').toBeGreaterThanOrEqual(4 * FIXTURES.length);
    for (const s of LZF_STRINGS) {
      expect(s.length, s.name).toBe(s.value.length);
      expect(lzfDecompress(s.compressed, s.length).equals(s.value), s.name).toBe(true);
    }
  });

  it('reads literal runs of 1 to 32 bytes', () => {
    expect(lzfDecompress(Buffer.from([0x00, 0x61]), 1).toString()).toBe('a');
    const thirtyTwo = Buffer.from('abcdefghijklmnopqrstuvwxyz012345');
    expect(lzfDecompress(Buffer.concat([Buffer.from([31]), thirtyTwo]), 32).equals(thirtyTwo)).toBe(true);
  });

  it('reads a back reference with its length in the control byte, and one with an extra length byte', () => {
    // "abc", then 4 bytes from 3 back (length field 2): "abcabca".
    expect(lzfDecompress(Buffer.from([0x02, 0x61, 0x62, 0x63, 0x40, 0x02]), 7).toString()).toBe('abcabca');
    // "ab", then 7 + 3 + 2 = 12 bytes from 2 back.
    expect(lzfDecompress(Buffer.from([0x01, 0x61, 0x62, 0xe0, 0x03, 0x01]), 14).toString()).toBe('ab'.repeat(7));
  });

  it('reads a back reference whose distance needs the high bits of the control byte (over 256 back)', () => {
    const start = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));
    const literals = Buffer.concat(Array.from({ length: 10 }, (_, i) => Buffer.concat([Buffer.from([29]), start.subarray(i * 30, i * 30 + 30)])));
    // Copy 3 bytes from 300 back: offset 299 = 0x12b, high bits 1 in the control byte, 0x2b after it.
    const data = Buffer.concat([literals, Buffer.from([0x20 | 0x01, 0x2b])]);
    expect(lzfDecompress(data, 303).equals(Buffer.concat([start, start.subarray(0, 3)]))).toBe(true);
  });

  it('gives back the input of a round trip through an LZF compressor, for data with near and far repeats', () => {
    for (const [length, seed] of [[0, 1], [1, 2], [33, 3], [5_000, 4], [40_000, 5]] as const) {
      const input = sampleData(length, seed);
      const compressed = lzfCompress(input);
      if (length > 1000) expect(compressed.length, 'the sample compresses, so back references are used').toBeLessThan(input.length * 0.8);
      expect(lzfDecompress(compressed, input.length).equals(input), `length ${length}`).toBe(true);
    }
  });

  it('gives an empty buffer for no data and a length of 0', () => {
    expect(lzfDecompress(Buffer.alloc(0), 0).length).toBe(0);
  });

  it('refuses data that expands to less than the stated length, saying both', () => {
    expect(() => lzfDecompress(Buffer.from([0x02, 0x61, 0x62, 0x63]), 5)).toThrow('LZF data expands to 3 bytes, not the stated 5');
    expect(() => lzfDecompress(Buffer.alloc(0), 1)).toThrow('expands to 0 bytes, not the stated 1');
  });

  it('refuses a literal run or a back reference that expands past the stated length', () => {
    expect(() => lzfDecompress(Buffer.from([0x02, 0x61, 0x62, 0x63]), 2)).toThrow(/past its stated length/);
    expect(() => lzfDecompress(Buffer.from([0x00, 0x61, 0x20, 0x00]), 3)).toThrow(/past its stated length/);
  });

  it('refuses a literal run cut short by the end of the data', () => {
    expect(() => lzfDecompress(Buffer.from([0x05, 0x61, 0x62]), 6)).toThrow(/literal run goes past the compressed data/);
  });

  it('refuses a back reference cut short, before its length byte or its offset byte', () => {
    expect(() => lzfDecompress(Buffer.from([0x00, 0x61, 0xe0]), 20)).toThrow(/back reference cut short/);
    expect(() => lzfDecompress(Buffer.from([0x00, 0x61, 0xe0, 0x05]), 20)).toThrow(/back reference cut short/);
    expect(() => lzfDecompress(Buffer.from([0x00, 0x61, 0x20]), 4)).toThrow(/back reference cut short/);
  });

  it('refuses a back reference to before the start of the output', () => {
    expect(() => lzfDecompress(Buffer.from([0x00, 0x61, 0x20, 0x01]), 4)).toThrow(/before the start/);
    expect(() => lzfDecompress(Buffer.from([0x20, 0x00]), 3)).toThrow(/before the start/);
  });
});

describe('CRC-64 (Jones, as Redis computes it)', () => {
  it('is 0 for no bytes and 0xe9c6d914c4b8d9ca for "123456789"', () => {
    expect(crc64()).toBe(0n);
    expect(crc64(Buffer.from('123456789'))).toBe(0xe9c6d914c4b8d9can);
    expect(slowCrc64(Buffer.from('123456789'))).toBe(0xe9c6d914c4b8d9can);
  });

  it('over a range of a buffer equals the CRC of that range alone, on both the byte and the word path', () => {
    const data = sampleData(2_000, 9);
    for (const [start, end] of [[0, 0], [3, 10], [1, 700], [5, 1_999], [0, 2_000], [257, 1_100]] as const) {
      expect(new Crc64().update(data, start, end).digest(), `${start}-${end}`).toBe(slowCrc64(data.subarray(start, end)));
    }
  });

  it('fed in pieces of any size gives the CRC of the whole, whatever the alignment of each piece', () => {
    const data = sampleData(3_000, 11);
    const expected = slowCrc64(data);
    for (const sizes of [[1], [7], [255, 1], [256], [1_000, 3], [4_097]]) {
      const crc = new Crc64();
      for (let at = 0, k = 0; at < data.length; k++) {
        const size = sizes[k % sizes.length] as number;
        crc.update(data.subarray(at, at + size));
        at += size;
      }
      expect(crc.digest(), `pieces of ${sizes.join(', ')}`).toBe(expected);
    }
  });

  it('gives its digest as 8 little-endian bytes, and shows it as 16 hex digits', () => {
    const crc = new Crc64().update(Buffer.from('123456789'));
    expect(crc.digestBytes().toString('hex')).toBe('cad9b8c414d9c6e9');
    const into = Buffer.alloc(12, 0xff);
    crc.writeDigest(into, 2);
    expect(into.toString('hex')).toBe('ffffcad9b8c414d9c6e9ffff');
    expect(crcHex(0xe9c6d914c4b8d9can)).toBe('0xe9c6d914c4b8d9ca');
    expect(crcHex(1n)).toBe('0x0000000000000001');
  });
});
