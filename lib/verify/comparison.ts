// Running a verification: over the source's keys (compare mode) or over the keys a copy just covered
// (VERIFY=true: from a server, read back from a journal file so memory stays flat; from an .rdb file, each batch
// as the copy settles it, its values still in hand), with the report in RIOT's form.
import { closeSync, createReadStream, openSync, rmSync, writeSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CATEGORIES, compareBatch, compareStoredBatch, type CompareOptions, type DiffCategory, type KeyVerdict } from './compare-key.js';
import { byNode, forEachPair } from '../net/routing.js';
import type { Side } from '../net/side.js';
import { concatAll, InFlight } from '../concurrency.js';
import { displayKey, type KeyOutcome, type RecordBatch, type StoredValue } from '../records.js';

/** Checks running at once, beyond which the copy waits: memory stays bounded by the batches in hand. */
const CHECKS_IN_FLIGHT = 4;

export interface Tally {
  checked: number;
  identical: number;
  vanished: number;
  differences: Record<DiffCategory, number>;
}

export const emptyTally = (): Tally => ({ checked: 0, identical: 0, vanished: 0, differences: { missing: 0, type: 0, value: 0, ttl: 0 } });

export function differing(tally: Tally): number {
  return CATEGORIES.reduce((sum, c) => sum + tally.differences[c], 0);
}

/** `0 missing, 0 type, 0 value, 0 ttl (1000 keys checked, 1000 identical)`. */
export function tallyLine(tally: Tally): string {
  const counts = CATEGORIES.map((c) => `${tally.differences[c]} ${c}`).join(', ');
  const vanished = tally.vanished > 0 ? `, ${tally.vanished} gone from the source meanwhile` : '';
  return `${counts} (${tally.checked} keys checked, ${tally.identical} identical${vanished})`;
}

interface DiffOutput {
  showDiffs: boolean;
  reportFile: string;
  say: (line: string) => void;
}

/** Reports this run has written already: a run over several databases adds each one's lines to the same file. */
const reportsStarted = new Set<string>();

/** Prints differences as they are found (SHOW_DIFFS) and writes them as JSON lines (DIFF_REPORT_FILE). */
export class DiffSink {
  private fd: number | undefined;

  constructor(private readonly output: DiffOutput) {
    const file = output.reportFile;
    this.fd = file ? openSync(file, reportsStarted.has(file) ? 'a' : 'w') : undefined;
    if (file) reportsStarted.add(file);
  }

