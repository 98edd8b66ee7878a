// What every source is to the run: the databases it yields (each with its records, or keys scanned once
// connected), its function libraries, what it says at the end, and the one-line error it fails with.
import type { Side } from '../net/side.js';
import type { RecordBatch, SelectionCounts } from '../records.js';
import type { Settings } from '../settings.js';
import type { Libraries } from './libraries.js';
import type { ReplicaLink } from './replica-link.js';

/** The source could not be opened or read: one line, after its heading ("Error reading SOURCE_RDB_FILE"). */
export class SourceError extends Error {
  constructor(readonly heading: string, message: string) {
    super(message);
  }
}

/** One database to copy: the endpoints for it and, from a file read by our reader, its records. */
export interface Database {
  /** The run's settings with this database's source and target. */
  settings: Settings;
  /** "Database 0 -> 0", when a run covers several. */
  heading?: string;
  /** From a file read by our reader, or a server's snapshot read as its replica; otherwise keys are scanned once connected. */
  file?: { batches: AsyncIterable<RecordBatch>; counts: SelectionCounts };
  /** The server a snapshot comes from (SOURCE_READER=replication): its size for progress, and never the target. */
  origin?: Side;
  /** How a source server is read, and why: said once the run is connected. */
  reading?: string;
  /** MIGRATION_MODE=live read as a replica: the replication streams to follow after the snapshot. */
  stream?: StreamSource;
}

/** Each master's link (once its snapshot is read), and whether the run resumes a checkpoint's offsets instead. */
export interface StreamSource {
  links: () => Promise<ReplicaLink[]>;
  /** CHECKPOINT_FILE's offsets continued (no snapshot copied): the line saying so. */
  resuming?: string;
  /** Resuming: the database each master's stream had SELECTed at its offset (no SELECT comes again). */
  databases?: number[];
}

export interface Source {
  databases(stopped: () => boolean): AsyncIterable<Database>;
  /** The function libraries it holds: a server's (given as `side` once connected) or the file's. */
  libraries(side: Side | undefined): Promise<Libraries>;
  /** What the run says of the source at its end, and what it could not copy that no key's count shows. */
  ending(): SourceEnding;
  close(): Promise<void>;
}

export interface SourceEnding {
  lines: string[];
  /** Things left out or kept otherwise than redis-server would (a module's auxiliary data, a key held twice): the run fails (exit 2). */
  failed: number;
  /** Keys among them, each written to the error log. */
  failedKeys?: { key: Buffer; reason: string }[];
}

/** Several endings said as one: their lines in turn, their failures added. */
export function joinEndings(...endings: SourceEnding[]): SourceEnding {
  return {
    lines: endings.flatMap((e) => e.lines),
    failed: endings.reduce((sum, e) => sum + e.failed, 0),
    failedKeys: endings.flatMap((e) => e.failedKeys ?? []),
  };
}

/** How opening a source talks: `say` for the run's lines, `progress` for a private server's loading. */
export interface Voices {
  say: (line: string) => void;
  progress: (line: string) => void;
}

/**
 * A module's auxiliary data (its global state, saved apart from any key: a search module's index definitions, say)
 * is loaded only from a file, by the module itself: no command writes it to another server. redis-server refuses a
 * file holding it unless the module is loaded; we cannot copy it at all, so each module's is a failure, named.
 */
export function moduleAuxEnding(moduleAux: ReadonlyMap<string, number>, holder: string): SourceEnding {
  const lines = [...moduleAux].map(([module, records]) =>
    `Not copied: ${holder} holds auxiliary data of module ${module} (${records} ${records === 1 ? 'record' : 'records'}: the module's own state, apart from its keys), which only that module reads when redis-server loads the file: no command can copy it to another server. Recreate that state on the target with the module's own commands`);
  return { lines, failed: moduleAux.size };
}

