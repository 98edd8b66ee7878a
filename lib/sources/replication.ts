// SOURCE_READER: a source server read as its replica (lib/sources/replica-link.ts: one full resync per master,
// its RDB streamed into our reader, so records come with their values as from a file), or by SCAN. `auto` takes
// the replica's way where the run is a copy and the source allows it, and says which way and why in one line.
import { slotSetOf } from '../net/cluster.js';
import { ConnectionError } from '../net/connections.js';
import { mergeStreams } from '../concurrency.js';
import { sameServer, sameServerRefusal, Side } from '../net/side.js';
import { RdbFormatError, readRdbInput, type RdbKey } from '../rdb/reader.js';
import { noBatches, noSelection, type RecordBatch } from '../records.js';
import type { Endpoint, Settings } from '../settings.js';
import { sourceLibraries } from './libraries.js';
import { SpoolUse } from './byte-queue.js';
import { LINK_MEMORY_BYTES, LinkLost, ReplicaLink, ReplicationRefused, type StreamPosition } from './replica-link.js';
import { countModuleAux, sectionsOf, type FileFacts } from './rdb-file.js';
import { keySelection } from './scan.js';
import { moduleAuxEnding, SourceError, type Source, type SourceEnding, type Voices } from './source.js';

const READING = 'Error reading the source as its replica';
const CONNECTING = 'Error connecting to Redis';
/** Between tries to open a lost link again. */
const RETRY_MS = 500;
/** New snapshots after cuts, per master, before the run gives up. */
const MAX_RESTARTS = 3;

/** A master the source is read from, and its link once PSYNC is accepted. */
interface Master {
  endpoint: Endpoint;
  label: string;
  link: ReplicaLink;
  /** Live mode: the link once its snapshot is read, kept open for the stream that follows. */
  followed?: (link: ReplicaLink) => void;
}

/** Reading the source as its replica: each master's accepted link, or why not (auto then reads by SCAN). */
type Attempt = { masters: Master[]; origin: Side } | { refused: string };

/** What the snapshots met besides keys, master by master (a snapshot read again replaces its master's). */
interface SnapshotFacts {
  moduleAux: Map<string, FileFacts>;
  /** Snapshots read again from the start after a cut, each with its cause: said at the end. */
  restarts: string[];
}

/**
 * A source server read as its replica, or `refused` when SOURCE_READER=auto and the source will not serve a
 * replica (then the run reads it by SCAN; the line saying so is the caller's). SOURCE_READER=replication fails
 * here in one line, before anything is written. The target is reached first, so a run that cannot write
 * never costs the source a fork. With `positions` (a live run's CHECKPOINT_FILE), each master's stream is
 * continued from its offset instead, and no snapshot is copied.
 */
