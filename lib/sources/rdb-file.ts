// SOURCE_RDB_FILE with RDB_READER=native: the file read by our own reader (lib/rdb/), in one pass, cut into
// one section per database, each a stream of batches whose values are already there (no source server).
import { checksumVerified } from '../rdb/checksum.js';
import { readRdb, readRdbBatches, type RdbKey } from '../rdb/reader.js';
import { isEmptyCollection } from '../rdb/empty.js';
import { logicalType } from '../rdb/types.js';
import { globTest, matchTest } from './glob.js';
import type { RepeatWatch } from './repeated-keys.js';
import { noSelection, READ_BUDGET_BYTES, type RecordBatch, type SelectionCounts, type StoredValue } from '../records.js';
import type { KeySelection } from './scan.js';

/** One database of the file: its number, its selected keys in batches, and what the selection counted. */
interface DatabaseSection {
  db: number;
  batches: AsyncIterable<RecordBatch>;
  counts: SelectionCounts;
}

interface FileSelection extends KeySelection {
  /** Only this database (SOURCE_REDIS_DB_INDEX given); every database otherwise. */
  onlyDb?: number;
}

/** What the reader met in the file besides keys, as it went (its function libraries: libraries.ts). */
export interface FileFacts {
  /** Module auxiliary data records by module name: a module's global state, which no command can write. */
  moduleAux: Map<string, number>;
  /** Every key taken for the copy passes through it, to find those the file holds more than once. */
  repeats?: RepeatWatch;
}

/**
 * The file's databases in file order, each section's batches to be read before asking for the next section.
 * SCAN's filters apply here as the server would apply them: MATCH and KEY_EXCLUDE_PATTERN by Redis's glob
 * (a bare `*` matches every key, the empty one too, as SCAN does not filter then), SCAN_TYPE by the type the
 * key would have. Once `stopped()` (Ctrl-C, the error limit) or past the one database asked for, nothing more
 * is read and the file is closed.
 */
export function databaseSections(path: string, selection: FileSelection, size: number, facts: FileFacts, stopped: () => boolean): AsyncGenerator<DatabaseSection> {
  const options = {
    onModuleAux: countModuleAux(facts),
    // The run checked the whole file's CRC before the first key (verifyFileChecksum): once is enough.
    checksum: !checksumVerified(path),
  };
  return sectionsOf(readRdbBatches(path, options), selection, size, stopped, facts.repeats);
}

/** The reader's onModuleAux, counting each module's records in `facts`. */
export const countModuleAux = (facts: FileFacts) => (module: string): void => void facts.moduleAux.set(module, (facts.moduleAux.get(module) ?? 0) + 1);

/** databaseSections over any stream of the reader's batches (a file's, or a replica's snapshots). */
export async function* sectionsOf(batches: AsyncIterable<RdbKey[]>, selection: FileSelection, size: number, stopped: () => boolean, repeats?: RepeatWatch): AsyncGenerator<DatabaseSection> {
  const records = new Records(batches[Symbol.asyncIterator]());
  try {
    let record = await records.peek();
    while (record && !stopped()) {
      const db = record.db;
      if (selection.onlyDb !== undefined && db !== selection.onlyDb) {
        records.skip();
        record = await records.peek();
        continue;
      }
      const counts = noSelection();
      yield { db, batches: sectionBatches(records, db, selection, size, counts, repeats), counts };
      if (selection.onlyDb !== undefined || stopped()) return;
      // Whatever the consumer left of this database is passed over.
      for (record = await records.peek(); record?.db === db; record = await records.peek()) records.skip();
    }
  } finally {
    await records.close();
  }
}

/** The reader's batches as one stream of keys, read a key at a time with an await only between batches. */
class Records {
  private batch: RdbKey[] = [];
  private index = 0;
  private ended = false;

  constructor(private readonly batches: AsyncIterator<RdbKey[]>) {}

  /** The next key without awaiting, or undefined when the batch in hand is used up (then call peek). */
  current(): RdbKey | undefined {
    return this.batch[this.index];
  }

  /** The next key, reading the next batch if needed; undefined at the end of the file. */
  async peek(): Promise<RdbKey | undefined> {
    while (this.index >= this.batch.length && !this.ended) {
      const next = await this.batches.next();
      if (next.done) this.ended = true;
      else [this.batch, this.index] = [next.value, 0];
    }
    return this.batch[this.index];
  }

  skip(): void {
    this.index += 1;
  }

  async close(): Promise<void> {
    await this.batches.return?.(undefined);
  }
}

async function* sectionBatches(records: Records, db: number, selection: FileSelection, size: number, counts: SelectionCounts, repeats?: RepeatWatch): AsyncGenerator<RecordBatch> {
  const match = matchTest(selection.match);
  const exclude = globTest(selection.exclude);
  const { slots, names } = selection;
  const type = selection.type.toLowerCase();
  let batch: Buffer[] = [];
  let stored: StoredValue[] = [];
  let bytes = 0;
  const full = (): RecordBatch => {
    const out: RecordBatch = { keys: batch, stored };
    repeats?.watch(db, out);
    [batch, stored, bytes] = [[], [], 0];
    return out;
  };
  for (let record = await records.peek(); record?.db === db; record = records.current() ?? (await records.peek())) {
    records.skip();
    if ((match && !match(record.key)) || (type && logicalType(record.type) !== type) || (slots && !slots.hasKey(record.key))) continue;
    if (isEmptyCollection(record.value)) {
      counts.empty += 1;
      continue;
    }
    if (exclude?.(record.key) || (names && !names.covers(record.key))) {
      counts.excluded += 1;
      continue;
    }
    counts.scanned += 1;
    // Bounded by bytes as well as keys: a big value goes in a batch of its own, not with the keys before it.
    if (batch.length > 0 && bytes + record.value.length > READ_BUDGET_BYTES) yield full();
    batch.push(record.key);
    stored.push(record); // a record is a StoredValue: no object of its own per key
    bytes += record.value.length;
    if (batch.length === size || bytes >= READ_BUDGET_BYTES) yield full();
  }
  if (batch.length > 0) yield full();
}

/**
 * The first database other than `db` that holds a key, or undefined when there is none: the file is read up to
 * that key, or to its end (where the reader checks its CRC). Ctrl-C (`stopped()`) ends the search with undefined.
 */
export async function otherDatabase(path: string, db: number, stopped: () => boolean): Promise<number | undefined> {
  for await (const record of readRdb(path)) {
    if (record.db !== db) return record.db;
    if (stopped()) return undefined;
  }
  return undefined;
}
