// CHECKPOINT_FILE: a run killed with `kill -9` or stopped with Ctrl-C resumes from its checkpoint and reads
// only what is left (counted by the source's own INFO commandstats); a checkpoint of other settings is refused,
// a finished one says there is nothing to do, and one whose source restarted starts that master over.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runDir, serverPair } from './helpers/fixtures.js';
import { calls, commandStats, parseSummary } from './helpers/inspect.js';
import { digest, seedStrings } from './helpers/sample-data.js';
import { endpoints, runMigrator, spawnMigrator, waitUntil, type RedisServer } from './helpers/servers.js';

const KEYS = 100_000;
const PACE = { SLEEP_TIME: 0, PIPELINE_BATCH_SIZE: 200, SCAN_BATCH_SIZE: 200 };

const dbsize = async (server: RedisServer): Promise<number> => Number(await server.cmd('DBSIZE'));

describe('resuming from CHECKPOINT_FILE', () => {
  const pair = serverPair();
  let dir: string;
  let checkpoint: string;
  const settings = (): Record<string, string | number> => ({ ...endpoints(pair.source, pair.target), ...PACE, CHECKPOINT_FILE: checkpoint });

  beforeAll(async () => {
    expect(await seedStrings(pair.source, KEYS)).toBe(KEYS);
  });

  const fresh = async (): Promise<void> => {
    await pair.target.cmd('FLUSHALL');
    dir = runDir();
    checkpoint = join(dir, 'run.checkpoint');
  };

  /** Starts a run and stops it with `signal` once half the keys are on the target (SIGKILL: the whole run; else the script). */
  async function stopHalfway(signal: NodeJS.Signals): Promise<void> {
    const run = spawnMigrator(settings(), dir);
    await waitUntil(async () => (await dbsize(pair.target)) >= KEYS / 2, 'half the keys on the target', 30_000, 10);
    if (signal === 'SIGKILL') run.signalAll(signal);
    else run.signalScript(signal);
    await run.done;
    expect(await dbsize(pair.target), 'the run finished before it was stopped; the test proves nothing').toBeLessThan(KEYS);
  }

  /** The rerun: resumes, finishes, and DUMPs at most `limit` of the source's keys again. */
  async function resumeAndCheck(limit: number): Promise<string> {
    await pair.source.cmd('CONFIG', 'RESETSTAT');
    const run = await runMigrator(settings(), dir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^Resuming from .*run\.checkpoint: \d+ keys done, cursor \d+$/m);
    const dumps = calls(await commandStats(pair.source), 'dump');
    expect(dumps, 'the rerun read too much of the source again').toBeLessThanOrEqual(limit);
    expect(dumps).toBeGreaterThan(0);
    expect(await dbsize(pair.target)).toBe(KEYS);
    expect(await digest(pair.target)).toBe(await digest(pair.source));
    return run.stdout;
  }

  it('kill -9 at half way: the rerun resumes and reads at most 60% of the keys again', async () => {
    await fresh();
    await stopHalfway('SIGKILL');
    const saved = JSON.parse(readFileSync(checkpoint, 'utf8')) as { complete: boolean; counts: { restored: number } };
    expect(saved.complete).toBe(false);
    expect(saved.counts.restored, 'too little confirmed for the bound below to prove a resume').toBeGreaterThan(KEYS / 10);
    // The checkpoint lags the kill by up to one write interval (more on a loaded machine): the rerun reads
    // what the checkpoint had not confirmed, plus at most the SCAN page its cursor points into.
    const stdout = await resumeAndCheck(KEYS - saved.counts.restored + 2 * PACE.SCAN_BATCH_SIZE);
    const counts = parseSummary(stdout);
    // The counts cover both runs; keys copied after the last checkpoint write are found again as skipped.
    expect(counts.restored).toBeLessThanOrEqual(KEYS);
    expect(counts.restored + counts.skipped).toBeGreaterThanOrEqual(KEYS);
    expect(counts.failed).toBe(0);
    expect(stdout).toMatch(/^This run: restored \d+, skipped \d+, failed 0, vanished 0 /m);
  });

  it('Ctrl-C writes the checkpoint: a pause and a resume', async () => {
    await fresh();
    await stopHalfway('SIGINT');
    const stdout = await resumeAndCheck(KEYS * 0.55);
    const counts = parseSummary(stdout);
    // Every batch in flight was finished and recorded: each key restored once; only the page the last
    // batch ended in is read again, its keys found present (skipped).
    expect(counts.restored).toBe(KEYS);
    expect(counts.skipped).toBeLessThan(1000);
  });

  it('a completed checkpoint: nothing left to do, exit 0, no connection needed', async () => {
    await fresh();
    const first = await runMigrator(settings(), dir);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect((JSON.parse(readFileSync(checkpoint, 'utf8')) as { complete: boolean }).complete).toBe(true);
    await pair.source.cmd('CONFIG', 'RESETSTAT');
    const again = await runMigrator(settings(), dir);
    expect(again.code, again.stdout).toBe(0);
    expect(again.stdout.trim().split('\n')).toEqual([expect.stringMatching(/^Nothing left to do: .*run\.checkpoint records a migration completed at .* \(100000 keys\)/)]);
    expect(calls(await commandStats(pair.source), 'scan'), 'the source was read again').toBe(0);

    // Compare mode keeps no checkpoint: with the same file it still checks every key.
    const compare = await runMigrator({ ...settings(), MIGRATION_MODE: 'compare' }, dir);
    expect(compare.code, compare.stdout).toBe(0);
    expect(compare.stdout).toContain(`0 missing, 0 type, 0 value, 0 ttl (${KEYS} keys checked, ${KEYS} identical)`);
  });

  it('a checkpoint written for another SCAN_MATCH_PATTERN is refused in one line naming the setting', async () => {
    await fresh();
    await stopHalfway('SIGKILL');
    const run = await runMigrator({ ...settings(), SCAN_MATCH_PATTERN: 'key:1*' }, dir);
    expect(run.code).toBe(1);
    expect(run.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^Error in settings : CHECKPOINT_FILE .* was written with SCAN_MATCH_PATTERN="\*", and this run has "key:1\*"/),
    ]);
  });

  it('a source restarted since the checkpoint (new run_id): its scan starts over, saying so, and completes', async () => {
    await fresh();
    await stopHalfway('SIGKILL');
    await pair.source.restart();
    const run = await runMigrator(settings(), dir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/is another server than the checkpoint's \(run_id changed\): its keys are scanned again from the start/);
    expect(await digest(pair.target)).toBe(await digest(pair.source));
  });

  it('a checkpoint file that is not one is refused, and a kill leaves no half-written file', async () => {
    await fresh();
    writeFileSync(checkpoint, '{"half": ');
    const run = await runMigrator(settings(), dir);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^Error in settings : CHECKPOINT_FILE .* is not a checkpoint/m);

    // Killed at many instants while it writes every half second: the file always parses.
    await fresh();
    const running = spawnMigrator(settings(), dir);
    await waitUntil(async () => existsSync(checkpoint), 'the first checkpoint', 20_000, 10);
    let reads = 0;
    while ((await dbsize(pair.target)) < KEYS / 2) {
      expect(() => JSON.parse(readFileSync(checkpoint, 'utf8'))).not.toThrow();
      reads++;
    }
    running.signalAll('SIGKILL');
    await running.done;
    expect(reads).toBeGreaterThan(10);
    expect(() => JSON.parse(readFileSync(checkpoint, 'utf8'))).not.toThrow();
  });
});

