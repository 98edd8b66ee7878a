// Decodes a stream value (RDB_TYPE_STREAM_LISTPACKS 1 to 3): the entries from the radix tree's listpacks
// (t_stream.c's master entry and delta-encoded IDs), the metadata, and every consumer group with its PEL.
import type { ByteCursor } from './cursor.js';
import { LENGTH_MINUS_ONE, readLength, readLengthBigint, readString } from './encodings.js';
import { RdbFormatError } from './errors.js';
import { itemInteger, itemText, listpackItems, type PackedItem } from './packed.js';

export interface StreamValue {
  /** [ID, [field, value, field, value, ...]] in ID order; deleted entries left out. */
  entries: [string, Buffer[]][];
  length: number;
  lastId: string;
  /** Saved from Redis 7.0 on (stream layout 2); undefined in older files. */
  firstId?: string;
  maxDeletedEntryId?: string;
  entriesAdded?: number;
  groups: StreamGroup[];
  /** Redis 8.6+: how many idempotent producers (XADD IDMP) the stream remembers IDs of; undefined before. */
  idmpProducers?: number;
}

export interface StreamGroup {
  name: Buffer;
  lastDeliveredId: string;
  /** null where Redis does not know it (saved as -1); undefined in files before Redis 7.0. */
  entriesRead?: number | null;
  pending: StreamPendingEntry[];
  consumers: StreamConsumer[];
}

export interface StreamPendingEntry {
  id: string;
  /** The consumer that holds it; null only in a corrupt file. */
  consumer: Buffer | null;
  deliveryCount: number;
  /** ms since the epoch of the last delivery. */
  deliveryTime: number;
}

export interface StreamConsumer {
  name: Buffer;
  seenTime: number;
  /** Saved from Redis 7.2 on (stream layout 3). */
  activeTime?: number;
  /** IDs of the pending entries it holds. */
  pending: string[];
}

const FLAG_DELETED = 1n;
const FLAG_SAMEFIELDS = 2n;
const STREAM_ID_BYTES = 16;

/** A raw 128-bit ID: milliseconds and sequence, 64 bits each, big-endian. */
function rawId(bytes: Buffer): string {
  if (bytes.length !== STREAM_ID_BYTES) throw new RdbFormatError(`a stream ID of ${bytes.length} bytes, not ${STREAM_ID_BYTES}`);
  return `${bytes.readBigUInt64BE(0)}-${bytes.readBigUInt64BE(8)}`;
}

function lengthId(c: ByteCursor): string {
  const ms = readLengthBigint(c);
  return `${ms}-${readLengthBigint(c)}`;
}

export function decodeStream(c: ByteCursor, layout: 1 | 2 | 3 | 4): StreamValue {
  const entries: [string, Buffer[]][] = [];
  const nodes = readLength(c);
  for (let i = 0; i < nodes; i++) {
    const master = readString(c);
    if (master.length !== STREAM_ID_BYTES) throw new RdbFormatError(`stream node key of ${master.length} bytes ${c.at()}, not ${STREAM_ID_BYTES}`);
    nodeEntries(master.readBigUInt64BE(0), master.readBigUInt64BE(8), listpackItems(readString(c)), entries);
  }
  const length = readLength(c);
  const lastId = lengthId(c);
  const stream: StreamValue = { entries, length, lastId, groups: [] };
  if (layout >= 2) {
    stream.firstId = lengthId(c);
    stream.maxDeletedEntryId = lengthId(c);
    stream.entriesAdded = readLength(c);
  }
  const groups = readLength(c);
  for (let i = 0; i < groups; i++) stream.groups.push(consumerGroup(c, layout));
  if (layout === 4) stream.idmpProducers = skipIdmp(c);
  return stream;
}

/** Redis 8.6's IDMP state, which only a server of its version can hold: walked past; its producer count returned. */
function skipIdmp(c: ByteCursor): number {
  readLength(c); // how long IDs are remembered
  readLength(c); // how many per producer
  const producers = readLength(c);
  for (let i = 0; i < producers; i++) {
    readString(c);
    const ids = readLength(c);
    for (let j = 0; j < ids; j++) {
      readString(c);
      lengthId(c);
    }
  }
  readLength(c); // IDs added, ever
  readLength(c); // duplicates refused, ever
  return producers;
}

/** One listpack node: the master entry (count, deleted, fields, 0), then entries relative to the node's ID. */
function nodeEntries(masterMs: bigint, masterSeq: bigint, items: PackedItem[], out: [string, Buffer[]][]): void {
  let i = 0;
  const next = (what: string): PackedItem => {
    const item = items[i++];
    if (item === undefined) throw new RdbFormatError(`stream listpack ends before its ${what}`);
    return item;
  };
  const integer = (what: string): bigint => itemInteger(next(what), `stream ${what}`);
  integer('entry count');
  integer('deleted count');
  const masterFields: PackedItem[] = [];
  const fieldCount = Number(integer('master field count'));
  for (let f = 0; f < fieldCount; f++) masterFields.push(next('master field'));
  integer('master entry terminator');
  while (i < items.length) {
    const flags = integer('entry flags');
    const msDelta = integer('entry ID');
    const seqDelta = integer('entry ID');
    const id = `${masterMs + msDelta}-${masterSeq + seqDelta}`;
    const fieldsAndValues: Buffer[] = [];
    if (flags & FLAG_SAMEFIELDS) {
      for (const field of masterFields) fieldsAndValues.push(itemText(field), itemText(next('entry value')));
    } else {
      const count = Number(integer('entry field count'));
      for (let f = 0; f < 2 * count; f++) fieldsAndValues.push(itemText(next('entry field')));
    }
    integer('entry lp-count');
    if (!(flags & FLAG_DELETED)) out.push([id, fieldsAndValues]);
  }
}

function consumerGroup(c: ByteCursor, layout: 1 | 2 | 3 | 4): StreamGroup {
  const name = readString(c);
  const lastDeliveredId = lengthId(c);
  const group: StreamGroup = { name, lastDeliveredId, pending: [], consumers: [] };
  if (layout >= 2) {
    const read = readLengthBigint(c);
    group.entriesRead = read === LENGTH_MINUS_ONE ? null : Number(read);
  }
  const byId = new Map<string, StreamPendingEntry>();
  const pendingCount = readLength(c);
  for (let p = 0; p < pendingCount; p++) {
    const id = rawId(c.bytes(STREAM_ID_BYTES));
    const deliveryTime = c.i64le();
    const entry: StreamPendingEntry = { id, consumer: null, deliveryCount: readLength(c), deliveryTime };
    group.pending.push(entry);
    byId.set(id, entry);
  }
  const consumerCount = readLength(c);
  for (let k = 0; k < consumerCount; k++) {
    const consumer: StreamConsumer = { name: readString(c), seenTime: c.i64le(), pending: [] };
    if (layout >= 3) consumer.activeTime = c.i64le();
    const owned = readLength(c);
    for (let p = 0; p < owned; p++) {
      const at = c.offset;
      const id = rawId(c.bytes(STREAM_ID_BYTES));
      const entry = byId.get(id);
      if (!entry) throw new RdbFormatError(`consumer's pending entry ${id} ${c.at(at)} is not in its group's PEL`);
      entry.consumer = consumer.name;
      consumer.pending.push(id);
    }
    group.consumers.push(consumer);
  }
  return group;
}
