// redis-keys-migrator: copies keys from a source Redis to a target Redis, skipping keys the target already has.
// The story of one run: settings, connect, scan and copy (or compare), verify, report. Exit codes are in EXIT.
import { config as loadDotenv } from 'dotenv';
import { Connection, ConnectionError, describeError } from './lib/connections.js';
import { ErrorLog } from './lib/error-log.js';
import { Migration, scanBatches, type MigrationResult } from './lib/migration.js';
import { onInterrupt, runWithSizedHeap } from './lib/runtime.js';
import { parseSettings, renderHelp, SettingsError, type Settings } from './lib/settings.js';
import { differing, KeyJournal, tallyLine, verifyAll, verifyJournal, type Tally, type VerificationSetup } from './lib/verification.js';

export const EXIT = {
  ok: 0,
  settingsOrConnection: 1,
  keysFailed: 2,
  errorLimitReached: 3,
  differencesFound: 4,
  interrupted: 130,
} as const;

const say = (line: string): void => void process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(renderHelp());
    return EXIT.ok;
  }
  await runWithSizedHeap();

  // 1. Settings: the environment wins over .env; a bad value stops us before any connection.
  loadDotenv({ quiet: true });
  let settings: Settings;
  try {
    settings = parseSettings(process.env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    say(`Error in settings : ${err.message}`);
    return EXIT.settingsOrConnection;
  }

  // 2. The error log opens first, as the Python script's does; then both servers, which must answer PING.
  const log = new ErrorLog(settings.errorLogFile, settings.errorLogMode);
  let connections: [Connection, Connection] | undefined;
  try {
    connections = await connectBoth(settings);
    say('Connected to Redis instances successfully');
    const [source, target] = connections;
    let interrupted = false;
    const verification: VerificationSetup = {
      source,
      target,
      options: { ttlToleranceMs: settings.ttlToleranceMs, chunkSize: settings.chunkSize, dumpMaxBytes: settings.dumpMaxBytes },
      batchSize: settings.pipelineBatchSize,
      output: { showDiffs: settings.showDiffs, reportFile: settings.diffReportFile, say },
      shouldStop: () => interrupted,
    };

    // 3a. Compare mode: nothing is written; every source key is checked against the target.
    if (settings.mode === 'compare') {
      onInterrupt(() => (interrupted = true));
      const batches = scanBatches(source, settings.matchPattern, settings.scanBatchSize, settings.pipelineBatchSize);
      const tally = await verifyAll(verification, batches);
      say(tallyLine(tally));
      return interrupted ? EXIT.interrupted : differing(tally) > 0 ? EXIT.differencesFound : EXIT.ok;
    }

    // 3b. Scan and copy, until done, the error limit or Ctrl-C.
    const journal = settings.verify ? new KeyJournal() : undefined;
    try {
      const migration = new Migration({ source, target, settings, sourceScripts: true, targetScripts: true }, log, say, journal);
      onInterrupt(() => {
        interrupted = true;
        migration.interrupt();
      });
      const result = await migration.run();
      journal?.finishWriting();

      // 4. Report, then verify what the copy covered.
      report(result, settings);
      let differences = 0;
      if (journal && !result.fatal && !interrupted) differences = await verifyCopy(verification, journal);
      return exitCode(result, differences);
    } finally {
      journal?.remove();
    }
  } catch (err) {
    if (err instanceof ConnectionError) {
      say(`Error connecting to Redis : ${err.message}`);
      return EXIT.settingsOrConnection;
    }
    const lost = connections?.find((c) => c.lostBecause !== undefined);
    if (!lost) throw err;
    say(`Stopped early: lost the connection to ${lost.label} (${lost.lostBecause ?? describeError(err)})`);
    return EXIT.settingsOrConnection;
  } finally {
    log.close();
    await Promise.all(connections?.map((c) => c.close()) ?? []);
  }
}

async function connectBoth(settings: Settings): Promise<[Connection, Connection]> {
  const [source, target] = await Promise.allSettled([Connection.open(settings.source), Connection.open(settings.destination)]);
  if (source.status === 'fulfilled' && target.status === 'fulfilled') return [source.value, target.value];
  if (source.status === 'fulfilled') await source.value.close();
  if (target.status === 'fulfilled') await target.value.close();
  throw source.status === 'rejected' ? source.reason : (target as PromiseRejectedResult).reason;
}

function report(result: MigrationResult, settings: Settings): void {
  const { counts } = result;
  if (result.fatal) say(`Stopped early: ${result.fatal}`);
  if (result.interrupted) say('Interrupted: the batches in flight were finished, nothing more was read');
  say(`Number of restored keys: ${counts.restored}`);
  say(`Number of skipped keys: ${counts.skipped}`);
  say(`Number of failed keys: ${counts.failed}`);
  say(`Number of vanished keys: ${counts.vanished}`);
  if (counts.failed > 0) say(`Errors occurred during the execution. Check |${settings.errorLogFile}| for details`);
}

/** Prints the verification of copied keys, and of skipped ones under their own heading; returns differences among copied keys. */
async function verifyCopy(setup: VerificationSetup, journal: KeyJournal): Promise<number> {
  const { copied, skipped }: { copied: Tally; skipped: Tally } = await verifyJournal(setup, journal);
  say(`Verification of copied keys: ${tallyLine(copied)}`);
  if (skipped.checked + skipped.vanished > 0) say(`Verification of skipped keys (already on the target): ${tallyLine(skipped)}`);
  return differing(copied);
}

function exitCode(result: MigrationResult, differences: number): number {
  if (result.interrupted) return EXIT.interrupted;
  if (result.fatal) return EXIT.settingsOrConnection;
  if (result.errorLimitReached) return EXIT.errorLimitReached;
  if (result.counts.failed > 0) return EXIT.keysFailed;
  if (differences > 0) return EXIT.differencesFound;
  return EXIT.ok;
}

process.exitCode = await main();
