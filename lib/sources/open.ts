// A run's source, opened one way whatever it is: a server or a cluster, read as its replica (SOURCE_READER: its
// snapshot's records come with their values) or scanned once connected; an .rdb file read by our reader
// (RDB_READER=native: records with their values, too), or loaded into a private redis-server (RDB_READER=server:
// then scanned like any server). It yields the databases to copy.
import type { Side } from '../net/side.js';
import { verifyFileChecksum } from '../rdb/checksum.js';
import { RdbFormatError } from '../rdb/reader.js';
import { noBatches, noSelection } from '../records.js';
import { readsFileItself, scanOnlyBecause, type Settings } from '../settings.js';
import { databaseSections, type FileFacts, otherDatabase } from './rdb-file.js';
import { keySelection } from './scan.js';
import { rdbFileVersion, RdbError, startRdbServer, type RdbServer } from './rdb-server.js';
import { fileLibraries, type Libraries, sourceLibraries } from './libraries.js';
import { replicationSource } from './replication.js';
import type { StreamPosition } from './replica-link.js';
import { countRepeats, type RepeatedKey, repeatsEnding, RepeatWatch } from './repeated-keys.js';
import { joinEndings, moduleAuxEnding, SourceError, type Source, type Voices } from './source.js';

/** `positions`: where a live run's CHECKPOINT_FILE says each master's stream stands (it resumes there). */
export async function openSource(settings: Settings, stopped: () => boolean, voices: Voices, positions?: StreamPosition[]): Promise<Source> {
  if (readsFileItself(settings)) return fileSource(settings, stopped, voices);
  if (settings.rdbFile) return privateServerSource(settings, stopped, voices);
  if (settings.sourceReader === 'scan') return serverSource(settings);
  const why = scanOnlyBecause(settings);
  if (why) return serverSource(settings, `Reading the source by SCAN: ${why}`);
  const replica = await replicationSource(settings, stopped, voices, positions);
  if (!('refused' in replica)) return replica;
  if (settings.mode === 'live' && settings.checkpointFile) {
    throw new SourceError('Error in settings', `CHECKPOINT_FILE with MIGRATION_MODE=live resumes the source's replication stream, and ${replica.refused}: remove CHECKPOINT_FILE to follow its keyspace events instead`);
  }
  return serverSource(settings, `Reading the source by SCAN: ${replica.refused}`);
}

/** A server or a cluster, scanned once connected; `reading` says why when SOURCE_READER=auto chose it. */
function serverSource(settings: Settings, reading?: string): Source {
  return {
    databases: async function* () {
      yield { settings, reading };
    },
    libraries: serverLibraries,
    ending: () => ({ lines: [], failed: 0 }),
    close: async () => undefined,
  };
}

/**
 * RDB_READER=native: the file checked whole first, then read in one pass, each database in turn copied into
 * the same number on the target (or only SOURCE_REDIS_DB_INDEX's, into DESTINATION_REDIS_DB_INDEX). A copy
 * watches for keys the file holds more than once, and reads the file's keys again at the end if it may have met one.
 */
async function fileSource(settings: Settings, stopped: () => boolean, voices: Voices): Promise<Source> {
  const reading = 'Error reading SOURCE_RDB_FILE';
  await asSourceError(reading, () => checkFileFirst(settings, stopped));
  const onlyDb = settings.sourceDbChosen ? settings.source.db : undefined;
  const filters = { ...keySelection(settings), onlyDb };
  const facts: FileFacts = { moduleAux: new Map(), repeats: settings.mode === 'copy' && !settings.dryRun ? new RepeatWatch(settings.overwrite) : undefined };
  let repeated: RepeatedKey[] = [];
  return {
    databases: async function* () {
      let sections = 0;
      const all = databaseSections(settings.rdbFile, filters, settings.pipelineBatchSize, facts, stopped);
      for await (const section of sourceErrors(reading, all)) {
        const target = onlyDb === undefined ? { ...settings.target, db: section.db } : settings.target;
        sections += 1;
        yield {
          settings: { ...settings, target },
          heading: onlyDb === undefined ? `Database ${section.db} -> ${target.db}` : undefined,
          file: { batches: sourceErrors(reading, section.batches), counts: section.counts },
        };
      }
      // A file with no key still meets the target once: the run connects and reports nothing copied.
      if (sections === 0 && !stopped()) yield { settings, file: { batches: noBatches(), counts: noSelection() } };
      const watch = facts.repeats;
      if (watch && watch.candidateTotal > 0 && !stopped()) {
        const suspects = watch.candidateTotal;
        voices.say(`Reading the file's keys again, to count ${suspects} ${suspects === 1 ? 'key' : 'keys'} it may hold more than once`);
        repeated = (await countRepeats(settings.rdbFile, watch, stopped)) ?? [];
      }
    },
    libraries: () => asSourceError(reading, () => fileLibraries(settings.rdbFile)),
    ending: () => joinEndings(moduleAuxEnding(facts.moduleAux, 'the file'), repeatsEnding(repeated, settings.overwrite, facts.repeats?.unchecked ?? 0)),
    close: async () => undefined,
  };
}

