// redis-keys-migrator: copies keys from a source Redis to a target Redis, skipping keys the target already has.
// The story of one run: settings, source (a server or an .rdb file), connect, select keys, copy (or compare,
// or dry run), verify, report. Exit codes are in EXIT.
import './lib/sized-heap.js';
import { config as loadDotenv } from 'dotenv';
import {
  addCounts, Checkpoint, CheckpointError, fingerprintOf, noCounts, readCheckpoint, resumeLine, startingPoints, total, type Previous, type UnitState,
} from './lib/checkpoint.js';
import { mergeBatches, sameServer, Side } from './lib/net/cluster.js';
import { ConnectionError, describeError, isRefusal } from './lib/net/connections.js';
import { DryRun, dryRunBatches } from './lib/dry-run.js';
import { ErrorLog } from './lib/error-log.js';
import { selectedKeys, type KeyBatch, type ScanRecovery, type ScanUnit, type SelectionCounts } from './lib/sources/scan.js';
import { Migration, type Counts, type MigrationResult } from './lib/migration.js';
import { Progress } from './lib/progress.js';
import { afterLossLines, countsText, summaryLines, timingLine, writeJsonSummary, type JsonSummary } from './lib/report.js';
import { Interruption, outliveClosedOutput } from './lib/runtime.js';
import { rdbFileVersion, RdbError, startRdbServer, type RdbServer } from './lib/sources/rdb-server.js';
import { Recovery } from './lib/net/recovery.js';
import { verifyFileChecksum } from './lib/rdb/checksum.js';
import { RdbFormatError } from './lib/rdb/reader.js';
import { databaseSections, otherDatabase } from './lib/sources/rdb-file.js';
import { parseSettings, renderHelp, SettingsError, unknownSettingWarnings, type Endpoint, type Settings } from './lib/settings.js';
import { liveSummaryLines, replicate, LiveRefusal, type LiveOutcome } from './lib/live/replicate.js';
import { applyFileLibraries, applyLibraries, sourceLibraries, type LibrariesOutcome, type LibraryOptions } from './lib/writers/functions.js';
import { copyVerification, differing, tallyLine, verifyAll, type CopyTallies, type CopyVerification, type VerificationSetup } from './lib/verify/comparison.js';

export const EXIT = {
  ok: 0,
  settingsOrConnection: 1,
  keysFailed: 2,
  errorLimitReached: 3,
  differencesFound: 4,
  interrupted: 130,
} as const;

const say = (line: string): void => void process.stdout.write(`${line}\n`);

/** What every kind of run shares once both sides answer. */
interface Session {
  settings: Settings;
  /** None when the keys come from an .rdb file read by our reader, each batch with its values. */
  source?: Side;
  target: Side;
  selection: SelectionCounts;
  keys: AsyncIterable<KeyBatch>;
  startedAt: Date;
  interruption: Interruption;
  /** Reconnects both sides after a loss (copy runs only). */
  recovery: Recovery;
  /** Each source master's scan: where it starts (a checkpoint's cursor, or 0), for CHECKPOINT_FILE. */
  units: UnitState[];
  previous: Previous;
  /** What the summary must say besides the counts (a scan that started over on another server). */
  notes: string[];
  /** The exit status the function libraries call for (a library not loaded, or missing in a comparison). */
  libraries: number;
  checkpoint?: Checkpoint;
}

