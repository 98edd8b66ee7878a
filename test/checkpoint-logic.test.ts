// lib/copy/checkpoint.ts on its own, with files in a temporary folder and no server: which batches move a cursor
// (only once every batch before them is confirmed), where each master's scan starts on a rerun, what the
// file holds, and which checkpoints are refused.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Connection } from '../lib/net/connections.js';
import { parseSettings } from '../lib/settings.js';
import { addCounts, type Counts, DONE, type KeyOutcome, noCounts, type ScanPosition, total } from '../lib/records.js';
import { Checkpoint, CheckpointError, type Ending, type Fingerprint, fingerprintOf, type MasterIdentity, type Previous, readCheckpoint, resumeLine, startingPoints, type UnitState } from '../lib/copy/checkpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'checkpoint-logic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const newPath = (): string => join(dir, `run-${++files}.checkpoint`);

const FINGERPRINT: Fingerprint = { SOURCE_REDIS_HOST: 'src:6379', SCAN_MATCH_PATTERN: 'user:*' };

const unit = (address: string, runId: string, cursor = '0', slots = ''): UnitState => ({ address, runId, slots, cursor });
/** A batch's place in its master's scan, as the copy hands it to the checkpoint. */
const batch = (unitIndex: number, resumeCursor: string, runId: string): ScanPosition => ({ unit: unitIndex, resumeCursor, runId });
const outcomes = (counts: Partial<Counts>): KeyOutcome[] =>
  (Object.entries(counts) as [keyof Counts, number][]).flatMap(([status, n]) =>
    Array.from({ length: n }, (_, i): KeyOutcome => (status === 'failed' ? { key: Buffer.from(`f${i}`), status, reason: 'ERR x' } : { key: Buffer.from(`${status}${i}`), status })),
  );
const counts = (c: Partial<Counts>): Counts => ({ ...noCounts(), ...c });

/** What a Checkpoint wrote, read back as a rerun would read it. */
async function finishAndRead(checkpoint: Checkpoint, path: string, ending: Ending = 'resume'): Promise<Extract<Previous, { kind: 'resume' | 'complete' }>> {
  await checkpoint.finish(ending);
  const previous = readCheckpoint(path, FINGERPRINT);
  if (previous.kind === 'none') throw new Error('no checkpoint was written');
  return previous;
}

