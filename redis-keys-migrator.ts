// redis-keys-migrator: copies keys from a source Redis to a target Redis, skipping keys the target already has.
// The story of one run: settings, source (a server or a cluster, read as its replica or by SCAN, or an .rdb file),
// then for each database: connect, select keys, copy (or compare, or dry run, or live), verify, report. Exit codes:
// lib/run/exit.ts.
import './lib/sized-heap.js';
import { config as loadDotenv } from 'dotenv';
import { applyLibraries } from './lib/copy/functions.js';
import { total } from './lib/records.js';
import { compare } from './lib/run/compare.js';
import { copy } from './lib/run/copy.js';
import { dryRun } from './lib/run/dry-run.js';
import { ErrorLog } from './lib/report/error-log.js';
import { shardLine } from './lib/report/summary.js';
import { reportToParent, serveMetrics } from './lib/report/metrics.js';
import { EXIT, worse } from './lib/run/exit.js';
import { live } from './lib/run/live.js';
import { runWorkers } from './lib/run/workers.js';
import { connect, disconnect, isLive, libraryOptions, previousRun, say, stoppedBy, streamPositions, type Session } from './lib/run/session.js';
import { holdYoungGeneration, Interruption, outliveClosedOutput } from './lib/runtime.js';
import { parseSettings, readsFileItself, renderHelp, SettingsError, unknownSettingWarnings, type Settings } from './lib/settings.js';
import { openSource } from './lib/sources/open.js';
import { SourceError, type Database, type Source } from './lib/sources/source.js';

async function main(): Promise<number> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(renderHelp());
    return EXIT.ok;
  }
  outliveClosedOutput();

  // 1. Settings: the environment wins over .env; a bad value stops us before any connection.
  const settings = readSettings();
  if (!settings) return EXIT.settingsOrConnection;
  const shard = shardLine(settings.sharding);
  if (shard) say(shard);
  // The run's figures: sent to the run that started this one (as one of its WORKERS), and on METRICS_PORT.
  reportToParent();
  if (!(await metricsServed(settings))) return EXIT.settingsOrConnection;
  // WORKERS=N: this run as N processes, each a share of the slots (lib/run/workers.ts).
  if (settings.workers > 1) return runWorkers(settings);
  // A copy that waits on servers keeps a small young generation for free (a snapshot's too, measured); our file
  // reader is CPU-bound, and pays for it.
  if (!readsFileItself(settings)) holdYoungGeneration();
  const interruption = new Interruption();
  const stopped = (): boolean => interruption.requested;

  // 2. The error log opens first, as the Python script's does; then the source: a server (read as its replica
  //    once the target answers, or scanned), or an .rdb file read by our reader (checked whole before any key is
  //    written) or loaded into a private redis-server.
  const log = new ErrorLog(settings.errorLogFile, settings.errorLogMode);
  let source: Source | undefined;
  try {
    source = await openSource(settings, stopped, { say, progress: (line) => void process.stderr.write(`${line}\n`) }, streamPositions(settings));

    // 3. Each database (one, unless an .rdb file holds several): connect, select keys, run, report.
    let status: number = EXIT.ok;
    let first = true;
    for await (const database of source.databases(stopped)) {
      if (stopped()) break;
      if (database.heading) say(database.heading);
      status = worse(status, await runDatabase(database, source, log, interruption, first));
      first = false;
    }
    const ending = source.ending();
    for (const line of ending.lines) say(line);
    for (const { key, reason } of ending.failedKeys ?? []) log.keyFailed(key, reason);
    if (ending.failed > 0) status = worse(status, EXIT.keysFailed);
    // Live mode's Ctrl-C is its cutover, which ends with its own status.
    return stopped() && !isLive(settings) ? EXIT.interrupted : status;
  } catch (err) {
    if (!(err instanceof SourceError)) throw err;
    say(`${err.heading} : ${err.message}`);
    return stopped() ? EXIT.interrupted : EXIT.settingsOrConnection;
  } finally {
    log.close();
    await source?.close();
  }
}

/** METRICS_PORT: served for the whole run; false (said in one line) when the port cannot be had. */
async function metricsServed(settings: Settings): Promise<boolean> {
  if (settings.metricsPort === 0) return true;
  try {
    await serveMetrics(settings.metricsPort, String(settings.sharding.index));
    return true;
  } catch (err) {
    say(`Error in settings : ${err instanceof Error ? err.message : String(err)}`);
    return false;
  }
}

function readSettings(): Settings | undefined {
  loadDotenv({ quiet: true });
  for (const warning of unknownSettingWarnings(process.env)) process.stderr.write(`Warning: ${warning}\n`);
  try {
    return parseSettings(process.env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    say(`Error in settings : ${err.message}`);
    return undefined;
  }
}

/**
 * One database: a finished checkpoint ends it before connecting; otherwise connect and select its keys, bring
 * the function libraries first (the run's first database: they are a server's, not a database's), then copy,
 * compare, dry-run or replicate live. A lost server or a refusal ends it in one line.
 */
async function runDatabase(database: Database, source: Source, log: ErrorLog, interruption: Interruption, first: boolean): Promise<number> {
  const { settings } = database;
  let session: Session | undefined;
  try {
    const previous = previousRun(settings);
    if (previous.kind === 'complete') {
      say(`Nothing left to do: ${settings.checkpointFile} records a migration completed at ${previous.updatedAt} (${total(previous.counts)} keys); remove it to copy again`);
      return EXIT.ok;
    }
    session = await connect(database, previous, interruption);
    if (first) session.libraries = await applyLibraries(await source.libraries(session.source), session.target, libraryOptions(settings), log, say);
    if (settings.dryRun) return await dryRun(session);
    if (settings.mode === 'compare') return await compare(session);
    if (isLive(settings)) return await live(session, log);
    return await copy(session, log);
  } catch (err) {
    return stoppedBy(err, session);
  } finally {
    await disconnect(session);
  }
}

process.exitCode = await main();