async function main(): Promise<number> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(renderHelp());
    return EXIT.ok;
  }
  outliveClosedOutput();

  // 1. Settings: the environment wins over .env; a bad value stops us before any connection.
  loadDotenv({ quiet: true });
  for (const warning of unknownSettingWarnings(process.env)) process.stderr.write(`Warning: ${warning}\n`);
  let settings: Settings;
  try {
    settings = parseSettings(process.env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    say(`Error in settings : ${err.message}`);
    return EXIT.settingsOrConnection;
  }
  const interruption = new Interruption();

  // 2. The error log opens first, as the Python script's does; then, for an .rdb file, our reader (the default) or a private server.
  const log = new ErrorLog(settings.errorLogFile, settings.errorLogMode);
  if (settings.rdbFile && settings.rdbReader === 'native') {
    try {
      return await runFromFile(settings, log, interruption);
    } finally {
      log.close();
    }
  }
  let rdb: RdbServer | undefined;
  try {
    if (settings.rdbFile) rdb = await loadRdbFile(settings, interruption);

    // 3. Each database to copy (one, unless an .rdb file holds several): connect, select keys, run, report.
    const pairs = databasePairs(settings, rdb);
    let status: number = EXIT.ok;
    for (const pair of pairs) {
      if (interruption.requested) break;
      if (pairs.length > 1) say(`Database ${pair.source.db} -> ${pair.destination.db}`);
      status = worse(status, await runDatabase({ ...settings, ...pair }, log, interruption, pair === pairs[0]));
    }
    if (rdb) say(`Private redis-server for SOURCE_RDB_FILE: used_memory_human ${rdb.usedMemoryHuman}`);
    // Live mode's Ctrl-C is its cutover, which ends with its own status.
    return interruption.requested && !isLive(settings) ? EXIT.interrupted : status;
  } catch (err) {
    if (!(err instanceof RdbError)) throw err;
    say(`Error loading SOURCE_RDB_FILE : ${err.message}`);
    return interruption.requested ? EXIT.interrupted : EXIT.settingsOrConnection;
  } finally {
    log.close();
    await rdb?.stop();
  }
}

/**
 * RDB_READER=native: the file read in one pass, each database in turn copied (compared, dry-run) into the same
 * number on the target (or only SOURCE_REDIS_DB_INDEX's, into DESTINATION_REDIS_DB_INDEX), with no server on
 * the source side.
 */
async function runFromFile(settings: Settings, log: ErrorLog, interruption: Interruption): Promise<number> {
  const refusal = nativeRefusal(settings);
  if (refusal) {
    say(`Error in settings : ${refusal}`);
    return EXIT.settingsOrConnection;
  }
  const onlyDb = settings.sourceDbChosen ? settings.source.db : undefined;
  const filters = { match: settings.matchPattern, type: settings.scanType, exclude: settings.excludePattern, scanCount: settings.scanBatchSize, onlyDb };
  const facts = { version: 0 };
  const stopped = (): boolean => interruption.requested;
  let status: number = EXIT.ok;
  let sections = 0;
  try {
    await checkFileFirst(settings, stopped);
    status = librariesStatus(await applyFileLibraries(settings.rdbFile, settings.destination, libraryOptions(settings), log, say));
    for await (const section of databaseSections(settings.rdbFile, filters, settings.pipelineBatchSize, facts, stopped)) {
      const destination = onlyDb === undefined ? { ...settings.destination, db: section.db } : settings.destination;
      if (onlyDb === undefined) say(`Database ${section.db} -> ${destination.db}`);
      status = worse(status, await runSection({ ...settings, destination }, section.batches, section.counts, log, interruption));
      sections += 1;
    }
    if (sections === 0 && !stopped()) status = worse(status, await runSection(settings, emptySection(), { scanned: 0, excluded: 0 }, log, interruption));
  } catch (err) {
    if (!(err instanceof RdbFormatError || err instanceof RdbError)) throw err;
    say(`Error reading SOURCE_RDB_FILE : ${err.message}`);
    return stopped() ? EXIT.interrupted : EXIT.settingsOrConnection;
  }
  return stopped() ? EXIT.interrupted : status;
}

/**
 * Before a key is written, the file must be there and whole: a corrupt or truncated one is refused. A cluster
 * target takes db 0 only, and the reader learns a file's databases only as it reads, so with no
 * SOURCE_REDIS_DB_INDEX this first pass reads the records themselves (the reader checks the CRC at the end, as
 * the plain checksum pass does) and refuses at the first key in another database.
 */
async function checkFileFirst(settings: Settings, stopped: () => boolean): Promise<void> {
  rdbFileVersion(settings.rdbFile);
  if (!settings.destination.cluster || settings.sourceDbChosen) return verifyFileChecksum(settings.rdbFile, stopped);
  const other = await otherDatabase(settings.rdbFile, 0, stopped);
  if (other !== undefined) throw new RdbError(clusterRefusal(settings.rdbFile, `database ${other} (and maybe others)`));
}