describe('Checkpoint: a cursor is recorded once every batch before it is confirmed', () => {
  /** One master scanned in three batches (resuming at cursors 10, 20, 30); confirms them in `order`. */
  async function confirmed(order: number[]): Promise<{ cursor: string; counts: Counts }> {
    const path = newPath();
    const checkpoint = new Checkpoint(path, FINGERPRINT, [unit('src:6379', 'run-a')], [], noCounts());
    const tickets = ['10', '20', '30'].map((cursor) => checkpoint.started(batch(0, cursor, 'run-a')));
    const perBatch: Partial<Counts>[] = [{ restored: 1 }, { skipped: 2 }, { restored: 3, failed: 1 }];
    for (const i of order) checkpoint.confirm(tickets[i] as ReturnType<Checkpoint['started']>, outcomes(perBatch[i] as Partial<Counts>));
    const saved = await finishAndRead(checkpoint, path);
    return { cursor: (saved.units[0] as UnitState).cursor, counts: saved.counts };
  }

  it('confirmed in scan order, each batch moves the cursor to its own resume point', async () => {
    expect(await confirmed([0])).toEqual({ cursor: '10', counts: counts({ restored: 1 }) });
    expect(await confirmed([0, 1])).toEqual({ cursor: '20', counts: counts({ restored: 1, skipped: 2 }) });
    expect(await confirmed([0, 1, 2])).toEqual({ cursor: '30', counts: counts({ restored: 4, skipped: 2, failed: 1 }) });
  });

  it('a later batch confirmed first moves nothing, and is not counted, while an earlier one is still open', async () => {
    expect(await confirmed([])).toEqual({ cursor: '0', counts: noCounts() });
    expect(await confirmed([1])).toEqual({ cursor: '0', counts: noCounts() });
    expect(await confirmed([2, 1])).toEqual({ cursor: '0', counts: noCounts() });
    expect(await confirmed([2])).toEqual({ cursor: '0', counts: noCounts() });
  });

  it('confirming the open batch moves the cursor past every confirmed batch after it, up to the next open one', async () => {
    expect(await confirmed([1, 0])).toEqual({ cursor: '20', counts: counts({ restored: 1, skipped: 2 }) });
    expect(await confirmed([2, 0])).toEqual({ cursor: '10', counts: counts({ restored: 1 }) });
    expect(await confirmed([2, 1, 0])).toEqual({ cursor: '30', counts: counts({ restored: 4, skipped: 2, failed: 1 }) });
    expect(await confirmed([1, 2, 0])).toEqual({ cursor: '30', counts: counts({ restored: 4, skipped: 2, failed: 1 }) });
  });

  it("keeps each master's order apart: an open batch of one master holds back no other master's cursor", async () => {
    const path = newPath();
    const checkpoint = new Checkpoint(path, FINGERPRINT, [unit('a:1', 'run-a'), unit('b:1', 'run-b')], [], noCounts());
    const a1 = checkpoint.started(batch(0, '5', 'run-a'));
    checkpoint.started(batch(1, '7', 'run-b')); // b's first batch: never confirmed
    const a2 = checkpoint.started(batch(0, DONE, 'run-a'));
    const b2 = checkpoint.started(batch(1, '9', 'run-b'));
    checkpoint.confirm(b2, outcomes({ restored: 1 }));
    checkpoint.confirm(a2, outcomes({ restored: 1 }));
    checkpoint.confirm(a1, outcomes({ skipped: 1 }));
    const saved = await finishAndRead(checkpoint, path);
    expect(saved.units.map((u) => `${u.address} ${u.cursor}`)).toEqual([`a:1 ${DONE}`, 'b:1 0']);
    expect(saved.counts).toEqual(counts({ restored: 1, skipped: 1 }));
  });

  it('counts a batch read from a server before its restart, but moves no cursor of the server that replaced it', async () => {
    const path = newPath();
    const checkpoint = new Checkpoint(path, FINGERPRINT, [unit('src:6379', 'old-run')], [], noCounts());
    const before = checkpoint.started(batch(0, '40', 'old-run'));
    const replacement = { endpoint: { host: 'src', port: 6379 }, capabilities: { runId: 'new-run' } } as unknown as Connection;
    checkpoint.restarted(0, replacement);
    checkpoint.confirm(before, outcomes({ restored: 2 }));
    let saved = await finishAndRead(checkpoint, path);
    expect(saved.units).toEqual([unit('src:6379', 'new-run', '0')]);
    expect(saved.counts).toEqual(counts({ restored: 2 }));

    const after = new Checkpoint(path, FINGERPRINT, saved.units, [], saved.counts);
    after.confirm(after.started(batch(0, '12', 'new-run')), outcomes({ vanished: 1 }));
    saved = await finishAndRead(after, path);
    expect(saved.units).toEqual([unit('src:6379', 'new-run', '12')]);
    expect(saved.counts).toEqual(counts({ restored: 2, vanished: 1 }));
  });

  it('adds to the counts of the runs before it', async () => {
    const path = newPath();
    const checkpoint = new Checkpoint(path, FINGERPRINT, [unit('src:6379', 'r')], [], counts({ restored: 100, failed: 2 }));
    checkpoint.confirm(checkpoint.started(batch(0, '3', 'r')), outcomes({ restored: 5, skipped: 1 }));
    expect((await finishAndRead(checkpoint, path)).counts).toEqual(counts({ restored: 105, skipped: 1, failed: 2 }));
  });

  it('is scanned only when every master\'s cursor is done and no batch is left unconfirmed', async () => {
    const checkpoint = new Checkpoint(newPath(), FINGERPRINT, [unit('a:1', 'ra'), unit('b:1', 'rb')], [], noCounts());
    const a = checkpoint.started(batch(0, DONE, 'ra'));
    const b1 = checkpoint.started(batch(1, '8', 'rb'));
    const b2 = checkpoint.started(batch(1, DONE, 'rb'));
    expect(checkpoint.scanned).toBe(false);
    checkpoint.confirm(a, []);
    checkpoint.confirm(b2, []);
    expect(checkpoint.scanned, "b's last batch is confirmed, but not the one before it").toBe(false);
    checkpoint.confirm(b1, []);
    expect(checkpoint.scanned).toBe(true);
    await checkpoint.finish('complete');
  });
});