export async function replicationSource(settings: Settings, stopped: () => boolean, voices: Voices, positions?: StreamPosition[]): Promise<Source | { refused: string }> {
  const waiting = new Set<string>();
  const onWaiting = (label: string) => (): void => {
    if (waiting.has(label)) return;
    waiting.add(label);
    voices.progress(`Waiting for ${label} to prepare its snapshot (a fork; a diskless source first waits repl-diskless-sync-delay)`);
  };
  const spoolUse = new SpoolUse();
  const attempt = await replicate(settings, onWaiting, spoolUse, positions);
  if ('refused' in attempt) {
    if (settings.sourceReader === 'replication') throw new SourceError(READING, `${attempt.refused} (SOURCE_READER=scan reads it key by key); nothing was copied`);
    return attempt;
  }
  const { masters, origin } = attempt;
  const from = masters.length === 1 ? (masters[0]?.label ?? '') : `each of its ${masters.length} masters`;
  const reading = positions ? `Reading the source as its replica: each stream continued from CHECKPOINT_FILE by PSYNC, from ${from}` : `Reading the source as its replica: one snapshot by PSYNC from ${from}`;
  if (positions) return resumedSource(settings, masters, origin, reading, positions, spoolUse);
  const facts: SnapshotFacts = { moduleAux: new Map(), restarts: [] };
  const again = { db: settings.source.db, timeoutMs: settings.reconnectTimeoutMs, spoolBytes: settings.spoolBytes, spoolUse, stopped, onWaiting, say: voices.progress };
  // MIGRATION_MODE=live follows each master's stream after its snapshot, on the same link.
  const follow = settings.mode === 'live';
  const links = masters.map((master) => new Promise<ReplicaLink>((resolve) => (master.followed = follow ? resolve : undefined)));
  const snapshots = masters.map((master) => masterSnapshots(master, facts, again));
  const filters = { ...keySelection(settings), onlyDb: settings.source.db };
  return {
    databases: async function* () {
      const sections = sectionsOf(mergeStreams(snapshots), filters, settings.pipelineBatchSize, stopped);
      let found = false;
      for await (const section of linkErrors(sections)) {
        found = true;
        yield { settings, origin, reading, file: { batches: linkErrors(section.batches), counts: section.counts }, stream: follow ? { links: () => Promise.all(links) } : undefined };
      }
      if (!found && !stopped()) yield { settings, origin, reading, file: { batches: noBatches(), counts: noSelection() }, stream: follow ? { links: () => Promise.all(links) } : undefined };
    },
    libraries: () => sourceLibraries(origin),
    ending: () => withSpooling(snapshotEnding(facts, settings.overwrite), spoolUse, settings.spoolBytes),
    close: async () => {
      for (const { link } of masters) link.close();
      await origin.close();
    },
  };
}

/**
 * A live run resuming CHECKPOINT_FILE: no snapshot to copy, each master's link continuing its stream (or, where
 * the backlog passed the offset, starting over from the full resync it gave: lib/live/stream-run.ts).
 */
function resumedSource(settings: Settings, masters: Master[], origin: Side, reading: string, positions: StreamPosition[], spoolUse: SpoolUse): Source {
  // A master that starts over gets a new snapshot and its stream SELECTs again; one that continues does not.
  const databases = masters.map(({ link }) => (link.startsOver ? -1 : (positions.find((p) => p.address === link.address)?.db ?? -1)));
  const each = masters.map(({ link }) => (link.startsOver ? `${link.label}: a new snapshot (${link.startsOver.replace(`${link.label} `, '')})` : `${link.label} from offset ${link.offset}`));
  const resuming = `Resuming from ${settings.checkpointFile}: ${each.join('; ')}`;
  return {
    databases: async function* () {
      yield { settings, origin, reading, file: { batches: noBatches(), counts: noSelection() }, stream: { links: async () => masters.map((m) => m.link), resuming, databases } };
    },
    libraries: () => sourceLibraries(origin),
    ending: () => withSpooling({ lines: [], failed: 0 }, spoolUse, settings.spoolBytes),
    close: async () => {
      for (const { link } of masters) link.close();
      await origin.close();
    },
  };
}

/** Module auxiliary data (a failure each, as from a file), and each snapshot read again after a cut. */
function snapshotEnding(facts: SnapshotFacts, overwrite: boolean): SourceEnding {
  const moduleAux = new Map<string, number>();
  for (const master of facts.moduleAux.values()) for (const [module, records] of master.moduleAux) moduleAux.set(module, (moduleAux.get(module) ?? 0) + records);
  const ending = moduleAuxEnding(moduleAux, 'the source\'s snapshot');
  const before = overwrite ? 'were written again (OVERWRITE_EXISTING_KEYS=true)' : 'count as skipped';
  for (const cause of facts.restarts) ending.lines.push(`A snapshot was cut (${cause}) and read again from the start: the keys copied before the cut ${before}`);
  return ending;
}

/**
 * What the links kept waiting, when they had to: the spool's most and total (an operator sizes TMPDIR and
 * REPLICATION_SPOOL_MB by it), and how long reading stopped with memory and spool full, which leaves the
 * source holding the rest in its replica output buffer.
 */
