// One database of a run, connected: both sides (or the target alone, for a file read by our reader), the
// selected keys, the checkpoint to resume from, and what every mode shares (progress, timing, the summary).
import { slotSetOf } from '../net/cluster.js';
import { Checkpoint, fingerprintOf, readCheckpoint, resumeLine, startingPoints, type Previous, type UnitState, CheckpointError } from '../copy/checkpoint.js';
import type { LibrariesOutcome, LibraryOptions } from '../copy/functions.js';
import { ConnectionError, describeError, isRefusal } from '../net/connections.js';
import { Recovery } from '../net/recovery.js';
import { readings } from '../report/metrics.js';
import { sameServer, sameServerRefusal, Side } from '../net/side.js';
import { noBatches, noSelection, type RecordBatch, type SelectionCounts } from '../records.js';
import type { Interruption } from '../runtime.js';
import { slotRangesText, type Settings } from '../settings.js';
import { SourceError, type Database, type StreamSource } from '../sources/source.js';
import type { StreamPosition } from '../sources/replica-link.js';
import { readStreamCheckpoint } from '../live/stream-checkpoint.js';
import { scanMasters, type ScanRecovery } from '../sources/scan.js';
import { withValues } from '../sources/server-values.js';
import type { VerificationSetup } from '../verify/comparison.js';
import { Progress, type ProgressSnapshot } from '../report/progress.js';
import { writeJsonSummary, type JsonSummary } from '../report/summary.js';
import { EXIT } from './exit.js';

export const say = (line: string): void => void process.stdout.write(`${line}\n`);

/** What every kind of run shares once the sides answer. */
export interface Session {
  settings: Settings;
  /** None when the keys come with their values: from an .rdb file read by our reader, or a snapshot. */
  source?: Side;
  /** The server a snapshot came from (SOURCE_READER=replication): its size, and its slots, for the run's end. */
  origin?: Side;
  /** MIGRATION_MODE=live read as a replica: the streams to follow after the snapshot. */
  stream?: StreamSource;
  target: Side;
  selection: SelectionCounts;
  keys: AsyncIterable<RecordBatch>;
  startedAt: Date;
  interruption: Interruption;
  /** Reconnects the sides after a loss (copy runs only). */
  recovery: Recovery;
  /** Each source master's scan: where it starts (a checkpoint's cursor, or 0), for CHECKPOINT_FILE. */
  units: UnitState[];
  previous: Previous;
  /** What the summary must say besides the counts (a scan that started over on another server). */
  notes: string[];
  /** The function libraries' part of the exit status (a library not loaded, or missing in a comparison). */
  libraries: LibrariesOutcome;
  checkpoint?: Checkpoint;
}

export const isLive = (settings: Settings): boolean => settings.mode === 'live' || settings.mode === 'liveonly';

/** Whether the run writes and keeps a checkpoint: a copy (or live copy), not a compare or a dry run. */
const isCopying = (settings: Settings): boolean => (settings.mode === 'copy' || isLive(settings)) && !settings.dryRun;

/**
 * A copy's checkpoint, read before connecting: one of other settings is refused (CheckpointError), and one of
 * a finished migration ends the run. Compare and dry run read everything and keep no checkpoint.
 */
export function previousRun(settings: Settings): Previous {
  // Live mode keeps its own (lib/live/stream-checkpoint.ts: replication offsets, read as the source opens).
  return isCopying(settings) && !isLive(settings) && settings.checkpointFile ? readCheckpoint(settings.checkpointFile, fingerprintOf(settings)) : { kind: 'none' };
}

/**
 * Live mode read as a replica: the stream positions its CHECKPOINT_FILE records (undefined: none, or not such a
 * run). A checkpoint of other settings, or of a copy, is refused in one line, before anything connects.
 */