describe('Checkpoint: how a run leaves its file', () => {
  async function ended(ending: Ending): Promise<{ raw: { complete: boolean; format: string; fingerprint: Fingerprint; targetRunIds: string[] }; previous: Previous }> {
    const path = newPath();
    const checkpoint = new Checkpoint(path, FINGERPRINT, [unit('src:6379', 'r')], ['target-run'], counts({ skipped: 4 }));
    checkpoint.confirm(checkpoint.started(batch(0, DONE, 'r')), outcomes({ restored: 3 }));
    await checkpoint.finish(ending);
    return { raw: JSON.parse(readFileSync(path, 'utf8')) as { complete: boolean; format: string; fingerprint: Fingerprint; targetRunIds: string[] }, previous: readCheckpoint(path, FINGERPRINT) };
  }

  it('complete: marked complete, with the final counts and cursors, the fingerprint and the target run_ids', async () => {
    const { raw, previous } = await ended('complete');
    expect(raw).toMatchObject({ format: 'redis-keys-migrator checkpoint 1', complete: true, fingerprint: FINGERPRINT, targetRunIds: ['target-run'] });
    expect(previous).toMatchObject({ kind: 'complete', counts: counts({ restored: 3, skipped: 4 }), units: [unit('src:6379', 'r', DONE)], targetRunIds: ['target-run'] });
  });

  it('resume: the same state, not complete', async () => {
    const { raw, previous } = await ended('resume');
    expect(raw.complete).toBe(false);
    expect(previous).toMatchObject({ kind: 'resume', counts: counts({ restored: 3, skipped: 4 }), units: [unit('src:6379', 'r', DONE)] });
  });

  it('void: every cursor back to 0 and the counts to zero, so the next run starts over', async () => {
    const { raw, previous } = await ended('void');
    expect(raw.complete).toBe(false);
    expect(previous).toMatchObject({ kind: 'resume', counts: noCounts(), units: [unit('src:6379', 'r', '0')] });
  });

  it('a write that fails (no such folder) is named in `problem`, not thrown', async () => {
    const checkpoint = new Checkpoint(join(dir, 'no-such-folder', 'run.checkpoint'), FINGERPRINT, [unit('src:6379', 'r')], [], noCounts());
    await checkpoint.finish('resume');
    expect(checkpoint.problem).toMatch(/ENOENT/);
  });

  it('leaves no temporary file behind', async () => {
    const path = newPath();
    const checkpoint = new Checkpoint(path, FINGERPRINT, [unit('src:6379', 'r')], [], noCounts());
    await checkpoint.finish('resume');
    expect(() => readFileSync(`${path}.tmp`)).toThrow(/ENOENT/);
  });
});

