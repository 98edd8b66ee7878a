// redis-keys-migrator: copies keys from a source Redis to a target Redis, skipping keys the target already has.
// The story of one run: settings, connect, scan and copy, report. Exit codes are listed in EXIT.
import { config as loadDotenv } from 'dotenv';
import { Connection, ConnectionError } from './lib/connections.js';
import { ErrorLog } from './lib/error-log.js';
import { Migration, type MigrationResult } from './lib/migration.js';
import { parseSettings, renderHelp, SettingsError, type Settings } from './lib/settings.js';

export const EXIT = {
  ok: 0,
  settingsOrConnection: 1,
  keysFailed: 2,
  errorLimitReached: 3,
  interrupted: 130,
} as const;

const say = (line: string): void => void process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(renderHelp());
    return EXIT.ok;
  }
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
  let source: Connection | undefined;
  let target: Connection | undefined;
  try {
    [source, target] = await connectBoth(settings);
    say('Connected to Redis instances successfully');

    // 3. Scan and copy, until done, the error limit or Ctrl-C.
    const migration = new Migration({ source, target, settings, sourceScripts: true, targetScripts: true }, log, say);
    const stop = (): void => migration.interrupt();
    process.once('SIGINT', stop).once('SIGTERM', stop);
    const result = await migration.run();

    // 4. Report.
    report(result, settings);
    return exitCode(result);
  } catch (err) {
    if (!(err instanceof ConnectionError)) throw err;
    say(`Error connecting to Redis : ${err.message}`);
    return EXIT.settingsOrConnection;
  } finally {
    log.close();
    await Promise.all([source?.close(), target?.close()]);
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

function exitCode(result: MigrationResult): number {
  if (result.interrupted) return EXIT.interrupted;
  if (result.fatal) return EXIT.settingsOrConnection;
  if (result.errorLimitReached) return EXIT.errorLimitReached;
  if (result.counts.failed > 0) return EXIT.keysFailed;
  return EXIT.ok;
}

process.exitCode = await main();
