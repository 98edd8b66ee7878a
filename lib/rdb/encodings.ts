// RDB's variable-size fields (rdb.c): lengths in 6, 14, 32 or 64 bits, strings that may be stored as
// 8/16/32-bit integers or LZF-compressed, and the two double formats. Strings come back as Buffers.
import type { ByteCursor } from './cursor.js';
import { RdbFormatError } from './errors.js';
import { lzfDecompress } from './lzf.js';

const ENC_INT8 = 0;
const ENC_INT16 = 1;
const ENC_INT32 = 2;
const ENC_LZF = 3;
const LEN_32BIT = 0x80;
const LEN_64BIT = 0x81;

/** The 64-bit length 0xffffffffffffffff: how Redis writes -1 through rdbSaveLen (a group's unknown entries_read). */
export const LENGTH_MINUS_ONE = (1n << 64n) - 1n;

/**
 * A length, or a special string encoding: values >= 0 are lengths, a negative value -(n + 1) is
 * string encoding n. One number instead of an object keeps the scanning loop allocation-free.
 */
function lengthOrEncoding(c: ByteCursor): number {
  const first = c.u8();
  switch (first >> 6) {
    case 0:
      return first & 0x3f;
    case 1:
      return ((first & 0x3f) << 8) | c.u8();
    case 3:
      return -((first & 0x3f) + 1);
  }
  if (first === LEN_32BIT) return c.u32be();
  if (first === LEN_64BIT) {
    const start = c.offset - 1;
    const big = c.u64be();
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new RdbFormatError(`length ${big} ${c.at(start)} is too large to be real`);
    return Number(big);
  }
  throw new RdbFormatError(`unknown length encoding 0x${first.toString(16)} ${c.at(c.offset - 1)}`);
}

/** A plain length (a count or a size); a string encoding marker here is corruption. */
export function readLength(c: ByteCursor): number {
  const start = c.offset;
  const n = lengthOrEncoding(c);
  if (n < 0) throw new RdbFormatError(`expected a length ${c.at(start)}, found string encoding marker 0x${c.buf[c.pos - 1]!.toString(16)}`);
  return n;
}

/** A length as a bigint, for the full 64-bit range (stream IDs, -1 written as unsigned). */
export function readLengthBigint(c: ByteCursor): bigint {
  if (c.pos < c.end && c.buf[c.pos] === LEN_64BIT) {
    c.pos += 1;
    return c.u64be();
  }
  return BigInt(readLength(c));
}

/** Steps over a length of any size, 64-bit ones included, without looking at its value. */
export function skipLength(c: ByteCursor): void {
  if (c.pos < c.end && c.buf[c.pos] === LEN_64BIT) {
    c.pos += 1;
    c.skip(8);
    return;
  }
  readLength(c);
}

/** A string: raw bytes as a view into the cursor's buffer (`own`: a copy of its own), integers as decimal text. */
export function readString(c: ByteCursor, own = false): Buffer {
  const start = c.offset;
  const n = lengthOrEncoding(c);
  if (n >= 0) return own ? c.copyOf(n) : c.bytes(n);
  const encoding = -n - 1;
  switch (encoding) {
    case ENC_INT8:
      return Buffer.from(String((c.u8() << 24) >> 24));
    case ENC_INT16:
      return Buffer.from(String((c.u16le() << 16) >> 16));
    case ENC_INT32:
      return Buffer.from(String(c.i32le()));
    case ENC_LZF: {
      const compressed = readLength(c);
      const length = readLength(c);
      const data = c.bytes(compressed);
      try {
        return lzfDecompress(data, length);
      } catch (err) {
        throw new RdbFormatError(`bad LZF string ${c.at(start)}: ${(err as Error).message}`);
      }
    }
  }
  throw new RdbFormatError(`unknown string encoding ${encoding} ${c.at(start)}`);
}

/**
 * Reads only a string's header and returns how many bytes of it still follow at the cursor, without
 * needing them in memory: the scanner skips a 100 MB string by position alone.
 */
export function stringBodyLength(c: ByteCursor): number {
  const start = c.offset;
  const n = lengthOrEncoding(c);
  if (n >= 0) return n;
  switch (-n - 1) {
    case ENC_INT8:
      return 1;
    case ENC_INT16:
      return 2;
    case ENC_INT32:
      return 4;
    case ENC_LZF: {
      const compressed = readLength(c);
      readLength(c); // the uncompressed length
      return compressed;
    }
  }
  throw new RdbFormatError(`unknown string encoding ${-n - 1} ${c.at(start)}`);
}

/** A double in the old text format of RDB_TYPE_ZSET: a length byte (253 NaN, 254 +inf, 255 -inf) and ASCII. */
export function readTextDouble(c: ByteCursor): number {
  const start = c.offset;
  const length = c.u8();
  if (length === 253) return NaN;
  if (length === 254) return Infinity;
  if (length === 255) return -Infinity;
  const text = c.bytes(length).toString('latin1');
  const value = parseScore(text);
  if (Number.isNaN(value)) throw new RdbFormatError(`bad score ${JSON.stringify(text)} ${c.at(start)}`);
  return value;
}

/** How many bytes a text double takes after its length byte (0 for the special values). */
export function textDoubleBodyLength(c: ByteCursor): number {
  const length = c.u8();
  return length >= 253 ? 0 : length;
}

/** A score as Redis writes it in listpacks and text doubles: C's strtod spellings of infinity included. */
export function parseScore(text: string): number {
  const lower = text.toLowerCase();
  if (lower === 'inf' || lower === '+inf' || lower === 'infinity' || lower === '+infinity') return Infinity;
  if (lower === '-inf' || lower === '-infinity') return -Infinity;
  if (lower === 'nan' || lower === '-nan') return NaN;
  return text.trim() === '' ? NaN : Number(text);
}
