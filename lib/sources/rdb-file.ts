// SOURCE_RDB_FILE with RDB_READER=native: the file read by our own reader (lib/rdb/), in one pass, cut into
// one section per database, each a stream of batches whose values are already there (no source server).
import { READ_BUDGET_BYTES } from '../batch.js';
import { readRdb, type RdbKey } from '../rdb/reader.js';
import { logicalType } from '../rdb/types.js';
import { DONE, globMatches, type KeyBatch, type KeySelection, type SelectionCounts, type StoredValue } from './scan.js';

/** One database of the file: its number, and its selected keys in batches. */
export interface DatabaseSection {
  db: number;
  batches: AsyncIterable<KeyBatch>;
}

export interface FileSelection extends KeySelection {
  /** Only this database (SOURCE_REDIS_DB_INDEX given); every database otherwise. */
  onlyDb?: number;
}

/**
 * The file's databases in file order, each section's batches to be read before asking for the next section.
 * SCAN's filters apply here as the server would apply them: MATCH and KEY_EXCLUDE_PATTERN by Redis's glob,
 * SCAN_TYPE by the type the key would have.
 */
/** What the reader learnt of the file as it went: its RDB version, and the function libraries it holds. */
export interface FileFacts {
  version: number;
  functions: number;
}

export async function* databaseSections(path: string, selection: FileSelection, size: number, counts: SelectionCounts, facts: FileFacts): AsyncGenerator<DatabaseSection> {
  const options = { onHeader: (header: { version: number }) => void (facts.version = header.version), onFunction: () => void (facts.functions += 1) };
  const keys = readRdb(path, options)[Symbol.asyncIterator]();
  let next = await keys.next();
  while (!next.done) {
    const db = next.value.db;
    if (selection.onlyDb !== undefined && db !== selection.onlyDb) {
      next = await keys.next();
      continue;
    }
    const section: { next: IteratorResult<RdbKey> } = { next };
    yield { db, batches: sectionBatches(keys, section, db, selection, size, counts, facts) };
    // Whatever the consumer left of this database (it stopped early) is passed over.
    while (!section.next.done && section.next.value.db === db) section.next = await keys.next();
    next = section.next;
  }
}

async function* sectionBatches(
  keys: AsyncIterator<RdbKey>, section: { next: IteratorResult<RdbKey> }, db: number, selection: FileSelection, size: number,
  counts: SelectionCounts, facts: FileFacts,
): AsyncGenerator<KeyBatch> {
  const match = Buffer.from(selection.match);
  const exclude = selection.exclude ? Buffer.from(selection.exclude) : undefined;
  let batch: Buffer[] = [];
  let stored: StoredValue[] = [];
  let bytes = 0;
  while (!section.next.done && section.next.value.db === db) {
    const record = section.next.value;
    section.next = await keys.next();
    if (!globMatches(match, record.key) || (selection.type && logicalType(record.type) !== selection.type)) continue;
    if (exclude && globMatches(exclude, record.key)) {
      counts.excluded += 1;
      continue;
    }
    counts.scanned += 1;
    batch.push(record.key);
    stored.push({ expireAt: record.expireAt, type: record.type, value: record.value, rdbVersion: facts.version });
    bytes += record.value.length;
    // Bounded by bytes as well as keys: a batch of big values is sent sooner.
    if (batch.length === size || bytes >= READ_BUDGET_BYTES) {
      yield { keys: batch, unit: 0, resumeCursor: '0', runId: '', stored };
      [batch, stored, bytes] = [[], [], 0];
    }
  }
  if (batch.length > 0) yield { keys: batch, unit: 0, resumeCursor: DONE, runId: '', stored };
}