/**
 * Before a key is written, the file must be there and whole: a corrupt or truncated one is refused. A cluster
 * target takes db 0 only, and the reader learns a file's databases only as it reads, so with no
 * SOURCE_REDIS_DB_INDEX this first pass reads the records themselves (the reader checks the CRC at the end, as
 * the plain checksum pass does) and refuses at the first key in another database.
 */
async function checkFileFirst(settings: Settings, stopped: () => boolean): Promise<void> {
  rdbFileVersion(settings.rdbFile);
  if (!settings.target.cluster || settings.sourceDbChosen) return verifyFileChecksum(settings.rdbFile, stopped);
  const other = await otherDatabase(settings.rdbFile, 0, stopped);
  if (other !== undefined) throw new RdbError(clusterRefusal(settings.rdbFile, `database ${other} (and maybe others)`));
}

/** A cluster has db 0 only: the one line refusing a file with keys elsewhere, for either reader. */
function clusterRefusal(file: string, databases: string): string {
  return `${file} has keys in ${databases}, and DESTINATION_REDIS_CLUSTER=true takes database 0 only: set SOURCE_REDIS_DB_INDEX to the one to copy`;
}

/**
 * RDB_READER=server: the file loaded into a private redis-server, then each database with keys copied into
 * the same number (or only SOURCE_REDIS_DB_INDEX's). A cluster target has db 0 only.
 */
async function privateServerSource(settings: Settings, stopped: () => boolean, voices: Voices): Promise<Source> {
  const loading = 'Error loading SOURCE_RDB_FILE';
  const rdb = await asSourceError(loading, () => startRdbServer(settings.rdbFile, settings.redisServerPath, voices.progress, stopped));
  voices.say(`Loaded ${settings.rdbFile} into a private redis-server (used_memory_human ${rdb.usedMemoryHuman}; databases with keys: ${rdb.databases.join(', ') || 'none'})`);
  const pairs = await asSourceError(loading, async () => databasePairs(settings, rdb)).catch(async (err: unknown) => {
    await rdb.stop();
    throw err;
  });
  return {
    databases: async function* () {
      for (const pair of pairs) yield { settings: { ...settings, ...pair }, heading: pairs.length > 1 ? `Database ${pair.source.db} -> ${pair.target.db}` : undefined };
    },
    libraries: serverLibraries,
    ending: () => ({ lines: [`Private redis-server for SOURCE_RDB_FILE: used_memory_human ${rdb.usedMemoryHuman}`], failed: 0 }),
    close: () => rdb.stop(),
  };
}

function databasePairs(settings: Settings, rdb: RdbServer): Pick<Settings, 'source' | 'target'>[] {
  if (settings.sourceDbChosen) return [{ source: rdb.endpoint(settings.source.db), target: settings.target }];
  const dbs = rdb.databases.length > 0 ? rdb.databases : [0];
  if (settings.target.cluster && dbs.some((db) => db !== 0)) throw new RdbError(clusterRefusal(settings.rdbFile, `databases ${dbs.join(', ')}`));
  return dbs.map((db) => ({ source: rdb.endpoint(db), target: { ...settings.target, db } }));
}

/** A server's libraries: the source side, connected. */
const serverLibraries = (side: Side | undefined): Promise<Libraries> => sourceLibraries(side as Side);

/** The file's own errors (unreadable, corrupt, refused) as a SourceError under `heading`. */
async function asSourceError<T>(heading: string, work: () => Promise<T> | T): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof RdbFormatError || err instanceof RdbError) throw new SourceError(heading, err.message);
    throw err;
  }
}

async function* sourceErrors<T>(heading: string, items: AsyncIterable<T>): AsyncGenerator<T> {
  const iterator = items[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await asSourceError(heading, () => iterator.next());
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await iterator.return?.(undefined);
  }
}
