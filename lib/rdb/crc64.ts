// CRC-64/Jones as Redis computes it (crc64.c): reflected, polynomial 0xad93d23594c935a9, init 0, no final xor.
// It checks whole RDB files and DUMP payloads; table-driven (slicing by 8) on 32-bit halves, since bigint is slow.

/** The reflected polynomial, as two 32-bit halves. */
const POLY_HI = 0x95ac9329;
const POLY_LO = 0xac4bc9b5;

/** TABLE_HI[k * 256 + b] / TABLE_LO[...]: the CRC of byte b followed by k zero bytes (slicing by 8). */
const TABLE_HI = new Uint32Array(8 * 256);
const TABLE_LO = new Uint32Array(8 * 256);

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
  for (let k = 1; k < 8; k++) {
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
