// Reads an RDB file front to back in fixed-size chunks and yields its keys, a few hundred at a time: database,
// name, expiry and value bytes exactly as saved (a DUMP payload once footed). Checks the header and the final CRC-64.
import { open } from 'node:fs/promises';
import type { ByteCursor, ShortHandler } from './cursor.js';
import { crcHex } from './crc64.js';
import { readLength, readLengthBigint, readString, stringBodyLength } from './encodings.js';
import { RdbFormatError, showBytes } from './errors.js';
import { FileWindow, type RdbInput } from './file-window.js';
import { endsWithChecksum, HEADER_BYTES, rdbVersionOf } from './header.js';
import { isValkeyFormat, MODULE_OPCODE, moduleTypeName, RDB_OPCODE, RDB_TYPE, VALKEY_SLOT_IMPORT } from './types.js';

/** Redis 8.6's RDB version, the first with module key metadata (opcode 0xf3). */
const KEY_META_VERSION = 13;
import { layoutOf, MODULE_AUX_BODY, ValueScanner, type Step } from './value-scan.js';

export { RdbFormatError } from './errors.js';

export interface RdbKey {
  db: number;
  key: Buffer;
  /** absolute ms, or -1 */
  expireAt: number;
  type: number;
  /** type byte + value bytes as in the file */
  value: Buffer;
  /** The file's RDB version, which a payload of these bytes is stamped with. */
  rdbVersion: number;
}

export interface RdbHeader {
  version: number;
  aux: Map<string, Buffer>;
}

export interface RdbReadOptions {
  chunkBytes?: number;
  /** called once the header is read */
  onHeader?: (h: RdbHeader) => void;
  /** FUNCTION2 library code */
  onFunction?: (code: Buffer) => void;
  /** Module auxiliary data (a module's global state, not a key's), by module name: no command can write it elsewhere. */
  onModuleAux?: (module: string) => void;
  /** Whether to check the file's final CRC-64 (default true): off when the caller has checked it already. */
  checksum?: boolean;
}

const DEFAULT_CHUNK_BYTES = 1 << 20;
/** A yielded batch of keys ends at this many keys or value bytes: async steps per batch, not per key. */
const BATCH_KEYS = 512;
const BATCH_BYTES = 1 << 20;
const CHECKSUM_BYTES = 8;

/** Thrown by a cursor that ran out of window: not an error, a request for bytes up to `need`. */
class NeedMore {
  constructor(readonly need: number) {}
}
const needMore: ShortHandler = (need) => {
  throw new NeedMore(need);
};

/** What one opcode or key header at the current offset turned out to be. */
type Item =
  | { kind: 'aux'; name: string; value: Buffer }
  | { kind: 'selectdb'; db: number }
  | { kind: 'expire'; at: number }
  | { kind: 'function'; code: Buffer }
  | { kind: 'module-aux'; module: string }
  | { kind: 'hint' } // RESIZEDB, SLOT_INFO, IDLE, FREQ: sizing and eviction data a copy does not need
  | { kind: 'eof' }
  | { kind: 'key'; type: number; layout: readonly Step[]; key: Buffer };
/** An item and the offset just past it. */
type Parsed = Item & { end: number };

/** The file's keys one at a time (readRdbBatches, flattened). */
export async function* readRdb(path: string, options: RdbReadOptions = {}): AsyncGenerator<RdbKey> {
  for await (const batch of readRdbBatches(path, options)) yield* batch;
}

/**
 * The file's keys in file order, in batches of at most BATCH_KEYS keys or BATCH_BYTES of values (a bigger
 * value alone). A key whose bytes the window holds is read without awaiting anything.
 */
export async function* readRdbBatches(path: string, options: RdbReadOptions = {}): AsyncGenerator<RdbKey[]> {
  const file = await open(path, 'r');
  yield* readRdbInput({ read: (...args) => file.read(...args), size: (await file.stat()).size, rereadable: true, close: () => file.close() }, options);
}

