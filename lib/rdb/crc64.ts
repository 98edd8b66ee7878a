// CRC-64/Jones as Redis computes it (crc64.c): reflected, polynomial 0xad93d23594c935a9, init 0, no final xor.
// It checks whole RDB files and DUMP payloads; table-driven on 32-bit halves, since bigint is slow: slicing by 16
// over aligned 32-bit words for long runs (~2x: a file's chunks), by 8 over bytes for short ones (a payload).
import { endianness } from 'node:os';

/** The reflected polynomial, as two 32-bit halves. */
const POLY_HI = 0x95ac9329;
const POLY_LO = 0xac4bc9b5;

/** TABLE_HI[k * 256 + b] / TABLE_LO[...]: the CRC of byte b followed by k zero bytes (slicing by 16). */
const SLICES = 16;
const TABLE_HI = new Uint32Array(SLICES * 256);
const TABLE_LO = new Uint32Array(SLICES * 256);
/** Runs this long take the word path; below, making a Uint32Array view costs more than it saves. */
const WORD_PATH_BYTES = 256;
/** A Uint32Array view reads words in the machine's byte order; the CRC's is little-endian. */
const LITTLE_ENDIAN = endianness() === 'LE';

function buildTables(): void {
  for (let byte = 0; byte < 256; byte++) {
    let hi = 0;
    let lo = byte;
    for (let bit = 0; bit < 8; bit++) {
      const carry = lo & 1;
      lo = ((lo >>> 1) | (hi << 31)) >>> 0;
      hi = hi >>> 1;
      if (carry) {
        hi = (hi ^ POLY_HI) >>> 0;
        lo = (lo ^ POLY_LO) >>> 0;
      }
    }
    TABLE_HI[byte] = hi;
    TABLE_LO[byte] = lo;
  }
  for (let k = 1; k < SLICES; k++) {
    for (let byte = 0; byte < 256; byte++) {
      const prev = (k - 1) * 256 + byte;
      const hi = TABLE_HI[prev] ?? 0;
      const lo = TABLE_LO[prev] ?? 0;
      // One more zero byte: shift right by 8 and fold the byte shifted out back in.
      const out = lo & 0xff;
      TABLE_HI[k * 256 + byte] = ((hi >>> 8) ^ (TABLE_HI[out] ?? 0)) >>> 0;
      TABLE_LO[k * 256 + byte] = (((lo >>> 8) | (hi << 24)) ^ (TABLE_LO[out] ?? 0)) >>> 0;
    }
  }
}
buildTables();

/** A running CRC-64, fed piece by piece (a file chunk at a time). */
export class Crc64 {
  private hi = 0;
  private lo = 0;

  update(data: Uint8Array, start = 0, end = data.length): this {
    let i = start;
    if (end - i >= WORD_PATH_BYTES && LITTLE_ENDIAN) {
      // Bytes up to a 4-byte boundary, then 16 bytes a step as words.
      const head = (4 - ((data.byteOffset + i) & 3)) & 3;
      this.updateBytes(data, i, i + head);
      i += head;
      const words = (end - i) >>> 4;
      this.updateWords(new Uint32Array(data.buffer, data.byteOffset + i, words * 4));
      i += words * 16;
    }
    return this.updateBytes(data, i, end);
  }

