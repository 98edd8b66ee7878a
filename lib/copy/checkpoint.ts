// CHECKPOINT_FILE: how far a copy got, so a killed or stopped run resumes instead of starting over. It holds
// each source master's identity and SCAN cursor and the counts, only for batches the target confirmed.
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { open, rename } from 'node:fs/promises';
import type { Connection } from '../net/connections.js';
import { slotRangesText, type Endpoint, type Settings } from '../settings.js';
import { DONE, noCounts, total, type Counts, type KeyOutcome, type ScanPosition } from '../records.js';

/** The settings that decide which keys go where: a checkpoint is only good for the same ones. */
export type Fingerprint = Record<string, string>;

/** One source master's scan as of the last confirmed batch. */
export interface UnitState {
  address: string;
  runId: string;
  /** The slot ranges this master served (cluster), as "0-5460,…"; a cursor is only good for the same slots. */
  slots: string;
  /** The SCAN cursor to resume from, or DONE. */
  cursor: string;
}

interface CheckpointDocument {
  format: 'redis-keys-migrator checkpoint 1';
  fingerprint: Fingerprint;
  complete: boolean;
  counts: Counts;
  units: UnitState[];
  /** run_ids of the target's masters: another process may not hold what was copied (a restart, a failover). */
  targetRunIds: string[];
  updatedAt: string;
}

/** A checkpoint that cannot be used: unreadable, or written for other settings. Named in one line. */
export class CheckpointError extends Error {}

const FORMAT = 'redis-keys-migrator checkpoint 1';
/** Often enough that a resume re-reads little; the write is small and off the event loop, so it costs nothing measurable. */
const WRITE_EVERY_MS = 100;

/** A batch handed to the copy; its place in the scan is confirmed once it and every earlier one are done. */
export interface Ticket {
  unit: number;
  resumeCursor: string;
  /** The server the cursor belongs to: a batch read before a restart must not move the new scan's cursor. */
  runId: string;
  done: boolean;
  counts: Counts;
}

/** The checkpoint read at start: nothing, a migration to resume, or one already complete. */
export type Previous = { kind: 'none' } | { kind: 'resume' | 'complete'; counts: Counts; units: UnitState[]; targetRunIds: string[]; updatedAt: string };

/** Reads CHECKPOINT_FILE; refuses a file written for other settings, naming the first setting that differs. */
export function readCheckpoint(path: string, fingerprint: Fingerprint): Previous {
  const doc = readCheckpointDocument<CheckpointDocument>(path, FORMAT, fingerprint);
  if (!doc) return { kind: 'none' };
  if (!Array.isArray(doc.units)) throw new CheckpointError(`CHECKPOINT_FILE ${path} is not a checkpoint of this tool; remove it to start over`);
  const targetRunIds = Array.isArray(doc.targetRunIds) ? doc.targetRunIds : [];
  return { kind: doc.complete ? 'complete' : 'resume', counts: { ...noCounts(), ...doc.counts }, units: doc.units, targetRunIds, updatedAt: doc.updatedAt };
}

/** The formats a checkpoint file may hold, and what each is for (a file of the other kind is refused, named). */
export const LIVE_FORMAT = 'redis-keys-migrator live checkpoint 1';
const KINDS: Record<string, string> = { [FORMAT]: 'a copy\'s (SCAN cursors)', [LIVE_FORMAT]: 'a live run\'s (replication offsets)' };

/**
 * CHECKPOINT_FILE's document of `format`, written with the same settings (`fingerprint`); undefined when there is
 * none yet (its folder checked writable). Another kind, other settings or an unreadable file are refused, named.
 */
