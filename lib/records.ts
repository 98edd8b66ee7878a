// The seam between sources and writers: what a source yields (batches of records, their place in the scan
// beside them) and what a writer returns (one outcome per key), with the counts a run keeps of them.
// A leaf: it imports nothing from the rest of lib/.

/** A key's value as an .rdb file holds it: its type byte and bytes as saved, a DUMP payload once footed. */
export interface StoredValue {
  /** Absolute ms, or -1. */
  expireAt: number;
  type: number;
  value: Buffer;
  /** The file's RDB version. */
  rdbVersion: number;
}

/**
 * KEY_PREFIX_STRIP and KEY_PREFIX_ADD: a key's name on the target, and back. Byte for byte; a source key without
 * the prefix to strip is not the run's. Without either prefix, every name is its own.
 */
export class KeyNames {
  readonly renames: boolean;

  constructor(readonly strip: Buffer, readonly add: Buffer) {
    this.renames = strip.length > 0 || add.length > 0;
  }

  /** A source key the run covers: it starts with the prefix to strip. */
  covers(key: Uint8Array): boolean {
    return startsWith(key, this.strip);
  }

  /** The key's name on the target. */
  toTarget(key: Buffer): Buffer {
    return this.renames ? Buffer.concat([this.add, key.subarray(this.strip.length)]) : key;
  }

  /** The source name of a key on the target; undefined for a target key no source key of the run becomes. */
  toSource(key: Buffer): Buffer | undefined {
    if (!this.renames) return key;
    return startsWith(key, this.add) ? Buffer.concat([this.strip, key.subarray(this.add.length)]) : undefined;
  }
}

// Without a prefix, no view of the key is made: this runs for every key a file or a scan yields.
const startsWith = (key: Uint8Array, prefix: Buffer): boolean => prefix.length === 0 || (key.length >= prefix.length && prefix.equals(key.subarray(0, prefix.length)));

/** The cursor of a scan that has nothing left to read. */
export const DONE = 'done';

/** Where a later run may resume one master's scan once a batch and every earlier one are done. */
export interface ScanPosition {
  /** Which master's scan (its index among the source's masters) the keys come from. */
  unit: number;
  /** The SCAN cursor to resume from, or DONE when the unit's scan ended with this batch. */
  resumeCursor: string;
  /** The run_id of the server that cursor belongs to: a checkpoint takes it only for that server. */
  runId: string;
}

/**
 * A batch of records: the keys, and their values in one of two forms: held already, one per key (an .rdb file, a
 * snapshot), or read by the source server as the copy takes them (DUMP payloads or values by type, a read budget
 * at a time). Bookkeeping travels beside the records.
 */
export interface RecordBatch {
  keys: Buffer[];
  /** Set by a source that holds the values already (an .rdb file, a snapshot), one per key. */
  stored?: StoredValue[];
  /** Set by a source server: its values of these keys, read where they live as the copy asks for them. */
  server?: ServerValues;
  /** Where the scan stands after this batch; none for a batch no checkpoint follows (live changes, a file). */
  position?: ScanPosition;
  /**
   * Called once the batch is done with (copied, failed or abandoned), with its outcomes when it was copied whole:
   * live mode's queue frees its keys, a file's watch for repeated keys takes the skipped ones.
   */
  settled?: (outcomes: readonly KeyOutcome[] | undefined) => void;
}

/**
 * How a key crossed to a target that reads an older RDB version than its payload carries: RESTOREd with the
 * target's version stamp (its encodings are ones the target reads), or written by type (decoded from a file,
 * or read from the source by type).
 */
export type Crossing = 'restamped' | 'byType';

/** What copying one key came to. `dropped` names what the target could not hold (hash-field expiries on a server that has none). */
export type KeyOutcome =
  | { key: Buffer; status: 'restored' | 'skipped' | 'vanished'; via?: Crossing; dropped?: string }
  | { key: Buffer; status: 'failed'; reason: string };

export type FailedOutcome = Extract<KeyOutcome, { status: 'failed' }>;

/** A key that cannot be copied for a reason of its own, such as a module type the type copy cannot write. */
export class KeyProblem extends Error {}

/** Keys by outcome. */
export interface Counts {
  restored: number;
  skipped: number;
  failed: number;
  vanished: number;
}

export const noCounts = (): Counts => ({ restored: 0, skipped: 0, failed: 0, vanished: 0 });

export const total = (c: Counts): number => c.restored + c.skipped + c.failed + c.vanished;

export function addCounts(a: Counts, b: Counts): Counts {
  return { restored: a.restored + b.restored, skipped: a.skipped + b.skipped, failed: a.failed + b.failed, vanished: a.vanished + b.vanished };
}

/** Keys restored across RDB versions, by way (see Crossing), and those the target could not hold whole. */
export interface CrossingCounts {
  restamped: number;
  byType: number;
  /** Restored without something the target has no place for (hash-field expiries); each is in the error log. */
  degraded: number;
}

export const noCrossings = (): CrossingCounts => ({ restamped: 0, byType: 0, degraded: 0 });

/** What a copy came to: every key's outcome counted, and how it ended. */
export interface MigrationResult {
  counts: Counts;
  crossing: CrossingCounts;
  errorLimitReached: boolean;
  interrupted: boolean;
  /** Set when `auto` switched from dump to type; the target's reason. */
  fallbackReason?: string;
  /** Set when the run ended early because a server went away or answered nonsense. */
  fatal?: string;
}

/** What the selection counted on this side of SCAN (or of the file): keys taken, and keys KEY_EXCLUDE_PATTERN left out. */
export interface SelectionCounts {
  scanned: number;
  excluded: number;
  /** Empty collections in a file, which redis-server drops when it loads the file: left out as well. */
  empty: number;
}