describe('readCheckpoint', () => {
  const write = (text: string): string => {
    const path = newPath();
    writeFileSync(path, text);
    return path;
  };
  const doc = (extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ format: 'redis-keys-migrator checkpoint 1', fingerprint: FINGERPRINT, complete: false, counts: counts({ restored: 7 }), units: [unit('src:6379', 'r', '55')], targetRunIds: ['t'], updatedAt: '2026-01-01T00:00:00.000Z', ...extra });

  it('finds nothing to resume when the file does not exist yet in a folder that takes files', () => {
    expect(readCheckpoint(join(dir, 'not-yet.checkpoint'), FINGERPRINT)).toEqual({ kind: 'none' });
  });

  it('refuses a new checkpoint in a folder that does not exist, before the run starts', () => {
    expect(() => readCheckpoint(join(dir, 'missing', 'run.checkpoint'), FINGERPRINT)).toThrow(CheckpointError);
    expect(() => readCheckpoint(join(dir, 'missing', 'run.checkpoint'), FINGERPRINT)).toThrow(/cannot be written: its folder does not exist or is read-only/);
  });

  it('refuses a path it cannot read (a folder)', () => {
    const folder = join(dir, 'a-folder');
    mkdirSync(folder);
    expect(() => readCheckpoint(folder, FINGERPRINT)).toThrow(/cannot be read/);
  });

  it("refuses a file that is not JSON, or JSON that is not this tool's checkpoint, saying to remove it", () => {
    expect(() => readCheckpoint(write('cursor=55'), FINGERPRINT)).toThrow(/is not a checkpoint \(not JSON\); remove it to start over/);
    for (const text of ['null', '"text"', '[]', '{}', doc({ format: 'other tool 1' }), doc({ units: 'none' }), doc({ fingerprint: null })]) {
      expect(() => readCheckpoint(write(text), FINGERPRINT), text).toThrow(/is not a checkpoint of this tool; remove it to start over/);
    }
  });

  it('reads a checkpoint of the same settings: cursors, counts, target run_ids and time', () => {
    expect(readCheckpoint(write(doc()), FINGERPRINT)).toEqual({
      kind: 'resume',
      counts: counts({ restored: 7 }),
      units: [unit('src:6379', 'r', '55')],
      targetRunIds: ['t'],
      updatedAt: '2026-01-01T00:00:00.000Z',
    });
    expect(readCheckpoint(write(doc({ complete: true })), FINGERPRINT).kind).toBe('complete');
  });

  it('fills in counts and target run_ids an older file lacks', () => {
    const previous = readCheckpoint(write(doc({ counts: { restored: 2 }, targetRunIds: undefined })), FINGERPRINT);
    expect(previous).toMatchObject({ counts: counts({ restored: 2 }), targetRunIds: [] });
  });

  it('refuses a checkpoint written with other settings, naming the first one that differs and both values', () => {
    const path = write(doc());
    let error: unknown;
    try {
      readCheckpoint(path, { ...FINGERPRINT, SCAN_MATCH_PATTERN: '*' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as Error).message).toBe(
      `CHECKPOINT_FILE ${path} was written with SCAN_MATCH_PATTERN="user:*", and this run has "*": set it back to resume, or remove the file to start over`,
    );
  });

  it('takes a setting the file does not name as empty: accepted when this run leaves it empty, refused when not', () => {
    const path = write(doc());
    expect(readCheckpoint(path, { ...FINGERPRINT, KEY_EXCLUDE_PATTERN: '' }).kind).toBe('resume');
    expect(() => readCheckpoint(path, { ...FINGERPRINT, KEY_EXCLUDE_PATTERN: 'tmp:*' })).toThrow(/written with KEY_EXCLUDE_PATTERN="", and this run has "tmp:\*"/);
  });
});