export function readCheckpointDocument<T extends { format: string; fingerprint: Fingerprint }>(path: string, format: string, fingerprint: Fingerprint): T | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      writable(path);
      return undefined;
    }
    throw new CheckpointError(`CHECKPOINT_FILE ${path} cannot be read (${(err as Error).message})`);
  }
  let doc: T;
  try {
    doc = JSON.parse(text) as T;
  } catch {
    throw new CheckpointError(`CHECKPOINT_FILE ${path} is not a checkpoint (not JSON); remove it to start over`);
  }
  if (typeof doc !== 'object' || doc === null || typeof doc.fingerprint !== 'object' || doc.fingerprint === null || !(doc.format in KINDS)) {
    throw new CheckpointError(`CHECKPOINT_FILE ${path} is not a checkpoint of this tool; remove it to start over`);
  }
  if (doc.format !== format) throw new CheckpointError(`CHECKPOINT_FILE ${path} holds ${KINDS[doc.format] ?? ''} checkpoint, and this run needs ${KINDS[format] ?? ''}: use another file, or remove it to start over`);
  for (const [setting, value] of Object.entries(fingerprint)) {
    const then = doc.fingerprint[setting] ?? '';
    if (then !== value) {
      throw new CheckpointError(
        `CHECKPOINT_FILE ${path} was written with ${setting}=${JSON.stringify(then)}, and this run has ${JSON.stringify(value)}: set it back to resume, or remove the file to start over`,
      );
    }
  }
  return doc;
}

/** A new checkpoint's folder must exist and take files, or the run would find out only at its first write. */
function writable(path: string): void {
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch {
    throw new CheckpointError(`CHECKPOINT_FILE ${path} cannot be written: its folder does not exist or is read-only`);
  }
}

/** A source master as a checkpoint names it: address, process and the slots it serves. */
export interface MasterIdentity {
  address: string;
  label: string;
  runId: string;
  slots: string;
}

/**
 * Where each source master's scan starts: at the checkpoint's cursor if it is the same server serving the same
 * slots, else from 0. A target that is another process than the checkpoint's may have lost what was copied:
 * then every scan starts over (keys present are skipped).
 */
export function startingPoints(masters: readonly MasterIdentity[], targetRunIds: readonly string[], previous: Previous): { units: UnitState[]; notes: string[] } {
  const fresh = (m: MasterIdentity): UnitState => ({ address: m.address, runId: m.runId, slots: m.slots, cursor: '0' });
  if (previous.kind !== 'resume') return { units: masters.map(fresh), notes: [] };
  const sameTarget = previous.targetRunIds.length === targetRunIds.length && previous.targetRunIds.every((id) => targetRunIds.includes(id));
  if (!sameTarget) {
    return { units: masters.map(fresh), notes: ['The target is another server process than when the checkpoint was written (restarted or failed over): it may not hold all that was copied, so every key is read again (keys present are skipped)'] };
  }
  const notes: string[] = [];
  const units = masters.map((master): UnitState => {
    const before = previous.units.find((u) => u.address === master.address);
    if (before && before.runId === master.runId && (before.slots ?? '') === master.slots) return { ...fresh(master), cursor: before.cursor };
    if (!before) notes.push(`${master.label} is not in the checkpoint: its keys are scanned from the start`);
    else if (before.runId !== master.runId) notes.push(`${master.label} is another server than the checkpoint's (run_id changed): its keys are scanned again from the start`);
    else notes.push(`${master.label} serves other slots than when the checkpoint was written (resharded): its keys are scanned again from the start`);
    return fresh(master);
  });
  return { units, notes };
}

/** How a run leaves its checkpoint: done, to resume, or void (the target may have lost what the cursors vouch for). */
export type Ending = 'complete' | 'resume' | 'void';

/** The run's checkpoint: confirmed progress, written atomically every few seconds and at the end. */
export class Checkpoint {
  private readonly queues: Ticket[][];
  private readonly counts: Counts;
  private dirty = false;
  private readonly timer: NodeJS.Timeout;
  /** The write under way; writes never overlap, so the file's renames come in order. */
  private writing: Promise<void> = Promise.resolve();
  /** Why the last write failed (a full disk, say); the run goes on and says so at the end. */
  problem: string | undefined;

  constructor(
    private readonly path: string,
    private readonly fingerprint: Fingerprint,
    private readonly units: UnitState[],
    private readonly targetRunIds: string[],
    previous: Counts,
  ) {
    this.queues = units.map(() => []);
    this.counts = { ...previous };
    this.dirty = true;
    this.timer = setInterval(() => void this.writeIfChanged(), WRITE_EVERY_MS);
    this.timer.unref();
  }

  /** Writes the state as it is now, unless the last write already holds it. */
  private writeIfChanged(): Promise<void> {
    if (!this.dirty) return this.writing;
    this.dirty = false;
    const doc = this.document(false);
    this.writing = this.writing.then(() => this.save(doc));
    return this.writing;
  }