function withSpooling(ending: SourceEnding, use: SpoolUse, capBytes: number): SourceEnding {
  const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
  if (use.spooledBytes > 0) {
    ending.lines.push(`Replication spool: up to ${mb(use.peakBytes)} MB on disk at once (REPLICATION_SPOOL_MB=${capBytes / 2 ** 20}), ${mb(use.spooledBytes)} MB through it in all: the target took the source's data more slowly than the source sent it`);
  }
  if (use.fullMs > 0) {
    const full = capBytes > 0 ? `its memory (${mb(LINK_MEMORY_BYTES)} MB) and spool full` : `its memory (${mb(LINK_MEMORY_BYTES)} MB) full and no spool (REPLICATION_SPOOL_MB=0)`;
    ending.lines.push(`The replication link stopped reading for ${(use.fullMs / 1000).toFixed(1)} s in all, ${full}: the source held what it had to send in its replica output buffer meanwhile, and drops a replica past its client-output-buffer-limit replica (a larger REPLICATION_SPOOL_MB avoids it)`);
  }
  return ending;
}

/**
 * Connects to the source and to the target (a run that cannot write stops here, before any fork), then asks
 * each source master for a full resync; all must accept, or none is used.
 */
async function replicate(settings: Settings, onWaiting: (label: string) => () => void, spoolUse: SpoolUse, positions?: StreamPosition[]): Promise<Attempt> {
  const { spoolBytes } = settings;
  const origin = await connecting(() => Side.open(settings.source, slotSetOf(settings.sharding)));
  try {
    const target = await connecting(() => Side.open(settings.target));
    const same = sameServer(origin, target);
    await target.close();
    if (same) throw new SourceError(CONNECTING, sameServerRefusal(origin, settings.source.db));
  } catch (err) {
    await origin.close();
    throw err;
  }
  const tries = await Promise.allSettled(origin.masters.map(async (master): Promise<Master> => {
    // Resuming: each master's stream from its recorded offset; one with none recorded starts over.
    const address = `${master.endpoint.host}:${master.endpoint.port}`;
    const recorded = positions?.find((p) => p.address === address);
    const link = await ReplicaLink.open(master.endpoint, master.label, { onWaiting: onWaiting(master.label), spoolBytes, spoolUse }, recorded);
    if (positions && !recorded) link.startsOver = `${master.label} has no offset in CHECKPOINT_FILE (a master new since it was written)`;
    // Followed after its snapshot: acknowledged from the start, or the master would drop a silent replica.
    if (settings.mode === 'live') link.startAcks();
    return { endpoint: master.endpoint, label: master.label, link };
  }));
  const accepted = tries.flatMap((t) => (t.status === 'fulfilled' ? [t.value] : []));
  const failed = tries.find((t): t is PromiseRejectedResult => t.status === 'rejected');
  if (!failed) return { masters: accepted, origin };
  for (const { link } of accepted) link.close();
  await origin.close();
  const reason: unknown = failed.reason;
  if (reason instanceof ReplicationRefused || reason instanceof LinkLost) return { refused: reason.message };
  throw reason;
}

/** A connection error as the run's one line ("Error connecting to Redis : …"). */
async function connecting<T>(open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (err) {
    if (err instanceof ConnectionError) throw new SourceError(CONNECTING, err.message);
    throw err;
  }
}

interface Again {
  /** The one database the run copies. */
  db: number;
  timeoutMs: number;
  spoolBytes: number;
  spoolUse: SpoolUse;
  stopped: () => boolean;
  onWaiting: (label: string) => () => void;
  say: (line: string) => void;
}

/**
 * One master's snapshot as the reader's batches. A link lost midway is opened again for a new snapshot, read
 * from the start, for as long as RECONNECT_TIMEOUT allows: keys already copied are then skipped (or replaced).
 */