export function streamPositions(settings: Settings): StreamPosition[] | undefined {
  if (settings.mode !== 'live' || !settings.checkpointFile || settings.sourceReader === 'scan') return undefined;
  try {
    return readStreamCheckpoint(settings.checkpointFile, fingerprintOf(settings));
  } catch (err) {
    if (err instanceof CheckpointError) throw new SourceError('Error in settings', err.message);
    throw err;
  }
}

/** Connects the database's sides and selects its keys: a file's records as they come, or every master's scan. */
export async function connect(database: Database, previous: Previous, interruption: Interruption): Promise<Session> {
  const { settings, file, origin } = database;
  // A snapshot's source checked the target before its fork (lib/sources/replication.ts).
  const [source, target] = file ? [undefined, await Side.open(settings.target)] : await connectBoth(settings);
  say('Connected to Redis instances successfully');
  if (database.reading) say(database.reading);
  // SOURCE_READ_FROM: which replica each master's reads go to, and how far behind it is.
  for (const note of (source ?? origin)?.notes ?? []) say(note);
  const recovery = new Recovery(source ? [source, target] : [target], settings.reconnectTimeoutMs, () => interruption.requested);
  const session: Session = {
    settings, source, origin, target, selection: file?.counts ?? noSelection(), keys: file?.batches ?? noBatches(), startedAt: new Date(), interruption,
    recovery, units: [], previous, notes: [], libraries: { failed: 0, differences: 0 }, stream: database.stream,
  };
  if (source) session.keys = selectKeys(session, source);
  return session;
}

/**
 * The keys: SCAN with MATCH and TYPE, less KEY_EXCLUDE_PATTERN, in batches; every master of a cluster at once,
 * each from the checkpoint's cursor when resuming on the same server.
 */
function selectKeys(session: Session, source: Side): AsyncIterable<RecordBatch> {
  const { settings, previous } = session;
  const identities = source.masters.map((m) => ({ address: `${m.endpoint.host}:${m.endpoint.port}`, label: m.label, runId: m.capabilities.runId, slots: source.slotRangesOf(m) }));
  const { units, notes } = startingPoints(identities, session.target.masters.map((m) => m.capabilities.runId), previous);
  if (previous.kind === 'resume' && units.some((u) => u.cursor !== '0')) say(resumeLine(settings.checkpointFile, previous, units));
  for (const line of notes) say(line);
  session.units = units;
  // Only a copy gets past lost connections; compare and dry run stop with one line, as before.
  const hooks = isCopying(settings) ? scanRecovery(session) : undefined;
  return withValues(scanMasters(settings, source, session.selection, units.map((u) => u.cursor), hooks), source, settings);
}

/**
 * How a copy's scans get past lost connections: a SCAN continues from its cursor on the same server, and
 * starts over on another one (a restart, a failover), which the run says and the checkpoint records.
 */
function scanRecovery(session: Session): ScanRecovery {
  return {
    recover: (label, err, lostSince) => session.recovery.recover(label, err, lostSince),
    restarted: (unit, label) => {
      const line = `${label} is another server than when its scan began (restarted or failed over): its keys are scanned again from the start, and those already copied count as skipped`;
      session.notes.push(line);
      session.checkpoint?.restarted(unit.index, unit.node());
    },
  };
}

async function connectBoth(settings: Settings): Promise<[Side, Side]> {
  const [source, target] = await Promise.allSettled([Side.open(settings.source, slotSetOf(settings.sharding)), Side.open(settings.target)]);
  if (source.status === 'fulfilled' && target.status === 'fulfilled') {
    if (!sameServer(source.value, target.value)) return [source.value, target.value];
    await Promise.all([source.value.close(), target.value.close()]);
    throw new ConnectionError(sameServerRefusal(source.value, settings.source.db));
  }
  if (source.status === 'fulfilled') await source.value.close();
  if (target.status === 'fulfilled') await target.value.close();
  throw source.status === 'rejected' ? source.reason : (target as PromiseRejectedResult).reason;
}