  private async save(doc: string): Promise<void> {
    try {
      await writeAtomically(this.path, doc);
      this.problem = undefined;
    } catch (err) {
      this.problem = (err as Error).message;
    }
  }

  started(position: ScanPosition): Ticket {
    const ticket: Ticket = { ...position, done: false, counts: noCounts() };
    this.queues[position.unit]?.push(ticket);
    return ticket;
  }

  /** A batch's outcomes are counted: the unit's cursor moves past every batch done in scan order. */
  confirm(ticket: Ticket, outcomes: readonly KeyOutcome[]): void {
    ticket.done = true;
    for (const outcome of outcomes) ticket.counts[outcome.status] += 1;
    const queue = this.queues[ticket.unit] ?? [];
    const unit = this.units[ticket.unit] as UnitState;
    while (queue[0]?.done) {
      const head = queue.shift() as Ticket;
      for (const name of Object.keys(this.counts) as (keyof Counts)[]) this.counts[name] += head.counts[name];
      if (head.runId === unit.runId) unit.cursor = head.resumeCursor;
      this.dirty = true;
    }
  }

  /** The unit's scan started over on another server (restart, failover). */
  restarted(unit: number, node: Connection): void {
    this.units[unit] = { ...(this.units[unit] as UnitState), address: `${node.endpoint.host}:${node.endpoint.port}`, runId: node.capabilities.runId, cursor: '0' };
    this.dirty = true;
  }

  /** Every unit's scan is done and confirmed. */
  get scanned(): boolean {
    return this.units.every((u) => u.cursor === DONE) && this.queues.every((q) => q.length === 0);
  }

  /** The last write. A void checkpoint keeps nothing: the next run starts over. */
  async finish(ending: Ending): Promise<void> {
    clearInterval(this.timer);
    if (ending === 'void') {
      for (const unit of this.units) unit.cursor = '0';
      Object.assign(this.counts, noCounts());
    }
    const doc = this.document(ending === 'complete');
    this.writing = this.writing.then(() => this.save(doc));
    await this.writing;
  }

  /** A copy of the state, taken now: later confirmations do not change a write under way. */
  private document(complete: boolean): string {
    const doc: CheckpointDocument = {
      format: FORMAT,
      fingerprint: this.fingerprint,
      complete,
      counts: this.counts,
      units: this.units,
      targetRunIds: this.targetRunIds,
      updatedAt: new Date().toISOString(),
    };
    return `${JSON.stringify(doc, null, 2)}\n`;
  }
}

/** Temporary file, fsync, rename: a kill at any instant leaves the old checkpoint or the new one, whole. */
export async function writeAtomically(path: string, text: string): Promise<void> {
  const temporary = `${path}.tmp`;
  const file = await open(temporary, 'w');
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
}

/** The settings that decide which keys go where: a checkpoint is only good for a run with the same ones. */
export function fingerprintOf(settings: Settings): Fingerprint {
  const where = (e: Endpoint): string => (e.socketPath ? e.socketPath : `${e.host}:${e.port}`);
  return {
    SOURCE_REDIS_HOST: where(settings.source),
    SOURCE_REDIS_DB_INDEX: String(settings.source.db),
    DESTINATION_REDIS_HOST: where(settings.target),
    DESTINATION_REDIS_DB_INDEX: String(settings.target.db),
    SCAN_MATCH_PATTERN: settings.matchPattern,
    SCAN_TYPE: settings.scanType,
    KEY_EXCLUDE_PATTERN: settings.excludePattern,
    // SOURCE_SLOTS, SHARD_COUNT and SHARD_INDEX as the slots they leave: each shard keeps a checkpoint of its own.
    SOURCE_SLOTS: settings.sharding.slots ? slotRangesText(settings.sharding.slots) : '',
    KEY_PREFIX_STRIP: settings.names.strip.toString('latin1'),
    KEY_PREFIX_ADD: settings.names.add.toString('latin1'),
  };
}

/** `Resuming from <file>: N keys done, cursor …`: each master's cursor, with its address when there are several. */
export function resumeLine(file: string, previous: Previous, units: readonly UnitState[]): string {
  const cursors = units.map((u) => (units.length > 1 ? `${u.address} ${u.cursor}` : u.cursor)).join(', ');
  const done = previous.kind === 'none' ? 0 : total(previous.counts);
  return `Resuming from ${file}: ${done} keys done, cursor ${cursors}`;
}