/** A cluster has db 0 only: the one line refusing a file with keys elsewhere, for either reader. */
function clusterRefusal(file: string, databases: string): string {
  return `${file} has keys in ${databases}, and DESTINATION_REDIS_CLUSTER=true takes database 0 only: set SOURCE_REDIS_DB_INDEX to the one to copy`;
}

/** What RDB_READER=native does not do, in one line naming the setting; undefined when it can run. */
function nativeRefusal(settings: Settings): string | undefined {
  if (settings.copyMethod === 'type') return 'COPY_METHOD=type with SOURCE_RDB_FILE needs RDB_READER=server: this tool\'s own reader restores the values as the file holds them (COPY_METHOD=auto or dump)';
  if (settings.scanType && !CORE_TYPES.includes(settings.scanType.toLowerCase())) return `RDB_READER=native filters by the six core types (SCAN_TYPE ${CORE_TYPES.join(', ')}), got ${JSON.stringify(settings.scanType)}: use RDB_READER=server`;
  return undefined;
}

const CORE_TYPES = ['string', 'list', 'set', 'zset', 'hash', 'stream'];

async function* emptySection(): AsyncGenerator<KeyBatch> {}

/** One database of the file against the target: connect, then copy, compare or dry run as for a server. */
async function runSection(settings: Settings, batches: AsyncIterable<KeyBatch>, selection: SelectionCounts, log: ErrorLog, interruption: Interruption): Promise<number> {
  let target: Side | undefined;
  let recovery: Recovery | undefined;
  try {
    target = await Side.open(settings.destination);
    say('Connected to Redis instances successfully');
    recovery = new Recovery([target], settings.reconnectTimeoutMs, () => interruption.requested);
    const session: Session = {
      settings, target, selection, keys: batches, startedAt: new Date(), interruption, recovery, units: [], previous: { kind: 'none' }, notes: [], libraries: EXIT.ok,
    };
    return await runSession(session, log);
  } catch (err) {
    return stoppedBy(err, target ? [target] : []);
  } finally {
    recovery?.close();
    await target?.close();
  }
}

async function loadRdbFile(settings: Settings, interruption: Interruption): Promise<RdbServer> {
  const progress = (line: string): void => void process.stderr.write(`${line}\n`);
  const rdb = await startRdbServer(settings.rdbFile, settings.redisServerPath, progress, () => interruption.requested);
  say(`Loaded ${settings.rdbFile} into a private redis-server (used_memory_human ${rdb.usedMemoryHuman}; databases with keys: ${rdb.databases.join(', ') || 'none'})`);
  return rdb;
}

/**
 * The source and target of each database to copy: with an .rdb file and no db chosen, every db to the same
 * number. A cluster target has db 0 only, so a file with keys elsewhere must name the one db to copy.
 */
function databasePairs(settings: Settings, rdb: RdbServer | undefined): { source: Endpoint; destination: Endpoint }[] {
  if (!rdb) return [{ source: settings.source, destination: settings.destination }];
  if (settings.sourceDbChosen) return [{ source: rdb.endpoint(settings.source.db), destination: settings.destination }];
  const dbs = rdb.databases.length > 0 ? rdb.databases : [0];
  if (settings.destination.cluster && dbs.some((db) => db !== 0)) throw new RdbError(clusterRefusal(settings.rdbFile, `databases ${dbs.join(', ')}`));
  return dbs.map((db) => ({ source: rdb.endpoint(db), destination: { ...settings.destination, db } }));
}

/** Exit statuses from several databases: the most serious wins. */
function worse(a: number, b: number): number {
  const rank: number[] = [EXIT.ok, EXIT.differencesFound, EXIT.keysFailed, EXIT.errorLimitReached, EXIT.settingsOrConnection, EXIT.interrupted];
  return rank.indexOf(b) > rank.indexOf(a) ? b : a;
}