  /** Slicing by 16 over words already in little-endian order (4 per step). */
  private updateWords(words: Uint32Array): void {
    let hi = this.hi;
    let lo = this.lo;
    const th = TABLE_HI;
    const tl = TABLE_LO;
    for (let j = 0; j < words.length; j += 4) {
      const a = lo ^ words[j]!, b = hi ^ words[j + 1]!, c = words[j + 2]!, d = words[j + 3]!;
      const i15 = 15 * 256 + (a & 0xff), i14 = 14 * 256 + ((a >>> 8) & 0xff), i13 = 13 * 256 + ((a >>> 16) & 0xff), i12 = 12 * 256 + (a >>> 24);
      const i11 = 11 * 256 + (b & 0xff), i10 = 10 * 256 + ((b >>> 8) & 0xff), i9 = 9 * 256 + ((b >>> 16) & 0xff), i8 = 8 * 256 + (b >>> 24);
      const i7 = 7 * 256 + (c & 0xff), i6 = 6 * 256 + ((c >>> 8) & 0xff), i5 = 5 * 256 + ((c >>> 16) & 0xff), i4 = 4 * 256 + (c >>> 24);
      const i3 = 3 * 256 + (d & 0xff), i2 = 2 * 256 + ((d >>> 8) & 0xff), i1 = 256 + ((d >>> 16) & 0xff), i0 = d >>> 24;
      hi = th[i15]! ^ th[i14]! ^ th[i13]! ^ th[i12]! ^ th[i11]! ^ th[i10]! ^ th[i9]! ^ th[i8]!
        ^ th[i7]! ^ th[i6]! ^ th[i5]! ^ th[i4]! ^ th[i3]! ^ th[i2]! ^ th[i1]! ^ th[i0]!;
      lo = tl[i15]! ^ tl[i14]! ^ tl[i13]! ^ tl[i12]! ^ tl[i11]! ^ tl[i10]! ^ tl[i9]! ^ tl[i8]!
        ^ tl[i7]! ^ tl[i6]! ^ tl[i5]! ^ tl[i4]! ^ tl[i3]! ^ tl[i2]! ^ tl[i1]! ^ tl[i0]!;
    }
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
  }

  /** Slicing by 8 over bytes, then one byte at a time. */
  private updateBytes(data: Uint8Array, start: number, end: number): this {
    let hi = this.hi;
    let lo = this.lo;
    let i = start;
    const th = TABLE_HI;
    const tl = TABLE_LO;
    // Eight bytes at a time: the low half meets bytes 0-3, the high half bytes 4-7.
    for (const stop = end - 8; i <= stop; i += 8) {
      const a = (lo ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
      const b = (hi ^ (data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24))) >>> 0;
      const i7 = 7 * 256 + (a & 0xff), i6 = 6 * 256 + ((a >>> 8) & 0xff);
      const i5 = 5 * 256 + ((a >>> 16) & 0xff), i4 = 4 * 256 + (a >>> 24);
      const i3 = 3 * 256 + (b & 0xff), i2 = 2 * 256 + ((b >>> 8) & 0xff);
      const i1 = 256 + ((b >>> 16) & 0xff), i0 = b >>> 24;
      hi = th[i7]! ^ th[i6]! ^ th[i5]! ^ th[i4]! ^ th[i3]! ^ th[i2]! ^ th[i1]! ^ th[i0]!;
      lo = tl[i7]! ^ tl[i6]! ^ tl[i5]! ^ tl[i4]! ^ tl[i3]! ^ tl[i2]! ^ tl[i1]! ^ tl[i0]!;
    }
    for (; i < end; i++) {
      const index = (lo ^ data[i]!) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ tl[index]!;
      hi = (hi >>> 8) ^ th[index]!;
    }
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
    return this;
  }

  digest(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** The CRC as Redis stores it: 8 bytes, little-endian. */
  digestBytes(): Buffer {
    const out = Buffer.allocUnsafe(8);
    this.writeDigest(out, 0);
    return out;
  }

  /** The same 8 bytes written into `target` at `at`. */
  writeDigest(target: Buffer, at: number): void {
    target.writeUInt32LE(this.lo, at);
    target.writeUInt32LE(this.hi, at + 4);
  }
}

export function crc64(...parts: Uint8Array[]): bigint {
  const crc = new Crc64();
  for (const part of parts) crc.update(part);
  return crc.digest();
}

/** "0xe9c6d914c4b8d9ca": how error messages show a CRC. */
export function crcHex(crc: bigint): string {
  return `0x${crc.toString(16).padStart(16, '0')}`;
}