describe('fingerprintOf', () => {
  const settingsOf = (env: Record<string, string>) => parseSettings({ SOURCE_REDIS_HOST: 'src', SOURCE_REDIS_PORT: '7001', DESTINATION_REDIS_HOST: 'dst', DESTINATION_REDIS_PORT: '7002', ...env });
  const base = fingerprintOf(settingsOf({}));

  it('names the two servers and databases and the key selection: the settings that decide which keys go where', () => {
    expect(base).toEqual({
      SOURCE_REDIS_HOST: 'src:7001',
      SOURCE_REDIS_DB_INDEX: '0',
      DESTINATION_REDIS_HOST: 'dst:7002',
      DESTINATION_REDIS_DB_INDEX: '0',
      SCAN_MATCH_PATTERN: '*',
      SCAN_TYPE: '',
      KEY_EXCLUDE_PATTERN: '',
      SOURCE_SLOTS: '',
      KEY_PREFIX_STRIP: '',
      KEY_PREFIX_ADD: '',
    });
  });

  it('changes with each of those settings, and with no other', () => {
    const changes: Record<string, string> = {
      SOURCE_REDIS_HOST: 'other', SOURCE_REDIS_PORT: '7003', SOURCE_REDIS_DB_INDEX: '2', DESTINATION_REDIS_HOST: 'other',
      DESTINATION_REDIS_PORT: '7004', DESTINATION_REDIS_DB_INDEX: '3', SCAN_MATCH_PATTERN: 'user:*', SCAN_TYPE: 'hash', KEY_EXCLUDE_PATTERN: 'tmp:*',
      SOURCE_SLOTS: '0-100', SHARD_COUNT: '2', KEY_PREFIX_STRIP: 'a:', KEY_PREFIX_ADD: 'b:',
    };
    for (const [name, value] of Object.entries(changes)) expect(fingerprintOf(settingsOf({ [name]: value })), name).not.toEqual(base);
    for (const [name, value] of Object.entries({ PIPELINE_BATCH_SIZE: '7', SCAN_BATCH_SIZE: '9', SLEEP_TIME: '1', COPY_METHOD: 'type', OVERWRITE_EXISTING_KEYS: 'true', VERIFY: 'true', MAX_KEYS_PER_SECOND: '5' })) {
      expect(fingerprintOf(settingsOf({ [name]: value })), name).toEqual(base);
    }
  });

  it('is the same for a server named by URL or by host, port and db settings', () => {
    expect(fingerprintOf(settingsOf({ SOURCE_REDIS_URL: 'redis://:secret@src:7001/4' }))).toEqual(fingerprintOf(settingsOf({ SOURCE_REDIS_DB_INDEX: '4' })));
  });

  it("makes readCheckpoint refuse another settings' checkpoint with a CheckpointError naming the setting", async () => {
    const path = newPath();
    const written = fingerprintOf(settingsOf({ DESTINATION_REDIS_DB_INDEX: '1' }));
    await new Checkpoint(path, written, [unit('src:7001', 'r')], [], noCounts()).finish('resume');
    expect(readCheckpoint(path, written).kind).toBe('resume');
    expect(() => readCheckpoint(path, base)).toThrow(CheckpointError);
    expect(() => readCheckpoint(path, base)).toThrow(/written with DESTINATION_REDIS_DB_INDEX="1", and this run has "0"/);
  });
});