async function* masterSnapshots(master: Master, facts: SnapshotFacts, again: Again): AsyncGenerator<RdbKey[]> {
  for (let restarts = 0; ; restarts++) {
    const fileFacts: FileFacts = { moduleAux: new Map() };
    facts.moduleAux.set(master.label, fileFacts);
    try {
      yield* snapshotBatches(master.link, fileFacts, again.db, master.followed !== undefined);
      master.followed?.(master.link);
      return;
    } catch (err) {
      if (!(err instanceof LinkLost) || again.timeoutMs <= 0 || again.stopped()) throw err;
      // A cut that comes back every time (a source that cannot hold our writes while the target is slow) would fork forever.
      if (restarts >= MAX_RESTARTS) throw new LinkLost(`${err.message}, for the ${restarts + 1}th time: the snapshot was given up (with a slow target, a bigger REPLICATION_SPOOL_MB or client-output-buffer-limit replica on the source may help; SOURCE_READER=scan reads key by key)`);
      again.say(`${err.message}: asking it for a new snapshot (for up to RECONNECT_TIMEOUT=${again.timeoutMs / 1000} s)`);
      master.link = await reopen(master, err, again);
      if (master.followed) master.link.startAcks();
      facts.restarts.push(err.message);
    }
  }
}

/** A new link to the master, tried every half second until RECONNECT_TIMEOUT; a refusal ends the tries. */
async function reopen(master: Master, lost: LinkLost, again: Again): Promise<ReplicaLink> {
  const deadline = Date.now() + again.timeoutMs;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    try {
      return await ReplicaLink.open(master.endpoint, master.label, { onWaiting: again.onWaiting(master.label), spoolBytes: again.spoolBytes, spoolUse: again.spoolUse });
    } catch (err) {
      // A master restarting answers LOADING, a replica whose own master is away NOMASTERLINK: both pass.
      if (!(err instanceof LinkLost) && !(err instanceof ReplicationRefused && err.passing)) throw err;
      if (Date.now() >= deadline || again.stopped()) throw new LinkLost(`${lost.message}, and no new link within RECONNECT_TIMEOUT=${again.timeoutMs / 1000} s (${err.message})`);
    }
  }
}

/**
 * One snapshot's records of database `db` (the run copies one), in the reader's batches; the link closes once
 * it is read (or abandoned). Filtered here, so a snapshot read again from its start never shows the run's
 * section another database's keys.
 */
async function* snapshotBatches(link: ReplicaLink, facts: FileFacts, db: number, followed: boolean): AsyncGenerator<RdbKey[]> {
  let read = false;
  try {
    const input = await link.snapshot();
    for await (const batch of readRdbInput(input, { onModuleAux: countModuleAux(facts) })) {
      const ours = batch.every((record) => record.db === db) ? batch : batch.filter((record) => record.db === db);
      if (ours.length > 0) yield ours;
    }
    await input.finish();
    read = true;
  } finally {
    // A followed link stays open for its stream.
    if (!read || !followed) link.close();
  }
}

/** A link's loss or a snapshot the reader refuses, as one line under READING. */
async function* linkErrors<T>(items: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* items;
  } catch (err) {
    if (err instanceof LinkLost) throw new SourceError(READING, `${err.message}; the keys copied before it stay on the target, and a rerun skips them`);
    // The reader's advice is for a file: a server's snapshot it cannot read is read key by key instead.
    if (err instanceof RdbFormatError) throw new SourceError(READING, `the source's snapshot: ${err.message.replace(/[,:] try RDB_READER=server.*$/, '')}: SOURCE_READER=scan reads this source key by key; the keys copied before it stay on the target`);
    throw err;
  }
}

/**
 * A new snapshot on `link` (a full resync given where a partial one was asked), for live mode: its records of the
 * run's database as the copy takes them; the link stays open for the stream after it.
 */
export function snapshotRecords(link: ReplicaLink, settings: Settings, stopped: () => boolean): AsyncIterable<RecordBatch> {
  const filters = { ...keySelection(settings), onlyDb: settings.source.db };
  const records = snapshotBatches(link, { moduleAux: new Map() }, settings.source.db, true);
  async function* batches(): AsyncGenerator<RecordBatch> {
    for await (const section of sectionsOf(records, filters, settings.pipelineBatchSize, stopped)) yield* linkErrors(section.batches);
  }
  return batches();
}