/** readRdbBatches over any input: a file, or a stream (a replication link) read once, front to back. It closes the input. */
export async function* readRdbInput(input: RdbInput, options: RdbReadOptions = {}): AsyncGenerator<RdbKey[]> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  try {
    if (!Number.isInteger(chunkBytes) || chunkBytes < 64) throw new RangeError(`chunkBytes must be an integer of at least 64, not ${chunkBytes}`);
    const window = new FileWindow(input, chunkBytes, options.checksum !== false);
    const header: RdbHeader = { version: await readVersion(window), aux: new Map() };
    let headerDone = false;
    let db = 0;
    let expireAt = -1;
    let batch: RdbKey[] = [];
    let bytes = 0;
    for (let at = HEADER_BYTES; ;) {
      const item = itemAt(window, at, header.version) ?? (await nextItem(window, at, headerDone, header.version));
      const { end } = item;
      if (!headerDone && item.kind !== 'aux') {
        headerDone = true;
        options.onHeader?.(header);
      }
      at = end;
      switch (item.kind) {
        case 'aux':
          header.aux.set(item.name, item.value);
          break;
        case 'selectdb':
          db = item.db;
          break;
        case 'expire':
          expireAt = item.at;
          break;
        case 'function':
          options.onFunction?.(item.code);
          break;
        case 'module-aux':
          options.onModuleAux?.(item.module);
          at = await scanToEnd(window, MODULE_AUX_BODY, end, 'inside module AUX data');
          break;
        case 'eof':
          if (options.checksum !== false && endsWithChecksum(header.version)) await checkChecksum(window, end);
          if (batch.length > 0) yield batch;
          return;
        case 'key': {
          at = valueEndAt(window, item.layout, end) ?? (await scanToEnd(window, item.layout, end, item.key));
          const value = window.holds(end, at) ? copyValue(window, item.type, end, at) : await captureValue(window, item.type, end, at, item.key);
          batch.push({ db, key: item.key, expireAt, type: item.type, value, rdbVersion: header.version });
          bytes += value.length;
          expireAt = -1; // an expiry belongs to the one key after it
          if (batch.length >= BATCH_KEYS || bytes >= BATCH_BYTES) {
            yield batch;
            batch = [];
            bytes = 0;
          }
          break;
        }
      }
    }
  } finally {
    await input.close();
  }
}

/** The opcode or key header at `at` if the window holds all of it (the common case: no await). */
function itemAt(window: FileWindow, at: number, version: number): Parsed | undefined {
  try {
    return readItem(window.sharedCursor(at, needMore), version);
  } catch (err) {
    if (err instanceof NeedMore) return undefined;
    throw err;
  }
}

/** Where the value at `start` ends if the window holds all of it, else undefined (scanToEnd reads on). */
function valueEndAt(window: FileWindow, layout: readonly Step[], start: number): number | undefined {
  let end: number;
  try {
    const c = window.sharedCursor(start, needMore);
    if (layout.length === 1 && layout[0] === 'str') {
      // One string (a string value, every listpack and ziplist encoding): no scanner to allocate.
      const body = stringBodyLength(c);
      end = c.offset + body;
    } else {
      const scanner = new ValueScanner(layout, start);
      scanner.advance(c);
      end = scanner.at;
    }
  } catch (err) {
    if (err instanceof NeedMore) return undefined;
    throw err;
  }
  return end <= window.endOffset ? end : undefined;
}

/** The opcode or key header at `at`, reading more of the file until it is whole. */
async function nextItem(window: FileWindow, at: number, headerDone: boolean, version: number): Promise<Parsed> {
  for (;;) {
    try {
      return readItem(window.cursor(at, needMore), version);
    } catch (err) {
      if (!(err instanceof NeedMore)) throw err;
      await readUpTo(window, err.need, at, placeOfItem(window, at, headerDone));
    }
  }
}