/** One database pair; the run's first also brings the function libraries (a server's, not a database's). */
async function runDatabase(settings: Settings, log: ErrorLog, interruption: Interruption, withLibraries: boolean): Promise<number> {
  let sides: [Side, Side] | undefined;
  let recovery: Recovery | undefined;
  try {
    // A copy's checkpoint of other settings is refused, and one of a finished migration ends the run, before
    // connecting. Compare and dry run read everything and keep no checkpoint.
    const copying = (settings.mode === 'copy' || isLive(settings)) && !settings.dryRun;
    const checkpointFile = copying ? settings.checkpointFile : '';
    const previous = checkpointFile ? readCheckpoint(checkpointFile, fingerprintOf(settings)) : ({ kind: 'none' } as const);
    if (previous.kind === 'complete') {
      say(`Nothing left to do: ${settings.checkpointFile} records a migration completed at ${previous.updatedAt} (${total(previous.counts)} keys); remove it to copy again`);
      return EXIT.ok;
    }
    sides = await connectBoth(settings);
    say('Connected to Redis instances successfully');

    // The keys: SCAN with MATCH and TYPE, less KEY_EXCLUDE_PATTERN, in batches; every master of a cluster at once,
    // each from the checkpoint's cursor when resuming on the same server.
    const [source, target] = sides;
    const identities = source.masters.map((m) => ({ address: `${m.endpoint.host}:${m.endpoint.port}`, label: m.label, runId: m.capabilities.runId, slots: source.slotRangesOf(m) }));
    const { units, notes: starts } = startingPoints(identities, target.masters.map((m) => m.capabilities.runId), previous);
    const resumed = previous.kind === 'resume' && units.some((u) => u.cursor !== '0');
    if (resumed) say(resumeLine(settings.checkpointFile, previous, units));
    for (const line of starts) say(line);
    const selection: SelectionCounts = { scanned: 0, excluded: 0 };
    recovery = new Recovery([source, target], settings.reconnectTimeoutMs, () => interruption.requested);
    const notes: string[] = [];
    // Only a copy gets past lost connections; compare and dry run stop with one line, as before.
    const hooks = copying ? scanHooks(recovery, notes, () => session.checkpoint) : undefined;
    const keys = selectKeys(settings, source, selection, units, hooks);
    // Libraries before keys, so keys restored afterwards find them.
    const libraries = withLibraries ? librariesStatus(await applyLibraries(await sourceLibraries(source), target, libraryOptions(settings), log, say)) : EXIT.ok;
    const session: Session = { settings, source, target, selection, keys, startedAt: new Date(), interruption, recovery, units, previous, notes, libraries };
    return await runSession(session, log);
  } catch (err) {
    return stoppedBy(err, sides ?? []);
  } finally {
    recovery?.close();
    await Promise.all(sides?.map((side) => side.close()) ?? []);
  }
}

/** Whatever the source: a dry run, a compare, or the copy. */
async function runSession(session: Session, log: ErrorLog): Promise<number> {
  if (session.settings.dryRun) return dryRun(session);
  if (session.settings.mode === 'compare') return compare(session);
  if (isLive(session.settings)) return live(session, log);
  return copy(session, log);
}

/** A run stopped by a refused setting, a connection that failed or was lost, or a refusal: one line, exit 1. */
function stoppedBy(err: unknown, sides: readonly Side[]): number {
  if (err instanceof CheckpointError) {
    say(`Error in settings : ${err.message}`);
    return EXIT.settingsOrConnection;
  }
  if (err instanceof ConnectionError) {
    say(`Error connecting to Redis : ${err.message}`);
    return EXIT.settingsOrConnection;
  }
  const lost = sides.find((side) => side.lost)?.lost;
  if (lost) say(`Stopped early: lost the connection to ${lost.label} (${lost.lostBecause ?? describeError(err)})`);
  else if (isRefusal(err)) say(`Stopped early: ${describeError(err)}`);
  else throw err;
  return EXIT.settingsOrConnection;
}

/** Every source master's scan, merged; each starts at its checkpoint cursor, or 0. */
function selectKeys(settings: Settings, source: Side, selection: SelectionCounts, units: readonly UnitState[], hooks?: ScanRecovery): AsyncIterable<KeyBatch> {
  const filters = { match: settings.matchPattern, type: settings.scanType, exclude: settings.excludePattern, scanCount: settings.scanBatchSize };
  const scans = source.mastersBySlot.map(({ slot }, index) => {
    const unit: ScanUnit = { index, node: () => source.nodeForSlot(slot), startCursor: units[index]?.cursor ?? '0' };
    return selectedKeys(unit, filters, settings.pipelineBatchSize, selection, hooks);
  });
  return mergeBatches(scans);
}

