// MIGRATION_MODE=compare: nothing is written; every selected source key is checked against the target.
import { differing, tallyLine, verifyAll } from '../verify/comparison.js';
import { exitStatus } from './exit.js';
import { say, sourceStayedPut, timingOf, verificationSetup, writeSummary, type Session } from './session.js';

export async function compare(session: Session): Promise<number> {
  const tally = await verifyAll(verificationSetup(session), session.keys);
  say(tallyLine(tally));
  const slotsStayed = await sourceStayedPut(session);
  const status = exitStatus({
    interrupted: session.interruption.requested,
    stoppedEarly: !slotsStayed,
    failed: session.libraries.failed,
    differences: differing(tally) + session.libraries.differences,
  });
  writeSummary(session.settings, { mode: 'compare', verification: { compare: tally }, timing: timingOf(session, 0), exitStatus: status });
  return status;
}
