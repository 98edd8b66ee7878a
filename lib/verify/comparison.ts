// Running a verification: over the source's keys (compare mode) or over the keys a copy just covered
// (VERIFY=true, read back from a journal file so memory stays flat), with the report in RIOT's form.
import { closeSync, createReadStream, openSync, rmSync, writeSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forEachPair, type Side } from '../net/cluster.js';
import { displayKey } from '../error-log.js';
import type { KeyOutcome } from '../batch.js';
import { CATEGORIES, compareBatch, type CompareOptions, type DiffCategory, type KeyVerdict } from './compare-key.js';

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

export interface DiffOutput {
  showDiffs: boolean;
  reportFile: string;
  say: (line: string) => void;
}

/** Prints differences as they are found (SHOW_DIFFS) and writes them as JSON lines (DIFF_REPORT_FILE). */
export class DiffSink {
  private readonly fd: number | undefined;

  constructor(private readonly output: DiffOutput) {
    this.fd = output.reportFile ? openSync(output.reportFile, 'w') : undefined;
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
  }
}

/** Runs `compare` over batches with a few in flight, stopping early when asked. */
export async function verifyBatches(
  batches: AsyncIterable<Buffer[]>,
  compare: (keys: Buffer[]) => Promise<void>,
  shouldStop: () => boolean,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  for await (const batch of batches) {
    while (inFlight.size >= 4) await Promise.race(inFlight);
    if (shouldStop() || failure !== undefined) break;
    const task = compare(batch).catch((err: unknown) => {
      failure ??= err;
    });
    const tracked: Promise<void> = task.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
}

/** Compares a batch, each key on the nodes that hold it. */
export function compareInto(source: Side, target: Side, options: CompareOptions) {
  return (keys: readonly Buffer[]): Promise<KeyVerdict[]> =>
    forEachPair(source, target, keys, (pair) => compareBatch(pair.source, pair.target, pair.keys, options));
}

/**
 * The keys a copy restored or skipped, appended to a temporary file as the copy goes and read back in
 * batches for VERIFY=true: the copy covered them, so exactly they are verified.
 */
export class KeyJournal {
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
  source: Side;
  target: Side;
  options: CompareOptions;
  batchSize: number;
  output: DiffOutput;
  shouldStop: () => boolean;
}

/** Compare mode: every key the scan yields, checked against the target. */
export async function verifyAll(setup: VerificationSetup, batches: AsyncIterable<Buffer[]>): Promise<Tally> {
  const tally = emptyTally();
  const sink = new DiffSink(setup.output);
  const compare = compareInto(setup.source, setup.target, setup.options);
  try {
    await verifyBatches(batches, async (keys) => sink.record(await compare(keys), tally, 'compare'), setup.shouldStop);
  } finally {
    sink.close();
  }
  return tally;
}

/** VERIFY=true: the keys the copy restored, then those it skipped as already present, each with its own tally. */
export async function verifyJournal(setup: VerificationSetup, journal: KeyJournal): Promise<{ copied: Tally; skipped: Tally }> {
  const copied = emptyTally();
  const skipped = emptyTally();
  const sink = new DiffSink(setup.output);
  const compare = compareInto(setup.source, setup.target, setup.options);
  try {
    await verifyBatches(journal.batches(false, setup.batchSize), async (keys) => sink.record(await compare(keys), copied, 'copied'), setup.shouldStop);
    await verifyBatches(journal.batches(true, setup.batchSize), async (keys) => sink.record(await compare(keys), skipped, 'skipped'), setup.shouldStop);
  } finally {
    sink.close();
  }
  return { copied, skipped };
}