/**
 * How a copy's scans get past lost connections: a SCAN continues from its cursor on the same server, and
 * starts over on another one (a restart, a failover), which the run says and the checkpoint records.
 */
function scanHooks(recovery: Recovery, notes: string[], checkpoint: () => Checkpoint | undefined): ScanRecovery {
  return {
    recover: (label, err, lostSince) => recovery.recover(label, err, lostSince),
    restarted: (unit, label) => {
      const line = `${label} is another server than when its scan began (restarted or failed over): its keys are scanned again from the start, and those already copied count as skipped`;
      notes.push(line);
      checkpoint()?.restarted(unit.index, unit.node());
    },
  };
}

async function connectBoth(settings: Settings): Promise<[Side, Side]> {
  const [source, target] = await Promise.allSettled([Side.open(settings.source), Side.open(settings.destination)]);
  if (source.status === 'fulfilled' && target.status === 'fulfilled') {
    if (!sameServer(source.value, target.value)) return [source.value, target.value];
    await Promise.all([source.value.close(), target.value.close()]);
    throw new ConnectionError(`the source and the target are the same server (run_id ${source.value.masters[0]?.capabilities.runId}) and database ${settings.source.db}: nothing would be copied`);
  }
  if (source.status === 'fulfilled') await source.value.close();
  if (target.status === 'fulfilled') await target.value.close();
  throw source.status === 'rejected' ? source.reason : (target as PromiseRejectedResult).reason;
}

/** The copy: batches in flight, pacing, the error limit; then the summary and, with VERIFY=true, the check. */
async function copy(session: Session, log: ErrorLog): Promise<number> {
  const { settings, source, target, recovery } = session;
  const verification = settings.verify ? copyVerification(verificationSetup(session)) : undefined;
  const before = session.previous.kind === 'resume' ? session.previous.counts : undefined;
  if (settings.checkpointFile) {
    const targetRunIds = target.masters.map((m) => m.capabilities.runId);
    session.checkpoint = new Checkpoint(settings.checkpointFile, fingerprintOf(settings), session.units, targetRunIds, before ?? noCounts());
  }
  try {
    const stats = { bytesMoved: 0 };
    const migration = new Migration({ source, target, settings, stats, recovery, checkpoint: session.checkpoint }, log, say, verification);
    session.interruption.onRequest(() => migration.interrupt());
    const progress = await startProgress(session, () => ({ ...migration.counts, bytes: stats.bytesMoved, waiting: recovery.waiting }));
    const result = await migration.copyAll(verification ? verification.follow(session.keys) : session.keys);
    progress.stop();

    // With a checkpoint, the counts cover the whole migration; this run's share gets a line of its own.
    const whole = before ? { ...result, counts: addCounts(before, result.counts) } : result;
    for (const line of summaryLines(whole, settings.errorLogFile, session.selection.excluded, settings.excludePattern !== '', settings.scanType)) say(line);
    if (before) say(`This run: ${countsText(result.counts)} (the counts above include earlier runs of ${settings.checkpointFile})`);
    for (const note of session.notes) say(note);
    for (const line of afterLossLines(target.mastersReplacedSinceStart, recovery.reconnections)) say(line);
    const timing = timingOf(session, stats.bytesMoved);
    say(timingLine(timing));
    // After a fatal stop the status says so already; otherwise a source that resharded leaves the copy incomplete.
    const slotsStayed = result.fatal !== undefined || (await sourceStayedPut(session));
    if (session.checkpoint) await finishCheckpoint(session, session.checkpoint, whole, slotsStayed);
    const verified = verification && !result.fatal && !result.interrupted ? await verifyCopy(verification) : undefined;
    const status = worse(session.libraries, slotsStayed ? copyExitStatus(whole, verified ? differing(verified.copied) : 0) : EXIT.settingsOrConnection);
    writeSummary(settings, {
      mode: 'copy',
      counts: { ...whole.counts, excluded: session.selection.excluded },
      crossing: result.crossing,
      method: { requested: settings.copyMethod, used: migration.methodUsed, fallbackReason: result.fallbackReason ?? null },
      verification: verified,
      timing,
      exitStatus: status,
    });
    return status;
  } finally {
    verification?.remove();
  }
}

