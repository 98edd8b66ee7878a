// CHECKPOINT_FILE: how far a copy got, so a killed or stopped run resumes instead of starting over. It holds
// each source master's identity and SCAN cursor and the counts, only for batches the target confirmed.
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { open, rename } from 'node:fs/promises';
import type { Connection } from './net/connections.js';
import { DONE, type KeyBatch } from './sources/scan.js';
import type { Counts } from './migration.js';
import type { KeyOutcome } from './batch.js';

/** The settings that decide which keys go where: a checkpoint is only good for the same ones. */
export type Fingerprint = Record<string, string>;

/** One source master's scan as of the last confirmed batch. */
export interface UnitState {
  address: string;
  runId: string;
  /** The SCAN cursor to resume from, or DONE. */
  cursor: string;
}

interface CheckpointDocument {
  format: 'redis-keys-migrator checkpoint 1';
  fingerprint: Fingerprint;
  complete: boolean;
  counts: Counts;
  units: UnitState[];
  updatedAt: string;
}

/** A checkpoint that cannot be used: unreadable, or written for other settings. Named in one line. */
export class CheckpointError extends Error {}

const FORMAT = 'redis-keys-migrator checkpoint 1';
/** Often enough that a resume re-reads little; the write is small and off the event loop, so it costs nothing measurable. */
const WRITE_EVERY_MS = 100;
const zero = (): Counts => ({ restored: 0, skipped: 0, failed: 0, vanished: 0 });
export const total = (c: Counts): number => c.restored + c.skipped + c.failed + c.vanished;

/** A batch handed to the copy; its place in the scan is confirmed once it and every earlier one are done. */
interface Ticket {
  unit: number;
  resumeCursor: string;
  /** The unit's scan generation: a batch read before a restart must not move the new scan's cursor. */
  generation: number;
  done: boolean;
  counts: Counts;
}

/** The checkpoint read at start: nothing, a migration to resume, or one already complete. */
export type Previous = { kind: 'none' } | { kind: 'resume' | 'complete'; counts: Counts; units: UnitState[]; updatedAt: string };

/** Reads CHECKPOINT_FILE; refuses a file written for other settings, naming the first setting that differs. */
export function readCheckpoint(path: string, fingerprint: Fingerprint): Previous {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return writable(path);
    throw new CheckpointError(`CHECKPOINT_FILE ${path} cannot be read (${(err as Error).message})`);
  }
  let doc: CheckpointDocument;
  try {
    doc = JSON.parse(text) as CheckpointDocument;
  } catch {
    throw new CheckpointError(`CHECKPOINT_FILE ${path} is not a checkpoint (not JSON); remove it to start over`);
  }
  if (doc.format !== FORMAT || typeof doc.fingerprint !== 'object' || !Array.isArray(doc.units)) {
    throw new CheckpointError(`CHECKPOINT_FILE ${path} is not a checkpoint of this tool; remove it to start over`);
  }
  for (const [setting, value] of Object.entries(fingerprint)) {
    const then = doc.fingerprint[setting] ?? '';
    if (then !== value) {
      throw new CheckpointError(
        `CHECKPOINT_FILE ${path} was written with ${setting}=${JSON.stringify(then)}, and this run has ${JSON.stringify(value)}: set it back to resume, or remove the file to start over`,
      );
    }
  }
  return { kind: doc.complete ? 'complete' : 'resume', counts: { ...zero(), ...doc.counts }, units: doc.units, updatedAt: doc.updatedAt };
}

/** A new checkpoint's folder must exist and take files, or the run would find out only at its first write. */
function writable(path: string): Previous {
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch {
    throw new CheckpointError(`CHECKPOINT_FILE ${path} cannot be written: its folder does not exist or is read-only`);
  }
  return { kind: 'none' };
}

/** Where each source master's scan starts: at the checkpoint's cursor if it is the same server, else from 0. */
export function startingPoints(masters: readonly Connection[], previous: Previous): { units: UnitState[]; restarted: string[] } {
  const restarted: string[] = [];
  const units = masters.map((master): UnitState => {
    const address = `${master.endpoint.host}:${master.endpoint.port}`;
    const state: UnitState = { address, runId: master.capabilities.runId, cursor: '0' };
    if (previous.kind !== 'resume') return state;
    const before = previous.units.find((u) => u.address === address);
    if (before && before.runId === state.runId) return { ...state, cursor: before.cursor };
    restarted.push(before ? `${master.label} is another server than the checkpoint's (run_id changed): its keys are scanned again from the start` : `${master.label} is not in the checkpoint: its keys are scanned from the start`);
    return state;
  });
  return { units, restarted };
}

/** The run's checkpoint: confirmed progress, written atomically every few seconds and at the end. */
export class Checkpoint {
  private readonly queues: Ticket[][];
  private readonly generations: number[];
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
    previous: Counts,
  ) {
    this.queues = units.map(() => []);
    this.generations = units.map(() => 0);
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

  /** Counts of the whole migration confirmed so far, across runs. */
  get confirmed(): Counts {
    return { ...this.counts };
  }

  started(batch: KeyBatch): Ticket {
    const ticket: Ticket = { unit: batch.unit, resumeCursor: batch.resumeCursor, generation: this.generations[batch.unit] ?? 0, done: false, counts: zero() };
    this.queues[batch.unit]?.push(ticket);
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
      if (head.generation === this.generations[ticket.unit]) unit.cursor = head.resumeCursor;
      this.dirty = true;
    }
  }

  /** The unit's scan started over on another server (restart, failover). */
  restarted(unit: number, node: Connection): void {
    this.generations[unit] = (this.generations[unit] ?? 0) + 1;
    this.units[unit] = { address: `${node.endpoint.host}:${node.endpoint.port}`, runId: node.capabilities.runId, cursor: '0' };
    this.dirty = true;
  }

  /** The last write: complete only when every unit's scan is done and confirmed. */
  async finish(succeeded: boolean): Promise<boolean> {
    clearInterval(this.timer);
    const complete = succeeded && this.units.every((u) => u.cursor === DONE) && this.queues.every((q) => q.length === 0);
    const doc = this.document(complete);
    this.writing = this.writing.then(() => this.save(doc));
    await this.writing;
    return complete && this.problem === undefined;
  }

  /** A copy of the state, taken now: later confirmations do not change a write under way. */
  private document(complete: boolean): string {
    const doc: CheckpointDocument = {
      format: FORMAT,
      fingerprint: this.fingerprint,
      complete,
      counts: this.counts,
      units: this.units,
      updatedAt: new Date().toISOString(),
    };
    return `${JSON.stringify(doc, null, 2)}\n`;
  }
}

/** Temporary file, fsync, rename: a kill at any instant leaves the old checkpoint or the new one, whole. */
async function writeAtomically(path: string, text: string): Promise<void> {
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
