// Decodes a record's value bytes (type byte + value, as the reader yields them) into what the key holds:
// for tests and for copying type by type. Integers in compact encodings come back as decimal text, as Redis sends them.
import { valueCursor, type ByteCursor } from './cursor.js';
import { readLength, readLengthBigint, readString, readTextDouble, parseScore } from './encodings.js';
import { RdbFormatError } from './errors.js';
import { intsetItems, itemInteger, itemText, listpackItems, ziplistItems, zipmapPairs, type PackedItem } from './packed.js';
import { decodeStream, type StreamValue } from './decode-stream.js';
import { isValkeyFormat, MODULE_OPCODE, QUICKLIST_NODE, RDB_TYPE, moduleTypeName, VALKEY_HASH_2 } from './types.js';

export type { StreamValue, StreamGroup, StreamConsumer, StreamPendingEntry } from './decode-stream.js';

export type RdbValue =
  | { type: 'string'; value: Buffer }
  | { type: 'list'; value: Buffer[] }
  /** In the order saved, which is no order. */
  | { type: 'set'; value: Buffer[] }
  /** By score, then member bytes: ZRANGE's order. */
  | { type: 'zset'; value: [Buffer, number][] }
  /** fieldExpireAt (absolute ms, -1 for none, one per field) only for the hash types with field expiries. */
  | { type: 'hash'; value: [Buffer, Buffer][]; fieldExpireAt?: number[] }
  | { type: 'stream'; value: StreamValue }
  /** A module's value cannot be decoded without the module: its type name and encoding version. */
  | { type: 'module'; value: { moduleType: string; encodingVersion: number } };

const NO_FIELD_EXPIRY = 0; // HASH_LP_NO_TTL, and a relative TTL of 0 in HASH_METADATA

/**
 * Decodes a whole value written in RDB `version` (which tells Valkey 9's types from Redis's); throws RdbFormatError
 * naming the offset within the value if it is malformed.
 */
export function decodeValue(value: Buffer, version = 0): RdbValue {
  const c = valueCursor(value, 1, (need) => {
    throw new RdbFormatError(`value ends at byte ${value.length}, its layout needs bytes up to ${need} (cut short?)`);
  });
  const type = value[0];
  if (type === undefined) throw new RdbFormatError('an empty value has no type byte');
  const decoded = isValkeyFormat(version) && type >= VALKEY_HASH_2 ? decodeValkeyBody(type, c) : decodeBody(type, c);
  const extra = value.length - c.pos;
  if (extra !== 0) throw new RdbFormatError(`value of type ${type} has ${extra} ${extra === 1 ? 'byte' : 'bytes'} left over ${c.at()}`);
  return decoded;
}

function decodeBody(type: number, c: ByteCursor): RdbValue {
  switch (type) {
    case RDB_TYPE.STRING:
      return { type: 'string', value: readString(c) };
    case RDB_TYPE.LIST:
      return { type: 'list', value: repeat(c, () => readString(c)) };
    case RDB_TYPE.SET:
      return { type: 'set', value: repeat(c, () => readString(c)) };
    case RDB_TYPE.ZSET:
      return zset(repeat(c, (): [Buffer, number] => [readString(c), readTextDouble(c)]));
    case RDB_TYPE.ZSET_2:
      return zset(repeat(c, (): [Buffer, number] => [readString(c), c.f64le()]));
    case RDB_TYPE.HASH:
      return { type: 'hash', value: repeat(c, (): [Buffer, Buffer] => [readString(c), readString(c)]) };
    case RDB_TYPE.HASH_ZIPMAP:
      return { type: 'hash', value: zipmapPairs(readString(c)) };
    case RDB_TYPE.LIST_ZIPLIST:
      return { type: 'list', value: ziplistItems(readString(c)).map(itemText) };
    case RDB_TYPE.SET_INTSET:
      return { type: 'set', value: intsetItems(readString(c)).map((n) => Buffer.from(n.toString())) };
    case RDB_TYPE.SET_LISTPACK:
      return { type: 'set', value: listpackItems(readString(c)).map(itemText) };
    case RDB_TYPE.ZSET_ZIPLIST:
      return zset(scorePairs(ziplistItems(readString(c))));
    case RDB_TYPE.ZSET_LISTPACK:
      return zset(scorePairs(listpackItems(readString(c))));
    case RDB_TYPE.HASH_ZIPLIST:
      return { type: 'hash', value: fieldValuePairs(ziplistItems(readString(c))) };
    case RDB_TYPE.HASH_LISTPACK:
      return { type: 'hash', value: fieldValuePairs(listpackItems(readString(c))) };
    case RDB_TYPE.LIST_QUICKLIST:
      return { type: 'list', value: repeat(c, () => ziplistItems(readString(c)).map(itemText)).flat() };
    case RDB_TYPE.LIST_QUICKLIST_2:
      return { type: 'list', value: repeat(c, () => quicklistNode(c)).flat() };
    case RDB_TYPE.HASH_METADATA_PRE_GA:
      return hashWithExpiries(c, null);
    case RDB_TYPE.HASH_METADATA:
      return hashWithExpiries(c, c.i64le());
    case RDB_TYPE.HASH_LISTPACK_EX_PRE_GA:
      return listpackHashWithExpiries(readString(c));
    case RDB_TYPE.HASH_LISTPACK_EX:
      c.skip(8); // the minimum field expiry, which the triples repeat
      return listpackHashWithExpiries(readString(c));
    case RDB_TYPE.STREAM_LISTPACKS:
      return { type: 'stream', value: decodeStream(c, 1) };
    case RDB_TYPE.STREAM_LISTPACKS_2:
      return { type: 'stream', value: decodeStream(c, 2) };
    case RDB_TYPE.STREAM_LISTPACKS_3:
      return { type: 'stream', value: decodeStream(c, 3) };
    case RDB_TYPE.STREAM_LISTPACKS_4:
      return { type: 'stream', value: decodeStream(c, 4) };
    case RDB_TYPE.MODULE_2:
      return { type: 'module', value: moduleValue(c) };
  }
  throw new RdbFormatError(`cannot decode value type ${type}`);
}