async function readVersion(window: FileWindow): Promise<number> {
  await window.fill(Math.min(HEADER_BYTES, window.fileSize), 0);
  return rdbVersionOf(window.cursor(0, needMore).bytes(Math.min(HEADER_BYTES, window.fileSize)));
}

/** Parses the opcode or key header at the cursor in a file of RDB `version`; the cursor throws NeedMore if the window is too short. */
function readItem(c: ByteCursor, version: number): Parsed {
  const start = c.offset;
  const type = c.u8();
  if (type === VALKEY_SLOT_IMPORT && isValkeyFormat(version)) return slotImport(c);
  if (type === RDB_OPCODE.KEY_META && version >= KEY_META_VERSION && !isValkeyFormat(version)) {
    throw new RdbFormatError(`module key metadata (Redis 8.6's KEY_META, opcode 0xf3) ${c.at(start)}: not supported by this reader, try RDB_READER=server with a redis-server of that version`);
  }
  switch (type) {
    case RDB_OPCODE.AUX: {
      const name = readString(c).toString('latin1');
      return { kind: 'aux', name, value: readString(c, true), end: c.offset };
    }
    case RDB_OPCODE.SELECTDB:
      return { kind: 'selectdb', db: readLength(c), end: c.offset };
    case RDB_OPCODE.EXPIRETIME_MS:
      return { kind: 'expire', at: c.i64le(), end: c.offset };
    case RDB_OPCODE.EXPIRETIME:
      return { kind: 'expire', at: c.i32le() * 1000, end: c.offset };
    case RDB_OPCODE.RESIZEDB:
      readLength(c);
      readLength(c);
      return { kind: 'hint', end: c.offset };
    case RDB_OPCODE.SLOT_INFO:
      readLength(c); // slot
      readLength(c); // keys in it
      readLength(c); // of which with an expiry
      return { kind: 'hint', end: c.offset };
    case RDB_OPCODE.IDLE:
      readLength(c);
      return { kind: 'hint', end: c.offset };
    case RDB_OPCODE.FREQ:
      c.u8();
      return { kind: 'hint', end: c.offset };
    case RDB_OPCODE.FUNCTION2:
      return { kind: 'function', code: readString(c, true), end: c.offset };
    case RDB_OPCODE.FUNCTION_PRE_GA:
      throw new RdbFormatError(`function library in the pre-release format of Redis 7.0 release candidates (opcode 0xf6) ${c.at(start)}: not supported, save the file again with Redis 7.0 or later`);
    case RDB_OPCODE.MODULE_AUX: {
      const module = moduleTypeName(readLengthBigint(c)).name;
      const whenOpcode = readLength(c);
      if (whenOpcode !== MODULE_OPCODE.UINT) throw new RdbFormatError(`module AUX data ${c.at(start)} has opcode ${whenOpcode} where its "when" field belongs`);
      readLength(c); // when: before or after the keys
      return { kind: 'module-aux', module, end: c.offset };
    }
    case RDB_OPCODE.EOF:
      return { kind: 'eof', end: c.offset };
  }
  if (type === RDB_TYPE.MODULE_PRE_GA) {
    throw new RdbFormatError(`module value in the pre-release format of Redis 4.0 release candidates (type 6) ${c.at(start)}: not supported`);
  }
  const layout = layoutOf(type, version);
  if (!layout) throw new RdbFormatError(`unknown value type ${type} ${c.at(start)}${isValkeyFormat(version) ? ' of a Valkey file' : ''}`);
  return { kind: 'key', type, layout, key: readString(c, true), end: c.offset };
}

/** Valkey 9's record of a slot import in progress (cluster state, not keys): a job name, then slot ranges. */
function slotImport(c: ByteCursor): Parsed {
  readString(c);
  const ranges = readLength(c);
  for (let i = 0; i < ranges; i++) {
    readLength(c);
    readLength(c);
  }
  return { kind: 'hint', end: c.offset };
}