/**
 * MIGRATION_MODE=live or liveonly: subscribed to the source's changes, a copy (live), then every change applied
 * until the cutover (Ctrl-C, SIGTERM, LIVE_IDLE_TIMEOUT), then the changed keys verified.
 */
async function live(session: Session, log: ErrorLog): Promise<number> {
  const { settings, target } = session;
  const source = session.source as Side;
  let outcome: LiveOutcome;
  try {
    outcome = await replicate({
      settings, source, target, snapshot: session.keys, recovery: session.recovery, interruption: session.interruption, log, say,
      rescan: () => selectKeys(settings, source, { scanned: 0, excluded: 0 }, []),
      // Ctrl-C is the cutover, which the verification belongs to (a second one stops the process at once).
      verification: { ...verificationSetup(session), shouldStop: () => false },
      startProgress: (counts) => startProgress(session, counts),
    });
  } catch (err) {
    if (!(err instanceof LiveRefusal)) throw err;
    say(`Cannot replicate live : ${err.message}`);
    return EXIT.settingsOrConnection;
  }
  for (const line of liveSummaryLines(outcome, settings.errorLogFile)) say(line);
  const timing = timingOf(session, 0);
  say(timingLine(timing));
  const status = worse(session.libraries, liveExitStatus(outcome));
  writeSummary(settings, {
    mode: settings.mode === 'live' ? 'live' : 'liveonly',
    counts: outcome.snapshot ? { ...outcome.snapshot.counts, excluded: session.selection.excluded } : undefined,
    live: {
      applied: outcome.live.counts.restored, deleted: outcome.deleted, failed: outcome.live.counts.failed, events: outcome.events, gaps: outcome.gapCount,
      repairs: outcome.repairs, lag_ms: outcome.lag, ended: outcome.ended,
    },
    verification: outcome.verification ? { live: outcome.verification } : undefined,
    timing,
    exitStatus: status,
  });
  return status;
}

function liveExitStatus(outcome: LiveOutcome): number {
  if (outcome.snapshot?.interrupted) return EXIT.interrupted;
  if (outcome.fatal) return EXIT.settingsOrConnection;
  if (outcome.snapshot?.errorLimitReached || outcome.live.errorLimitReached) return EXIT.errorLimitReached;
  if ((outcome.snapshot?.counts.failed ?? 0) + outcome.live.counts.failed > 0) return EXIT.keysFailed;
  return outcome.verification && differing(outcome.verification) > 0 ? EXIT.differencesFound : EXIT.ok;
}

const isLive = (settings: Settings): boolean => settings.mode === 'live' || settings.mode === 'liveonly';

/**
 * The checkpoint's last write: complete only when every scan is done with no key failed; void when the target
 * was replaced during the run (what the cursors vouch for may be gone), so the next run starts over.
 */
async function finishCheckpoint(session: Session, checkpoint: Checkpoint, whole: MigrationResult, slotsStayed: boolean): Promise<void> {
  const file = session.settings.checkpointFile;
  const clean = slotsStayed && !whole.fatal && !whole.interrupted && !whole.errorLimitReached;
  const ending = session.target.mastersReplacedSinceStart ? 'void' : clean && checkpoint.scanned && whole.counts.failed === 0 ? 'complete' : 'resume';
  await checkpoint.finish(ending);
  if (checkpoint.problem) say(`Could not write ${file}: ${checkpoint.problem}`);
  else if (ending === 'void') say(`${file} was reset: the target was replaced during the run, so a rerun reads every key again (keys present are skipped)`);
  else if (ending === 'resume' && clean && checkpoint.scanned) say(`${whole.counts.failed} keys failed (see the error log); a rerun with ${file} does not retry them: remove it and run again to retry them (keys present are skipped)`);
  else if (ending === 'resume') say(`Progress saved in ${file}: run again with it to resume`);
}

/** Compare mode: nothing is written; every selected source key is checked against the target. */
async function compare(session: Session): Promise<number> {
  const tally = await verifyAll(verificationSetup(session), session.keys);
  say(tallyLine(tally));
  const slotsStayed = await sourceStayedPut(session);
  const status = worse(session.libraries, compareExitStatus(session.interruption.requested, slotsStayed, differing(tally)));
  writeSummary(session.settings, { mode: 'compare', verification: { compare: tally }, timing: timingOf(session, 0), exitStatus: status });
  return status;
}

