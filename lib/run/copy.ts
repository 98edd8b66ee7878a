// MIGRATION_MODE=copy: the copy with its checkpoint, then the summary and, with VERIFY=true, the check.
import { Checkpoint, fingerprintOf } from '../copy/checkpoint.js';
import { copyVerification, differing, tallyLine, type CopyTallies, type CopyVerification } from '../verify/comparison.js';
import type { ErrorLog } from '../report/error-log.js';
import { exitStatus } from './exit.js';
import { afterLossLines, countsText, emptyKeysLines, summaryLines, timingLine } from '../report/summary.js';
import { say, sourceStayedPut, startProgress, timingOf, verificationSetup, writeSummary, type Session } from './session.js';
import { addCounts, type MigrationResult, noCounts } from '../records.js';
import { Migration } from '../copy/migration.js';
import { leavesKeysOut, readsFileItself } from '../settings.js';

/** The copy: batches in flight, pacing, the error limit; then the summary and, with VERIFY=true, the check. */
export async function copy(session: Session, log: ErrorLog): Promise<number> {
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
    for (const line of summaryLines(whole, settings.errorLogFile, session.selection.excluded, leavesKeysOut(settings), settings.scanType)) say(line);
    if (before) say(`This run: ${countsText(result.counts)} (the counts above include earlier runs of ${settings.checkpointFile})`);
    for (const line of emptyKeysLines(session.selection.empty)) say(line);
    for (const note of session.notes) say(note);
    for (const line of afterLossLines(target.mastersReplacedSinceStart, recovery.reconnections)) say(line);
    const timing = timingOf(session, stats.bytesMoved);
    say(timingLine(timing));
    // After a fatal stop the status says so already; otherwise a source that resharded leaves the copy incomplete.
    const slotsStayed = result.fatal !== undefined || (await sourceStayedPut(session));
    if (session.checkpoint) await finishCheckpoint(session, session.checkpoint, whole, slotsStayed);
    const verified = verification && !result.fatal && !result.interrupted ? await verifyCopy(verification) : undefined;
    const status = exitStatus({
      interrupted: result.interrupted,
      stoppedEarly: Boolean(result.fatal) || !slotsStayed,
      errorLimitReached: result.errorLimitReached,
      failed: whole.counts.failed + session.libraries.failed,
      differences: (verified ? differing(verified.copied) : 0) + session.libraries.differences,
    });
    writeSummary(settings, {
      mode: 'copy',
      counts: { ...whole.counts, excluded: session.selection.excluded, ...(readsFileItself(settings) ? { empty: session.selection.empty } : {}) },
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

/** With VERIFY=true: the keys the copy restored, then those it skipped, each with its own line. */
async function verifyCopy(verification: CopyVerification): Promise<CopyTallies> {
  const { copied, skipped } = await verification.finish();
  say(`Verification of copied keys: ${tallyLine(copied)}`);
  if (skipped.checked + skipped.vanished > 0) say(`Verification of skipped keys (already on the target): ${tallyLine(skipped)}`);
  return { copied, skipped };
}