describe('startingPoints', () => {
  const master = (address: string, runId: string, slots = ''): MasterIdentity => ({ address, label: `source ${address}`, runId, slots });
  const resume = (units: UnitState[], targetRunIds = ['t1'], kind: 'resume' | 'complete' = 'resume'): Previous => ({ kind, counts: noCounts(), units, targetRunIds, updatedAt: '' });
  const masters = [master('a:1', 'ra', '0-8191'), master('b:1', 'rb', '8192-16383')];

  it('starts every scan at 0 with no checkpoint, or one already complete', () => {
    const fresh = [unit('a:1', 'ra', '0', '0-8191'), unit('b:1', 'rb', '0', '8192-16383')];
    expect(startingPoints(masters, ['t1'], { kind: 'none' })).toEqual({ units: fresh, notes: [] });
    expect(startingPoints(masters, ['t1'], resume([unit('a:1', 'ra', '99', '0-8191')], ['t1'], 'complete'))).toEqual({ units: fresh, notes: [] });
  });

  it("resumes each master at its cursor when it is the same server serving the same slots, and the target is the same", () => {
    const previous = resume([unit('b:1', 'rb', DONE, '8192-16383'), unit('a:1', 'ra', '1234', '0-8191')]);
    expect(startingPoints(masters, ['t1'], previous)).toEqual({ units: [unit('a:1', 'ra', '1234', '0-8191'), unit('b:1', 'rb', DONE, '8192-16383')], notes: [] });
  });

  it('starts one master over, saying why, when it is new, restarted or resharded; the others resume', () => {
    const cases: [UnitState, RegExp][] = [
      [unit('c:1', 'ra', '1234', '0-8191'), /source a:1 is not in the checkpoint: its keys are scanned from the start/],
      [unit('a:1', 'ra-restarted', '1234', '0-8191'), /source a:1 is another server than the checkpoint's \(run_id changed\)/],
      [unit('a:1', 'ra', '1234', '0-5000'), /source a:1 serves other slots than when the checkpoint was written \(resharded\)/],
    ];
    for (const [before, note] of cases) {
      const { units, notes } = startingPoints(masters, ['t1'], resume([before, unit('b:1', 'rb', '77', '8192-16383')]));
      expect(units.map((u) => u.cursor)).toEqual(['0', '77']);
      expect(units[0]).toEqual(unit('a:1', 'ra', '0', '0-8191'));
      expect(notes).toHaveLength(1);
      expect(notes[0]).toMatch(note);
    }
  });

  it('reads a checkpoint without slots (a standalone source) as serving no slots', () => {
    const old = { address: 's:1', runId: 'r', cursor: '42' } as UnitState;
    expect(startingPoints([master('s:1', 'r')], ['t1'], resume([old])).units).toEqual([unit('s:1', 'r', '42')]);
  });

  it('starts every scan over, with one note, when any target master is another process than the checkpoint names', () => {
    const previous = resume([unit('a:1', 'ra', '1', '0-8191'), unit('b:1', 'rb', '2', '8192-16383')], ['t1', 't2']);
    for (const now of [['t1', 't3'], ['t1'], ['t1', 't2', 't3']]) {
      const { units, notes } = startingPoints(masters, now, previous);
      expect(units.map((u) => u.cursor), now.join(',')).toEqual(['0', '0']);
      expect(notes).toEqual([expect.stringMatching(/^The target is another server process than when the checkpoint was written/)]);
    }
    expect(startingPoints(masters, ['t2', 't1'], previous).units.map((u) => u.cursor), 'the order of the target masters does not matter').toEqual(['1', '2']);
  });
});

describe('counts', () => {
  it('addCounts adds each count, and total sums the four', () => {
    const sum = addCounts(counts({ restored: 1, skipped: 2, failed: 3, vanished: 4 }), counts({ restored: 10, skipped: 20, failed: 30, vanished: 40 }));
    expect(sum).toEqual({ restored: 11, skipped: 22, failed: 33, vanished: 44 });
    expect(total(sum)).toBe(110);
    expect(total(noCounts())).toBe(0);
  });

  it('resumeLine names the keys done and the cursor, with each master\'s address when there are several', () => {
    const previous: Previous = { kind: 'resume', counts: counts({ restored: 5, skipped: 2 }), units: [], targetRunIds: [], updatedAt: '' };
    expect(resumeLine('run.checkpoint', previous, [unit('a:1', 'r', '88')])).toBe('Resuming from run.checkpoint: 7 keys done, cursor 88');
    expect(resumeLine('run.checkpoint', previous, [unit('a:1', 'r', '88'), unit('b:1', 'r', DONE)])).toBe(`Resuming from run.checkpoint: 7 keys done, cursor a:1 88, b:1 ${DONE}`);
    expect(resumeLine('f', { kind: 'none' }, [unit('a:1', 'r', '0')])).toBe('Resuming from f: 0 keys done, cursor 0');
  });
});