export const noSelection = (): SelectionCounts => ({ scanned: 0, excluded: 0, empty: 0 });

/** A source with no key to give: a file or a snapshot without any in the database asked for. */
export async function* noBatches(): AsyncGenerator<RecordBatch> {}

/** Bytes one read may gather into a batch (a read call, a file batch): bounds memory in flight and server blocking. */
export const READ_BUDGET_BYTES = 4 * 1024 * 1024;
/** Strings longer than this are read and written in windows of this size (GETRANGE, APPEND). */
export const STRING_CHUNK_BYTES = 1024 * 1024;

/** Shows a key for humans: printable ASCII kept, other bytes as \xNN, backslash and bar escaped. */
export function displayKey(key: Buffer): string {
  let out = '';
  for (const byte of key) {
    if (byte === 0x5c) out += '\\\\';
    else if (byte === 0x7c) out += '\\x7c'; // the log brackets keys with bars
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** DUMP payloads of the first keys of a batch, in the layout DUMP_WRITE takes (lib/net/scripts.ts). */
export interface DumpBatch {
  keys: Buffer[];
  /** Per key "expire-at,length;": -2 gone, -3 an error (the payload is its text), length 0 for a key too big to DUMP. */
  header: string;
  payloads: Buffer;
  /** The newest RDB version the source reads, which its payloads carry at most; undefined where unknown. */
  rdbVersion?: number | undefined;
}

/** Values by type of the first keys of a batch, in the layout TYPE_WRITE takes (lib/net/scripts.ts). */
export interface TypedBatch {
  keys: readonly Buffer[];
  header: string;
  lengths: string;
  values: Buffer;
}

/** A stream's state beyond its entries, as a source holds it: what XINFO and XPENDING say, or what a file saved. */
export interface StreamState {
  lastId: string;
  /** Redis 7+: how many entries were ever added, and the newest deleted ID. */
  entriesAdded?: string;
  maxDeletedId?: string;
  groups: GroupState[];
  /** Pending IDs whose entries were deleted: written as placeholders so XCLAIM can take them, then removed. */
  dangling: readonly string[];
}

export interface GroupState {
  name: Buffer;
  lastDeliveredId: string;
  /** Redis 7+: entries the group has read; absent or null where unknown. */
  entriesRead?: string | null;
  consumers: Buffer[];
  /** Pending entries, a bounded page at a time. */
  pending: AsyncIterable<PendingClaim[]>;
}

/** A pending entry to claim for its consumer, with its delivery count and either its idle time or its delivery time. */
export interface PendingClaim {
  id: Buffer | string;
  consumer: Buffer;
  deliveries: number;
  idleMs?: number;
  deliveryTime?: number;
}

/** A big key's content for a chunked build: its chunks, and what they cannot carry, read as the build needs them. */
export interface ChunkedContent {
  kind: string;
  expireAt: number;
  /** The values in write order, a bounded chunk at a time; a stream's first chunk may be empty. */
  chunks: AsyncIterable<Buffer[]>;
  /** Whether the key is still at its source once every chunk is written (a key deleted meanwhile is not created). */
  stillThere: () => Promise<boolean>;
  /** A hash's field expiries for a chunk's fields (absolute ms, -1 for none), read as that chunk is written. */
  fieldExpiries?: (fields: Buffer[]) => Promise<number[]>;
  /** A stream's groups and last ID, read once its entries are written. */
  streamState?: () => Promise<StreamState>;
}

/** A big key at its source: found (its type and expiry known), its content read only once the target needs it. */
export interface ChunkedKey {
  kind: string;
  expireAt: number;
  content(): Promise<ChunkedContent>;
}

/** A source whose big keys are read in chunks: a server, or a value decoded from a file. */
export interface ChunkReader {
  /** The key as it is now; undefined when it is gone. */
  open(key: Buffer): Promise<ChunkedKey | undefined>;
  /** Whether a read that failed with `reason` failed because the key went away meanwhile. */
  goneMeanwhile(key: Buffer, reason: string): Promise<boolean>;
}

/** A stream entry standing in, while a stream is built, for a pending entry whose own entry was deleted. */
export const PLACEHOLDER = Buffer.from('redis-keys-migrator-placeholder');

/** Orders stream IDs ("ms-seq") numerically. */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : as < bs ? -1 : 1;
}

/** A server's DUMP payloads of some keys, read from one node: `from` reads the big ones (length 0) in chunks. */
export interface DumpRead {
  from: ChunkReader;
  batch: DumpBatch;
}

/** A server's values by type of some keys, read from one node; `chunked` keys (the node refuses scripts) are read from `from` alone. */
export type TypedRead = { from: ChunkReader; batch: TypedBatch } | { from: ChunkReader; chunked: Buffer[] };

/** A server connection as far as the records tell of it: its name, and why it was lost, when it was. */
export interface NodeState {
  readonly label: string;
  readonly lostBecause?: string | undefined;
}

/** One source node's reads of keys it holds, in order, a read budget at a time (lib/sources/server.ts). */
export interface NodeReads {
  /** The node read from. */
  readonly node: NodeState;
  dumps(keys: readonly Buffer[]): AsyncIterable<DumpRead>;
  typed(keys: readonly Buffer[]): AsyncIterable<TypedRead>;
}

/** A source server's values (lib/sources/server-values.ts): a batch's keys by the node that holds them, each share read there. */
export interface ServerValues {
  onNodes(keys: readonly Buffer[]): { reads: NodeReads; keys: Buffer[] }[];
  /** The reads of the node that holds `key` now, asked of the cluster: its slot moved or is moving. */
  locate(key: Buffer): Promise<NodeReads>;
}