export async function disconnect(session: Session | undefined): Promise<void> {
  session?.recovery.close();
  await Promise.all([session?.source?.close(), session?.target.close()]);
}

/** A run stopped by a refused setting, a connection that failed or was lost, or a refusal: one line, exit 1. */
export function stoppedBy(err: unknown, session: Session | undefined): number {
  if (err instanceof CheckpointError) {
    say(`Error in settings : ${err.message}`);
    return EXIT.settingsOrConnection;
  }
  if (err instanceof ConnectionError) {
    say(`Error connecting to Redis : ${err.message}`);
    return EXIT.settingsOrConnection;
  }
  const sides = session ? [session.source, session.target] : [];
  const lost = sides.find((side) => side?.lost)?.lost;
  if (lost) say(`Stopped early: lost the connection to ${lost.label} (${lost.lostBecause ?? describeError(err)})`);
  else if (isRefusal(err)) say(`Stopped early: ${describeError(err)}`);
  else throw err;
  return EXIT.settingsOrConnection;
}

/**
 * A cluster source is scanned master by master, so a key whose slot moved during the run (resharding, a
 * failover) may have been passed over. Such a run is not called complete. (A file stays put.)
 */
export async function sourceStayedPut(session: Session): Promise<boolean> {
  if (!(await (session.source ?? session.origin)?.slotsMovedSinceStart())) return true;
  say('The source cluster\'s slots moved during the run: keys that moved between masters may have been missed. Run it again (keys already copied are skipped).');
  return false;
}

export function verificationSetup(session: Session): VerificationSetup {
  const { settings } = session;
  return {
    // A snapshot's copy is checked against its source as it is now, as a scanned copy is.
    source: session.source ?? session.origin,
    target: session.target,
    options: { ttlToleranceMs: settings.ttlToleranceMs, chunkSize: settings.chunkSize, dumpMaxBytes: settings.dumpMaxBytes, names: settings.names },
    batchSize: settings.pipelineBatchSize,
    output: { showDiffs: settings.showDiffs, reportFile: settings.diffReportFile, say },
    shouldStop: () => session.interruption.requested,
  };
}

/**
 * Progress counts keys against the source's DBSIZE (summed over a cluster's masters, and in proportion to the
 * slots the run covers), the best estimate SCAN allows; a file's key count is known only once it is read.
 */
export async function startProgress(session: Session, counts: () => Omit<ProgressSnapshot, 'scanned' | 'total'>): Promise<Progress> {
  const side = session.source ?? session.origin;
  // A run limited to some slots (SOURCE_SLOTS, a shard) expects each master's keys in proportion to its slots.
  const shares = side ? side.masters.map((master) => ({ master, share: side.shareOf(master) })) : [];
  const sizes = await Promise.all(shares.map(async ({ master, share }) => Number(await master.send(['DBSIZE'])) * share));
  const total = Math.round(sizes.reduce((sum, size) => sum + size, 0));
  readings.progress = () => ({ ...counts(), scanned: session.selection.scanned, total });
  readings.reconnects = () => session.recovery.reconnections;
  return new Progress(session.settings.progress, readings.progress);
}

export function timingOf(session: Session, bytes: number): JsonSummary['timing'] {
  return { startedAt: session.startedAt, finishedAt: new Date(), keys: session.selection.scanned, bytes };
}

export function libraryOptions(settings: Settings): LibraryOptions {
  const mode = settings.dryRun ? 'dry-run' : settings.mode === 'compare' ? 'compare' : 'copy';
  return { mode, enabled: settings.copyFunctions, overwrite: settings.overwrite };
}

export function writeSummary(settings: Settings, summary: JsonSummary): void {
  const { index, count, slots } = settings.sharding;
  const shard = slots ? { shard: { index, count, slots: slotRangesText(slots) } } : {};
  if (settings.summaryJsonFile) writeJsonSummary(settings.summaryJsonFile, { ...summary, ...shard });
}