/**
 * A cluster source is scanned master by master, so a key whose slot moved during the run (resharding, a
 * failover) may have been passed over. Such a run is not called complete. (A file stays put.)
 */
async function sourceStayedPut(session: Session): Promise<boolean> {
  if (!(await session.source?.slotsMovedSinceStart())) return true;
  say('The source cluster\'s slots moved during the run: keys that moved between masters may have been missed. Run it again (keys already copied are skipped).');
  return false;
}

/** DRY_RUN: what a copy would do, from reads only. */
async function dryRun(session: Session): Promise<number> {
  const report = new DryRun(session.source, session.target);
  await dryRunBatches(report, session.keys, () => session.interruption.requested);
  for (const line of report.report(session.settings.overwrite)) say(line);
  const status = session.interruption.requested ? EXIT.interrupted : EXIT.ok;
  writeSummary(session.settings, { mode: 'dry-run', timing: timingOf(session, 0), exitStatus: status });
  return status;
}

/** With VERIFY=true: the keys the copy restored, then those it skipped, each with its own line. */
async function verifyCopy(verification: CopyVerification): Promise<CopyTallies> {
  const { copied, skipped } = await verification.finish();
  say(`Verification of copied keys: ${tallyLine(copied)}`);
  if (skipped.checked + skipped.vanished > 0) say(`Verification of skipped keys (already on the target): ${tallyLine(skipped)}`);
  return { copied, skipped };
}

function verificationSetup(session: Session): VerificationSetup {
  const { settings } = session;
  return {
    source: session.source,
    target: session.target,
    options: { ttlToleranceMs: settings.ttlToleranceMs, chunkSize: settings.chunkSize, dumpMaxBytes: settings.dumpMaxBytes },
    batchSize: settings.pipelineBatchSize,
    output: { showDiffs: settings.showDiffs, reportFile: settings.diffReportFile, say },
    shouldStop: () => session.interruption.requested,
  };
}

/**
 * Progress counts keys against the source's DBSIZE (summed over a cluster's masters), the best estimate SCAN
 * allows; a file's key count is known only once it is read.
 */
async function startProgress(session: Session, counts: () => MigrationResult['counts'] & { bytes: number }): Promise<Progress> {
  const sizes = await Promise.all((session.source?.masters ?? []).map((master) => master.send(['DBSIZE'])));
  const total = sizes.reduce<number>((sum, size) => sum + Number(size), 0);
  return new Progress(session.settings.progress, () => ({ ...counts(), scanned: session.selection.scanned, total }));
}

function timingOf(session: Session, bytes: number): JsonSummary['timing'] {
  return { startedAt: session.startedAt, finishedAt: new Date(), keys: session.selection.scanned, bytes };
}

function libraryOptions(settings: Settings): LibraryOptions {
  const mode = settings.dryRun ? 'dry-run' : settings.mode === 'compare' ? 'compare' : 'copy';
  return { mode, enabled: settings.copyFunctions, overwrite: settings.overwrite };
}

/** Libraries not loaded count as failed keys do (exit 2); missing ones in a comparison as differences (exit 4). */
function librariesStatus(outcome: LibrariesOutcome): number {
  if (outcome.failed > 0) return EXIT.keysFailed;
  return outcome.differences > 0 ? EXIT.differencesFound : EXIT.ok;
}

function writeSummary(settings: Settings, summary: JsonSummary): void {
  if (settings.summaryJsonFile) writeJsonSummary(settings.summaryJsonFile, summary);
}

function compareExitStatus(interrupted: boolean, slotsStayed: boolean, differences: number): number {
  if (interrupted) return EXIT.interrupted;
  if (!slotsStayed) return EXIT.settingsOrConnection;
  return differences > 0 ? EXIT.differencesFound : EXIT.ok;
}

function copyExitStatus(result: MigrationResult, differences: number): number {
  if (result.interrupted) return EXIT.interrupted;
  if (result.fatal) return EXIT.settingsOrConnection;
  if (result.errorLimitReached) return EXIT.errorLimitReached;
  if (result.counts.failed > 0) return EXIT.keysFailed;
  if (differences > 0) return EXIT.differencesFound;
  return EXIT.ok;
}

process.exitCode = await main();
