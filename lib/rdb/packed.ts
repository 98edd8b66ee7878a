// The compact blobs small values are saved as: listpack (listpack.c), ziplist (ziplist.c), intset (intset.c)
// and zipmap (zipmap.c). Each decoder takes the whole blob and returns its items; strings are views into it.
import { RdbFormatError } from './errors.js';

/** One packed item: a string, or an integer the blob stored as a number. */
export type PackedItem = Buffer | bigint;

/** An item as Redis returns it over the wire: integers as their decimal text. */
export function itemText(item: PackedItem): Buffer {
  return typeof item === 'bigint' ? Buffer.from(item.toString()) : item;
}

/** An item that must be an integer (stream IDs and counts, field expiry times). */
export function itemInteger(item: PackedItem | undefined, what: string): bigint {
  if (typeof item === 'bigint') return item;
  if (item !== undefined && /^-?[0-9]+$/.test(item.toString('latin1'))) return BigInt(item.toString('latin1'));
  throw new RdbFormatError(`${what} is not an integer`);
}

function corrupt(format: string, reason: string, at: number): never {
  throw new RdbFormatError(`bad ${format}: ${reason} at byte ${at} of the ${format}`);
}

function within(blob: Buffer, format: string, at: number, count: number): void {
  if (at + count > blob.length) corrupt(format, `entry runs past the end (${blob.length} bytes)`, at);
}

// ---- listpack ----

const LP_HEADER = 6;
const LP_EOF = 0xff;

/** How many bytes a listpack entry's back-length takes, for an entry of `length` bytes (lpEncodeBacklen). */
function backlenSize(length: number): number {
  if (length <= 127) return 1;
  if (length < 16383) return 2;
  if (length < 2097151) return 3;
  if (length < 268435455) return 4;
  return 5;
}

export function listpackItems(lp: Buffer): PackedItem[] {
  const format = 'listpack';
  if (lp.length < LP_HEADER + 1) corrupt(format, `only ${lp.length} bytes`, 0);
  const total = lp.readUInt32LE(0);
  if (total !== lp.length) corrupt(format, `header says ${total} bytes, blob has ${lp.length}`, 0);
  const items: PackedItem[] = [];
  let p = LP_HEADER;
  for (;;) {
    within(lp, format, p, 1);
    const b = lp[p]!;
    if (b === LP_EOF) break;
    let size: number; // encoding + data, without the back-length
    if (b < 0x80) {
      items.push(BigInt(b));
      size = 1;
    } else if ((b & 0xc0) === 0x80) {
      const length = b & 0x3f;
      within(lp, format, p, 1 + length);
      items.push(lp.subarray(p + 1, p + 1 + length));
      size = 1 + length;
    } else if ((b & 0xe0) === 0xc0) {
      within(lp, format, p, 2);
      const raw = ((b & 0x1f) << 8) | lp[p + 1]!;
      items.push(BigInt(raw >= 4096 ? raw - 8192 : raw));
      size = 2;
    } else if ((b & 0xf0) === 0xe0) {
      within(lp, format, p, 2);
      const length = ((b & 0x0f) << 8) | lp[p + 1]!;
      within(lp, format, p, 2 + length);
      items.push(lp.subarray(p + 2, p + 2 + length));
      size = 2 + length;
    } else if (b === 0xf0) {
      within(lp, format, p, 5);
      const length = lp.readUInt32LE(p + 1);
      within(lp, format, p, 5 + length);
      items.push(lp.subarray(p + 5, p + 5 + length));
      size = 5 + length;
    } else if (b === 0xf1) {
      within(lp, format, p, 3);
      items.push(BigInt(lp.readInt16LE(p + 1)));
      size = 3;
    } else if (b === 0xf2) {
      within(lp, format, p, 4);
      items.push(BigInt(lp.readIntLE(p + 1, 3)));
      size = 4;
    } else if (b === 0xf3) {
      within(lp, format, p, 5);
      items.push(BigInt(lp.readInt32LE(p + 1)));
      size = 5;
    } else if (b === 0xf4) {
      within(lp, format, p, 9);
      items.push(lp.readBigInt64LE(p + 1));
      size = 9;
    } else {
      corrupt(format, `unknown entry encoding 0x${b.toString(16)}`, p);
    }
    p += size + backlenSize(size);
  }
  if (p !== lp.length - 1) corrupt(format, `end marker before the stated end`, p);
  const count = lp.readUInt16LE(4);
  if (count !== 0xffff && count !== items.length) corrupt(format, `header says ${count} entries, found ${items.length}`, 4);
  return items;
}

// ---- ziplist ----

const ZL_HEADER = 10;
const ZL_END = 0xff;
const ZL_BIG_PREVLEN = 254;