  record(verdicts: readonly KeyVerdict[], tally: Tally, heading: string): void {
    for (const v of verdicts) {
      tally.checked += v.verdict === 'vanished' ? 0 : 1;
      if (v.verdict === 'identical') tally.identical += 1;
      else if (v.verdict === 'vanished') tally.vanished += 1;
      else {
        tally.differences[v.category] += 1;
        if (this.output.showDiffs) this.output.say(`${v.category} |${displayKey(v.key)}|: ${v.detail}`);
        if (this.fd !== undefined) {
          const line = { key: displayKey(v.key), key_base64: v.key.toString('base64'), category: v.category, detail: v.detail, heading };
          writeSync(this.fd, `${JSON.stringify(line)}\n`);
        }
      }
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Runs `compare` over batches with a few in flight, stopping early when asked. */
export async function verifyBatches<T>(
  batches: AsyncIterable<T>,
  compare: (batch: T) => Promise<void>,
  shouldStop: () => boolean,
): Promise<void> {
  const inFlight = new InFlight(() => CHECKS_IN_FLIGHT);
  let failure: unknown;
  for await (const batch of batches) {
    await inFlight.room();
    if (shouldStop() || failure !== undefined) break;
    inFlight.add(compare(batch).catch((err: unknown) => void (failure ??= err)));
  }
  await inFlight.drain();
  if (failure !== undefined) throw failure;
}

/** Compares a batch, each key on the nodes that hold it. */
export function compareInto(source: Side, target: Side, options: CompareOptions) {
  return (keys: readonly Buffer[]): Promise<KeyVerdict[]> =>
    forEachPair(source, target, keys, (pair) => compareBatch(pair.source, pair.target, pair.keys, options), (key) => options.names?.toTarget(key) ?? key);
}

/** Compares keys whose values came from a file, each on the target node that holds it. */
function compareStoredInto(target: Side, options: CompareOptions) {
  return async (keys: readonly Buffer[], stored: readonly StoredValue[]): Promise<KeyVerdict[]> => {
    const groups = byNode(target, keys, stored, (key) => options.names?.toTarget(key) ?? key);
    return concatAll(await Promise.all(groups.map((g) => compareStoredBatch(g.node, g.keys, g.values, options))));
  };
}

/** A batch compared the way its source allows: against the file's values it carries, or the source server's. */
function batchComparer(setup: VerificationSetup): (batch: RecordBatch) => Promise<KeyVerdict[]> {
  const stored = compareStoredInto(setup.target, setup.options);
  const fromServer = setup.source ? compareInto(setup.source, setup.target, setup.options) : undefined;
  return (batch) => {
    if (batch.stored) return stored(batch.keys, batch.stored);
    if (!fromServer) throw new Error('a batch without values needs a source server');
    return fromServer(batch.keys);
  };
}

/**
 * The keys a copy restored or skipped, appended to a temporary file as the copy goes and read back in
 * batches for VERIFY=true: the copy covered them, so exactly they are verified.
 */
class KeyJournal {
  private readonly dir = mkdtempSync(join(tmpdir(), 'rkm-journal-'));
  private readonly path = join(this.dir, 'keys');
  private readonly fd = openSync(this.path, 'w');

  /** Record layout: 1 byte (1 skipped, 0 restored), 4 bytes key length, the key. */
  add(outcomes: readonly KeyOutcome[]): void {
    const parts: Buffer[] = [];
    for (const o of outcomes) {
      if (o.status !== 'restored' && o.status !== 'skipped') continue;
      const head = Buffer.alloc(5);
      head.writeUInt8(o.status === 'skipped' ? 1 : 0, 0);
      head.writeUInt32BE(o.key.length, 1);
      parts.push(head, o.key);
    }
    if (parts.length > 0) writeSync(this.fd, Buffer.concat(parts));
  }

  /** Batches of keys of one kind (skipped or not), in journal order. */
  async *batches(skipped: boolean, size: number): AsyncGenerator<Buffer[]> {
    let pending = Buffer.alloc(0);
    let batch: Buffer[] = [];
    for await (const chunk of createReadStream(this.path)) {
      pending = Buffer.concat([pending, chunk as Buffer]);
      let p = 0;
      while (p + 5 <= pending.length && p + 5 + pending.readUInt32BE(p + 1) <= pending.length) {
        const length = pending.readUInt32BE(p + 1);
        if ((pending[p] === 1) === skipped) batch.push(Buffer.from(pending.subarray(p + 5, p + 5 + length)));
        p += 5 + length;
        if (batch.length === size) {
          yield batch;
          batch = [];
        }
      }
      pending = pending.subarray(p);
    }
    if (batch.length > 0) yield batch;
  }

  finishWriting(): void {
    closeSync(this.fd);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface VerificationSetup {
  /** None when the values come with the batches (an .rdb file). */
  source?: Side;
  target: Side;
  options: CompareOptions;
  batchSize: number;
  output: DiffOutput;
  shouldStop: () => boolean;
}

/** Compare mode: every key the scan (or the file) yields, checked against the target. */
export async function verifyAll(setup: VerificationSetup, batches: AsyncIterable<RecordBatch>): Promise<Tally> {
  const tally = emptyTally();
  const sink = new DiffSink(setup.output);
  const compare = batchComparer(setup);
  try {
    await verifyBatches(batches, async (batch) => sink.record(await compare(batch), tally, 'compare'), setup.shouldStop);
  } finally {
    sink.close();
  }
  return tally;
}

/** VERIFY=true: the keys the copy restored, then those it skipped as already present, each with its own tally. */
async function verifyJournal(setup: VerificationSetup, source: Side, journal: KeyJournal): Promise<CopyTallies> {
  const copied = emptyTally();
  const skipped = emptyTally();
  const sink = new DiffSink(setup.output);
  const compare = compareInto(source, setup.target, setup.options);
  try {
    await verifyBatches(journal.batches(false, setup.batchSize), async (keys) => sink.record(await compare(keys), copied, 'copied'), setup.shouldStop);
    await verifyBatches(journal.batches(true, setup.batchSize), async (keys) => sink.record(await compare(keys), skipped, 'skipped'), setup.shouldStop);
  } finally {
    sink.close();
  }
  return { copied, skipped };
}

export type CopyTallies = { copied: Tally; skipped: Tally };

/** What a copy tells its verification: each batch's outcomes, as the copy counts them. */
export interface OutcomeRecorder {
  add(outcomes: readonly KeyOutcome[]): void;
}

/** VERIFY=true: follows a copy, then checks the keys it restored and those it skipped, with a tally for each. */
export interface CopyVerification extends OutcomeRecorder {
  /** The copy's batches, passed through as they go to the copy. */
  follow(batches: AsyncIterable<RecordBatch>): AsyncIterable<RecordBatch>;
  /** After the copy: the tallies, once every check is done. */
  finish(): Promise<CopyTallies>;
  /** Frees what it holds, finished or not. */
  remove(): void;
}

/** The verification a copy from this source gets: by journal from a server, batch by batch from a file. */
export function copyVerification(setup: VerificationSetup): CopyVerification {
  return setup.source ? new JournalVerification(setup, setup.source) : new InlineVerification(setup);
}

/** From a server: the keys journalled as the copy goes, then read again from both servers once it is done. */
class JournalVerification implements CopyVerification {
  private readonly journal = new KeyJournal();
  private writing = true;

  constructor(private readonly setup: VerificationSetup, private readonly source: Side) {}

  follow(batches: AsyncIterable<RecordBatch>): AsyncIterable<RecordBatch> {
    return batches;
  }

  add(outcomes: readonly KeyOutcome[]): void {
    this.journal.add(outcomes);
  }

  async finish(): Promise<CopyTallies> {
    this.stopWriting();
    return verifyJournal(this.setup, this.source, this.journal);
  }

  remove(): void {
    this.stopWriting();
    this.journal.remove();
  }

  private stopWriting(): void {
    if (this.writing) this.journal.finishWriting();
    this.writing = false;
  }
}


/**
 * From an .rdb file, which cannot be read again by key: each batch's values are kept while the copy has the
 * batch in flight, and the keys it restored or skipped are checked against the target as soon as it settles them.
 * The copy waits for the checks when too many are running, so nothing is held beyond a few batches.
 */
class InlineVerification implements CopyVerification {
  private readonly values = new Map<string, StoredValue>();
  private readonly running = new InFlight(() => CHECKS_IN_FLIGHT);
  private readonly tallies: CopyTallies = { copied: emptyTally(), skipped: emptyTally() };
  private readonly sink: DiffSink;
  private readonly compare: (keys: readonly Buffer[], stored: readonly StoredValue[]) => Promise<KeyVerdict[]>;
  private failure: unknown;

  constructor(private readonly setup: VerificationSetup) {
    this.sink = new DiffSink(setup.output);
    this.compare = compareStoredInto(setup.target, setup.options);
  }

  async *follow(batches: AsyncIterable<RecordBatch>): AsyncGenerator<RecordBatch> {
    for await (const batch of batches) {
      batch.keys.forEach((key, i) => {
        const value = batch.stored?.[i];
        if (value) this.values.set(key.toString('latin1'), value);
      });
      yield batch;
      await this.running.room();
    }
  }

  add(outcomes: readonly KeyOutcome[]): void {
    const restored = { keys: [] as Buffer[], stored: [] as StoredValue[] };
    const skipped = { keys: [] as Buffer[], stored: [] as StoredValue[] };
    for (const outcome of outcomes) {
      const name = outcome.key.toString('latin1');
      const value = this.values.get(name);
      this.values.delete(name);
      const group = outcome.status === 'restored' ? restored : outcome.status === 'skipped' ? skipped : undefined;
      if (!value || !group) continue;
      group.keys.push(outcome.key);
      group.stored.push(value);
    }
    this.check(restored.keys, restored.stored, this.tallies.copied, 'copied');
    this.check(skipped.keys, skipped.stored, this.tallies.skipped, 'skipped');
  }

  async finish(): Promise<CopyTallies> {
    await this.running.drain();
    this.sink.close();
    if (this.failure !== undefined) throw this.failure;
    return this.tallies;
  }

  remove(): void {
    this.values.clear();
    this.sink.close();
  }

  private check(keys: Buffer[], stored: StoredValue[], tally: Tally, heading: string): void {
    if (keys.length === 0 || this.failure !== undefined || this.setup.shouldStop()) return;
    this.running.add(this.compare(keys, stored).then(
      (verdicts) => this.sink.record(verdicts, tally, heading),
      (err: unknown) => void (this.failure ??= err),
    ));
  }
}