/** What the file was in the middle of at `at`, for a truncation message. */
function placeOfItem(window: FileWindow, at: number, headerDone: boolean): string {
  if (at >= window.fileSize) return 'before the EOF marker';
  if (!window.holds(at, at + 1)) return headerDone ? 'inside an opcode' : 'inside the header';
  const type = window.cursor(at, needMore).u8();
  if (type < RDB_OPCODE.SLOT_INFO) return 'inside a key';
  return headerDone ? 'inside an opcode' : 'inside the header';
}

const truncated = (window: FileWindow, where: string): RdbFormatError =>
  new RdbFormatError(`file ends at byte ${Number.isFinite(window.fileSize) ? window.fileSize : window.endOffset} ${where} (truncated?)`);

const insideKey = (key: Buffer): string => `inside key ${showBytes(key)}`;

/** Gets the window to hold bytes up to `need`, keeping from `keepFrom`; a file that ends first is truncated. */
async function readUpTo(window: FileWindow, need: number, keepFrom: number, where: string): Promise<void> {
  if (need > window.fileSize || !(await window.fill(need, keepFrom))) throw truncated(window, where);
}

/**
 * Walks a value from `start` to its end, reading chunks as needed (`place`: a key, or where the file is). The window keeps the value's first byte
 * while the value fits in it, so small values are copied from memory; a bigger one lets its scanned part go.
 */
async function scanToEnd(window: FileWindow, layout: readonly Step[], start: number, place: string | Buffer): Promise<number> {
  const where = typeof place === 'string' ? place : insideKey(place);
  const scanner = new ValueScanner(layout, start);
  let keepStart = true;
  for (;;) {
    try {
      scanner.advance(window.cursor(scanner.at, needMore));
      break;
    } catch (err) {
      if (!(err instanceof NeedMore)) throw err;
      // A stream cannot give the start again: its window grows to hold the value whole.
      if (keepStart && window.rereadable && err.need - start + window.chunkBytes > window.capacity) keepStart = false;
      await readUpTo(window, err.need, keepStart ? start : scanner.at, where);
    }
  }
  // The last field may be a string body skipped by arithmetic alone: it must still fit in the file.
  if (scanner.at > window.fileSize) throw truncated(window, where);
  return scanner.at;
}

/** The type byte and the value's bytes, copied out of the window, which holds them. */
function copyValue(window: FileWindow, type: number, start: number, end: number): Buffer {
  const value = Buffer.allocUnsafe(1 + end - start);
  value[0] = type;
  window.copyOut(start, end, value, 1);
  return value;
}

/** The type byte and the value's bytes, from the window if it still holds them, else read again by position. */
async function captureValue(window: FileWindow, type: number, start: number, end: number, key: Buffer): Promise<Buffer> {
  const value = Buffer.allocUnsafe(1 + end - start);
  value[0] = type;
  // A stream's window still holds the start (scanToEnd kept it): it reads on to the end.
  if (!window.holds(start, end) && !window.rereadable) await readUpTo(window, end, start, insideKey(key));
  if (window.holds(start, end)) window.copyOut(start, end, value, 1);
  else if (!(await window.readAt(start, value, 1))) throw truncated(window, insideKey(key));
  return value;
}

async function checkChecksum(window: FileWindow, eofEnd: number): Promise<void> {
  await readUpTo(window, eofEnd + CHECKSUM_BYTES, eofEnd, 'inside the checksum');
  const stored = window.cursor(eofEnd, needMore).bytes(CHECKSUM_BYTES).readBigUInt64LE(0);
  const computed = window.checksumUpTo(eofEnd);
  if (stored === 0n) return; // saved with rdbchecksum no
  if (stored !== computed) {
    throw new RdbFormatError(`CRC64 mismatch at byte ${eofEnd}: file says ${crcHex(stored)}, content gives ${crcHex(computed)} (the file is corrupt)`);
  }
}
