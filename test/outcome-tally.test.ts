// lib/copy/tally.ts on its own: what a copy counts of a writer's outcomes, when the Python script's pacing owes a
// pause, and when the error limit stops the copy. A fake writer's outcomes, a log that only remembers; no server.
import { describe, expect, it } from 'vitest';
import { OutcomeTally, type TallyRules } from '../lib/copy/tally.js';
import type { KeyOutcome } from '../lib/records.js';

/** Outcomes as a writer returns them: `n` keys of one status. */
function fakeWriter(status: KeyOutcome['status'], n: number, from = 0): KeyOutcome[] {
  return Array.from({ length: n }, (_, i): KeyOutcome => {
    const key = Buffer.from(`${status}:${from + i}`);
    return status === 'failed' ? { key, status, reason: `ERR no ${from + i}\nsecond line` } : { key, status };
  });
}

function tallyWith(rules: Partial<TallyRules> = {}) {
  const lines: string[] = [];
  const log = { failed: [] as string[], degraded: [] as string[] };
  const tally = new OutcomeTally(
    { pipelineBatchSize: 10, existingKeysPauseEvery: 5, maxErroredKeys: 0, ...rules },
    { keyFailed: (key, reason) => log.failed.push(`${key}: ${reason}`), keyDegraded: (key, without) => log.degraded.push(`${key}: ${without}`) },
    (line) => lines.push(line),
  );
  return { tally, lines, log };
}

describe('counting a writer\'s outcomes', () => {
  it('counts every status, the ways keys crossed versions, and logs each failure and each key that lost something', () => {
    const { tally, log } = tallyWith();
    tally.record([
      ...fakeWriter('restored', 3), ...fakeWriter('skipped', 2), ...fakeWriter('vanished', 1), ...fakeWriter('failed', 1),
      { key: Buffer.from('r'), status: 'restored', via: 'restamped' },
      { key: Buffer.from('t'), status: 'restored', via: 'byType', dropped: '2 hash-field expiries' },
    ]);
    expect(tally.counts).toEqual({ restored: 5, skipped: 2, vanished: 1, failed: 1 });
    expect(tally.crossing).toEqual({ restamped: 1, byType: 1, degraded: 1 });
    expect(log.failed).toEqual(['failed:0: ERR no 0\nsecond line']);
    expect(log.degraded).toEqual(['t: 2 hash-field expiries']);
  });
});

describe('pacing as the Python script does', () => {
  it('owes a pause after each PIPELINE_BATCH_SIZE keys written or failed, counted across batches', () => {
    const { tally } = tallyWith({ pipelineBatchSize: 10, existingKeysPauseEvery: 1000 });
    tally.record(fakeWriter('restored', 6));
    expect(tally.takePause()).toBe(false);
    tally.record([...fakeWriter('restored', 3), ...fakeWriter('failed', 1)]);
    expect(tally.takePause()).toBe(true);
    expect(tally.takePause()).toBe(false); // asking takes it
    tally.record(fakeWriter('vanished', 50)); // vanished keys are neither writes nor skips
    expect(tally.takePause()).toBe(false);
  });

  it('owes a pause after every MAX_PROCESSED_EXISTING_KEYS_LIMIT skipped keys', () => {
    const { tally } = tallyWith({ pipelineBatchSize: 1000, existingKeysPauseEvery: 5 });
    tally.record(fakeWriter('skipped', 4));
    expect(tally.takePause()).toBe(false);
    tally.record(fakeWriter('skipped', 1));
    expect(tally.takePause()).toBe(true);
  });
});

describe('the error limit', () => {
  it('is reached at exactly MAX_ERRORED_KEYS_LIMIT failed keys, said once, naming the last failure on one line', () => {
    const { tally, lines } = tallyWith({ maxErroredKeys: 3 });
    tally.record(fakeWriter('failed', 2));
    expect(tally.errorLimitReached).toBe(false);
    tally.record([...fakeWriter('restored', 5), ...fakeWriter('failed', 1, 2)]);
    expect(tally.errorLimitReached).toBe(true);
    tally.record(fakeWriter('failed', 4, 3));
    expect(lines).toEqual(['Max errored keys limit of 3 reached', 'The last failure, key |failed:2|: ERR no 2 second line']);
  });

  it('is never reached with MAX_ERRORED_KEYS_LIMIT=0', () => {
    const { tally, lines } = tallyWith({ maxErroredKeys: 0 });
    tally.record(fakeWriter('failed', 10_000));
    expect(tally.errorLimitReached).toBe(false);
    expect(lines).toEqual([]);
  });
});