describe('checkpoints at the edges', () => {
  const pair = serverPair();
  let dir: string;
  const settings = (extra: Record<string, string | number> = {}): Record<string, string | number> => ({
    ...endpoints(pair.source, pair.target), ...PACE, CHECKPOINT_FILE: join(dir, 'edge.checkpoint'), ...extra,
  });
  const saved = (): { complete: boolean; units: { cursor: string }[] } => JSON.parse(readFileSync(join(dir, 'edge.checkpoint'), 'utf8')) as { complete: boolean; units: { cursor: string }[] };

  beforeAll(async () => {
    expect(await seedStrings(pair.source, 20_000)).toBe(20_000);
  });

  it('a pattern that matches no key: the checkpoint is complete all the same', async () => {
    dir = runDir();
    const run = await runMigrator(settings({ SCAN_MATCH_PATTERN: 'nothing:*' }), dir);
    expect(run.code, run.stdout).toBe(0);
    expect(saved()).toMatchObject({ complete: true, units: [{ cursor: 'done' }] });
  });

  it('failed keys: not complete, the run says how to retry them, and a resumed run still exits 2', async () => {
    dir = runDir();
    await pair.target.cmd('FLUSHALL');
    await pair.target.cmd('ACL', 'SETUSER', 'some', 'on', '>pw', '~key:1*', '+@all');
    const asSome = { DESTINATION_REDIS_USERNAME: 'some', DESTINATION_REDIS_PASSWORD: 'pw', MAX_ERRORED_KEYS_LIMIT: 0 };
    const run = await runMigrator(settings(asSome), dir);
    expect(run.code, run.stdout).toBe(2);
    expect(run.stdout).toMatch(/^\d+ keys failed \(see the error log\); a rerun with .*edge\.checkpoint does not retry them: remove it and run again/m);
    expect(saved().complete).toBe(false);
    const again = await runMigrator(settings(asSome), dir);
    expect(again.code, again.stdout).toBe(2);
    expect(parseSummary(again.stdout).failed).toBe(parseSummary(run.stdout).failed);
  });

  it('Ctrl-C with a sparse pattern: the process ends soon after its summary (no scan left reconnecting)', async () => {
    dir = runDir();
    await pair.target.cmd('FLUSHALL');
    const running = spawnMigrator(settings({ SCAN_MATCH_PATTERN: 'key:1*', SCAN_BATCH_SIZE: 100, PIPELINE_BATCH_SIZE: 50 }), dir);
    await waitUntil(async () => (await dbsize(pair.target)) >= 100, 'the copy under way', 20_000, 10);
    const stoppedAt = Date.now();
    running.signalScript('SIGINT');
    const run = await running.done;
    expect(run.code, run.stdout + run.stderr).toBe(130);
    expect(Date.now() - stoppedAt).toBeLessThan(5000);
    expect(saved().complete).toBe(false);
  });
});
