// MIGRATION_MODE=live or liveonly: subscribed to the source's changes, a copy (live), then every change applied
// until the cutover (Ctrl-C, SIGTERM, LIVE_IDLE_TIMEOUT), then the changed keys verified.
import { liveSummaryLines, replicate, LiveRefusal, type LiveContext, type LiveOutcome } from '../live/replicate.js';
import { replicateStream } from '../live/stream-run.js';
import { Recovery } from '../net/recovery.js';
import type { Side } from '../net/side.js';
import { scanMasters } from '../sources/scan.js';
import { differing } from '../verify/comparison.js';
import type { ErrorLog } from '../report/error-log.js';
import { EXIT, exitStatus } from './exit.js';
import { timingLine } from '../report/summary.js';
import { noSelection } from '../records.js';
import { say, startProgress, timingOf, verificationSetup, writeSummary, type Session } from './session.js';

export async function live(session: Session, log: ErrorLog): Promise<number> {
  const { settings, target, stream } = session;
  // Read as a replica: the origin of the snapshot, reconnected as the target is (re-copies read it).
  const source = (session.source ?? session.origin) as Side;
  const recovery = stream ? new Recovery([source, target], settings.reconnectTimeoutMs, () => session.interruption.requested) : session.recovery;
  let outcome: LiveOutcome;
  try {
    const context: LiveContext = {
      settings, source, target, snapshot: session.keys, recovery, interruption: session.interruption, log, say,
      rescan: () => scanMasters(settings, source, noSelection(), []),
      // Ctrl-C is the cutover, which the verification belongs to (a second one stops the process at once).
      verification: { ...verificationSetup(session), shouldStop: () => false },
      startProgress: (counts) => startProgress(session, counts),
      excluded: () => session.selection.excluded,
    };
    outcome = stream ? await replicateStream(context, stream) : await replicate(context);
  } catch (err) {
    if (!(err instanceof LiveRefusal)) throw err;
    say(`Cannot replicate live : ${err.message}`);
    return EXIT.settingsOrConnection;
  } finally {
    if (recovery !== session.recovery) recovery.close();
  }
  for (const line of liveSummaryLines(outcome, settings.errorLogFile)) say(line);
  const timing = timingOf(session, 0);
  say(timingLine(timing));
  const status = exitStatus({
    // Live mode's Ctrl-C is its cutover: only one during the snapshot interrupts the run.
    interrupted: outcome.snapshot?.interrupted,
    stoppedEarly: Boolean(outcome.fatal),
    errorLimitReached: outcome.snapshot?.errorLimitReached || outcome.live.errorLimitReached,
    failed: (outcome.snapshot?.counts.failed ?? 0) + outcome.live.counts.failed + session.libraries.failed,
    differences: (outcome.verification ? differing(outcome.verification) : 0) + session.libraries.differences,
  });
  writeSummary(settings, {
    mode: settings.mode === 'live' ? 'live' : 'liveonly',
    counts: outcome.snapshot ? { ...outcome.snapshot.counts, excluded: session.selection.excluded } : undefined,
    live: {
      reader: outcome.stream ? 'replication' : 'keyspace events',
      ...(outcome.stream ? { commands: outcome.stream.applied, transactions: outcome.stream.transactions, recopied: outcome.stream.recopied, behind_bytes: outcome.stream.behind } : {}),
      applied: outcome.live.counts.restored, deleted: outcome.deleted, failed: outcome.live.counts.failed, events: outcome.events, gaps: outcome.gapCount,
      repairs: outcome.repairs, lag_ms: outcome.lag, ended: outcome.ended,
    },
    verification: outcome.verification ? { live: outcome.verification } : undefined,
    timing,
    exitStatus: status,
  });
  return status;
}