/** Valkey 9's own types: HASH_2, per field its name, value and absolute expiry (-1 for none). */
function decodeValkeyBody(type: number, c: ByteCursor): RdbValue {
  if (type !== VALKEY_HASH_2) throw new RdbFormatError(`cannot decode value type ${type} of a Valkey file`);
  const value: [Buffer, Buffer][] = [];
  const fieldExpireAt: number[] = [];
  const count = readLength(c);
  for (let i = 0; i < count; i++) {
    value.push([readString(c), readString(c)]);
    fieldExpireAt.push(c.i64le());
  }
  return { type: 'hash', value, fieldExpireAt };
}

function repeat<T>(c: ByteCursor, one: () => T): T[] {
  const count = readLength(c);
  const out: T[] = [];
  for (let i = 0; i < count; i++) out.push(one());
  return out;
}

function fieldValuePairs(items: PackedItem[]): [Buffer, Buffer][] {
  if (items.length % 2 !== 0) throw new RdbFormatError(`${items.length} packed items do not make field-value pairs`);
  const out: [Buffer, Buffer][] = [];
  for (let i = 0; i < items.length; i += 2) out.push([itemText(items[i]!), itemText(items[i + 1]!)]);
  return out;
}

function scorePairs(items: PackedItem[]): [Buffer, number][] {
  if (items.length % 2 !== 0) throw new RdbFormatError(`${items.length} packed items do not make member-score pairs`);
  const out: [Buffer, number][] = [];
  for (let i = 0; i < items.length; i += 2) {
    const score = items[i + 1]!;
    out.push([itemText(items[i]!), typeof score === 'bigint' ? Number(score) : parseScore(score.toString('latin1'))]);
  }
  return out;
}

function zset(entries: [Buffer, number][]): RdbValue {
  // Skiplists are saved from the highest score down; sorting gives ZRANGE's order for every encoding.
  entries.sort(([ma, sa], [mb, sb]) => (sa < sb ? -1 : sa > sb ? 1 : Buffer.compare(ma, mb)));
  return { type: 'zset', value: entries };
}

function quicklistNode(c: ByteCursor): Buffer[] {
  const start = c.offset;
  const container = readLength(c);
  const node = readString(c);
  if (container === QUICKLIST_NODE.PLAIN) return [node];
  if (container === QUICKLIST_NODE.PACKED) return listpackItems(node).map(itemText);
  throw new RdbFormatError(`unknown quicklist node container ${container} ${c.at(start)}`);
}

/**
 * HASH_METADATA: [ttl][field][value] per field, ttl 0 for none. The GA format stores ttl relative to the
 * minimum expiry saved first (plus one, so 0 stays free); the pre-GA one (minExpire null) stores it absolute.
 */
function hashWithExpiries(c: ByteCursor, minExpire: number | null): RdbValue {
  const value: [Buffer, Buffer][] = [];
  const fieldExpireAt: number[] = [];
  const count = readLength(c);
  for (let i = 0; i < count; i++) {
    const ttl = readLength(c);
    value.push([readString(c), readString(c)]);
    fieldExpireAt.push(ttl === NO_FIELD_EXPIRY ? -1 : minExpire === null ? ttl : ttl + minExpire - 1);
  }
  return { type: 'hash', value, fieldExpireAt };
}

function listpackHashWithExpiries(lp: Buffer): RdbValue {
  const items = listpackItems(lp);
  if (items.length % 3 !== 0) throw new RdbFormatError(`${items.length} listpack items do not make field-value-expiry triples`);
  const value: [Buffer, Buffer][] = [];
  const fieldExpireAt: number[] = [];
  for (let i = 0; i < items.length; i += 3) {
    value.push([itemText(items[i]!), itemText(items[i + 1]!)]);
    const at = Number(itemInteger(items[i + 2], 'a hash field expiry'));
    fieldExpireAt.push(at === NO_FIELD_EXPIRY ? -1 : at);
  }
  return { type: 'hash', value, fieldExpireAt };
}

/** Walks a module value to its end; its content means nothing without the module. */
function moduleValue(c: ByteCursor): { moduleType: string; encodingVersion: number } {
  const { name, encodingVersion } = moduleTypeName(readLengthBigint(c));
  for (;;) {
    const start = c.offset;
    const opcode = readLength(c);
    if (opcode === MODULE_OPCODE.EOF) break;
    if (opcode === MODULE_OPCODE.SINT || opcode === MODULE_OPCODE.UINT) readLengthBigint(c);
    else if (opcode === MODULE_OPCODE.FLOAT) c.skip(4);
    else if (opcode === MODULE_OPCODE.DOUBLE) c.skip(8);
    else if (opcode === MODULE_OPCODE.STRING) readString(c);
    else throw new RdbFormatError(`unknown module value opcode ${opcode} ${c.at(start)}`);
  }
  return { moduleType: name, encodingVersion };
}