export function ziplistItems(zl: Buffer): PackedItem[] {
  const format = 'ziplist';
  if (zl.length < ZL_HEADER + 1) corrupt(format, `only ${zl.length} bytes`, 0);
  const total = zl.readUInt32LE(0);
  if (total !== zl.length) corrupt(format, `header says ${total} bytes, blob has ${zl.length}`, 0);
  const items: PackedItem[] = [];
  let p = ZL_HEADER;
  for (;;) {
    within(zl, format, p, 1);
    if (zl[p] === ZL_END) break;
    p += zl[p]! >= ZL_BIG_PREVLEN ? 5 : 1; // the previous entry's length, only used to walk backwards
    within(zl, format, p, 1);
    const enc = zl[p]!;
    const kind = enc >> 6;
    if (kind < 3) {
      let length: number;
      let header: number;
      if (kind === 0) {
        length = enc & 0x3f;
        header = 1;
      } else if (kind === 1) {
        within(zl, format, p, 2);
        length = ((enc & 0x3f) << 8) | zl[p + 1]!;
        header = 2;
      } else {
        within(zl, format, p, 5);
        length = zl.readUInt32BE(p + 1);
        header = 5;
      }
      within(zl, format, p, header + length);
      items.push(zl.subarray(p + header, p + header + length));
      p += header + length;
      continue;
    }
    p += 1;
    if (enc === 0xc0) {
      within(zl, format, p, 2);
      items.push(BigInt(zl.readInt16LE(p)));
      p += 2;
    } else if (enc === 0xd0) {
      within(zl, format, p, 4);
      items.push(BigInt(zl.readInt32LE(p)));
      p += 4;
    } else if (enc === 0xe0) {
      within(zl, format, p, 8);
      items.push(zl.readBigInt64LE(p));
      p += 8;
    } else if (enc === 0xf0) {
      within(zl, format, p, 3);
      items.push(BigInt(zl.readIntLE(p, 3)));
      p += 3;
    } else if (enc === 0xfe) {
      within(zl, format, p, 1);
      items.push(BigInt(zl.readInt8(p)));
      p += 1;
    } else if (enc >= 0xf1 && enc <= 0xfd) {
      items.push(BigInt((enc & 0x0f) - 1)); // immediate 0..12, no data bytes
    } else {
      corrupt(format, `unknown entry encoding 0x${enc.toString(16)}`, p - 1);
    }
  }
  if (p !== zl.length - 1) corrupt(format, 'end marker before the stated end', p);
  const count = zl.readUInt16LE(8);
  if (count !== 0xffff && count !== items.length) corrupt(format, `header says ${count} entries, found ${items.length}`, 8);
  return items;
}

// ---- intset ----

export function intsetItems(set: Buffer): bigint[] {
  const format = 'intset';
  if (set.length < 8) corrupt(format, `only ${set.length} bytes`, 0);
  const width = set.readUInt32LE(0);
  const count = set.readUInt32LE(4);
  if (width !== 2 && width !== 4 && width !== 8) corrupt(format, `unknown integer width ${width}`, 0);
  if (set.length !== 8 + width * count) corrupt(format, `${count} integers of ${width} bytes do not fill ${set.length} bytes`, 4);
  const items: bigint[] = [];
  for (let i = 0, p = 8; i < count; i++, p += width) {
    if (width === 2) items.push(BigInt(set.readInt16LE(p)));
    else if (width === 4) items.push(BigInt(set.readInt32LE(p)));
    else items.push(set.readBigInt64LE(p));
  }
  return items;
}

// ---- zipmap (hashes from Redis 2.x files) ----

const ZM_BIGLEN = 254;
const ZM_END = 255;

export function zipmapPairs(zm: Buffer): [Buffer, Buffer][] {
  const format = 'zipmap';
  const pairs: [Buffer, Buffer][] = [];
  let p = 1; // the first byte is a count that saturates at 254: not to be trusted
  const readLengthAt = (): number => {
    within(zm, format, p, 1);
    const first = zm[p]!;
    if (first < ZM_BIGLEN) {
      p += 1;
      return first;
    }
    within(zm, format, p, 5);
    const length = zm.readUInt32LE(p + 1);
    p += 5;
    return length;
  };
  for (;;) {
    within(zm, format, p, 1);
    if (zm[p] === ZM_END) break;
    const keyLength = readLengthAt();
    within(zm, format, p, keyLength);
    const field = zm.subarray(p, p + keyLength);
    p += keyLength;
    const valueLength = readLengthAt();
    within(zm, format, p, 1);
    const free = zm[p]!; // unused bytes left after the value by an in-place update
    p += 1;
    within(zm, format, p, valueLength + free);
    pairs.push([field, zm.subarray(p, p + valueLength)]);
    p += valueLength + free;
  }
  if (p !== zm.length - 1) corrupt(format, 'end marker before the end of the blob', p);
  return pairs;
}
