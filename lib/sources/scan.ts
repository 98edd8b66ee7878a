// Which keys a run covers: SCAN with MATCH, COUNT and TYPE on the server, then the run's slots (SOURCE_SLOTS, a
// shard) and KEY_EXCLUDE_PATTERN here (lib/sources/glob.ts), in batches with the scan's position beside them.
import { isConnectionLoss, type Connection } from '../net/connections.js';
import { asArray, asText, type Reply } from '../net/reply.js';
import { DONE, noSelection, type KeyNames, type RecordBatch, type SelectionCounts } from '../records.js';
import type { Settings } from '../settings.js';
import type { Side } from '../net/side.js';
import { globTest } from './glob.js';
import { mergeStreams } from '../concurrency.js';
import { scanCommand } from '../net/scan-pages.js';
import { slotSetOf, type SlotSet } from '../net/cluster.js';

export interface KeySelection {
  match: string;
  /** SCAN's TYPE option; empty for every type. */
  type: string;
  /** Keys matching this glob are left out; empty for none. */
  exclude: string;
  scanCount: number;
  /** Only keys in these hash slots (SOURCE_SLOTS, a shard); undefined for all. */
  slots?: SlotSet | undefined;
  /** Keys without KEY_PREFIX_STRIP are left out, as excluded ones are; absent: none. */
  names?: KeyNames;
}

/**
 * Keys a run leaves out whatever SCAN's MATCH says: other shards' slots, KEY_EXCLUDE_PATTERN, and keys without
 * KEY_PREFIX_STRIP (live mode's filter).
 */
export function leftOutTest(settings: Settings): (key: Uint8Array) => boolean {
  const slots = slotSetOf(settings.sharding);
  const excluded = globTest(settings.excludePattern);
  const { names } = settings;
  return (key) => (slots !== undefined && !slots.hasKey(key)) || excluded?.(key) === true || !names.covers(key);
}

/** The run's key selection, as every source applies it. */
export function keySelection(settings: Settings): KeySelection {
  return { match: settings.matchPattern, type: settings.scanType, exclude: settings.excludePattern, scanCount: settings.scanBatchSize, slots: slotSetOf(settings.sharding), names: settings.names };
}

/**
 * Every source master's scan, merged: each from its checkpoint cursor (`startCursors`, by master), or 0. With
 * `recovery` (a copy), a scan gets past lost connections; without it a lost SCAN ends the run.
 */
export function scanMasters(settings: Settings, source: Side, selection: SelectionCounts, startCursors: readonly string[], recovery?: ScanRecovery): AsyncIterable<RecordBatch> {
  const filters = keySelection(settings);
  const scans = source.mastersBySlot.map(({ slot }, index) => {
    const unit: ScanUnit = { index, node: () => source.nodeForSlot(slot), startCursor: startCursors[index] ?? '0' };
    return selectedKeys(unit, filters, settings.pipelineBatchSize, selection, recovery);
  });
  return mergeStreams(scans);
}

/** One master's scan: it follows that master's slots to a new node after a failover. */
interface ScanUnit {
  index: number;
  /** The node serving this unit's keys now. */
  node(): Connection;
  /** '0' for a new scan; a checkpoint's cursor on resume. */
  startCursor: string;
}

/** How a scan gets past a lost connection; without it, a lost SCAN ends the run. */
export interface ScanRecovery {
  recover(label: string, err: unknown, lostSince?: number): Promise<void>;
  /** The unit's node is another server now (restarted, failed over): its scan starts over from cursor 0. */
  restarted(unit: ScanUnit, label: string): void;
}

/** Yields the selected keys of one master's scan in batches of `size`; SCAN's own filters apply on the server. */
export async function* selectedKeys(
  unit: ScanUnit,
  selection: KeySelection,
  size: number,
  counts: SelectionCounts = noSelection(),
  recovery?: ScanRecovery,
): AsyncGenerator<RecordBatch> {
  const excluded = globTest(selection.exclude);
  const { slots, names } = selection;
  const scan = scanCommand(unit.startCursor, { match: selection.match, count: selection.scanCount, type: selection.type });
  let node = unit.node();
  let runId = node.capabilities.runId;
  let batch: Buffer[] = [];
  let lastResume = unit.startCursor;
  /** When this SCAN call was first lost, while it keeps failing. */
  let lostSince: number | undefined;
  if (unit.startCursor === DONE) return;
  const yielded = (keys: Buffer[], resumeCursor: string): RecordBatch => {
    lastResume = resumeCursor;
    return { keys, position: { unit: unit.index, resumeCursor, runId } };
  };
  for (;;) {
    // A reconnection made for a batch (or a failover) may have put another server behind this unit since the
    // last SCAN: a cursor means nothing there, so this master's keys are read again (copied ones are skipped).
    const now = recovery ? unit.node() : node;
    if (now !== node || now.capabilities.runId !== runId) {
      recovery?.restarted(unit, now.label);
      [node, runId, scan[1]] = [now, now.capabilities.runId, '0'];
    }
    const pageCursor = scan[1] as string;
    let reply: Reply;
    try {
      reply = await node.send(scan);
      lostSince = undefined;
    } catch (err) {
      if (!recovery || !isConnectionLoss(err)) throw err;
      lostSince ??= Date.now();
      await recovery.recover(node.label, err, lostSince);
      continue;
    }
    const [next, keys] = asArray(reply);
    scan[1] = asText(next);
    const page = asArray(keys ?? null) as Buffer[];
    for (let i = 0; i < page.length; i++) {
      const key = page[i] as Buffer;
      // Another shard's key: not this run's, and not counted (a standalone source's shards each scan every key).
      if (slots && !slots.hasKey(key)) continue;
      if (excluded?.(key) || (names && !names.covers(key))) {
        counts.excluded += 1;
        continue;
      }
      counts.scanned += 1;
      batch.push(key);
      if (batch.length === size) {
        // A batch that ends inside a page resumes at that page: its other keys are read again, never missed.
        const pageDone = i === page.length - 1;
        yield yielded(batch, pageDone ? resumeAt(scan[1]) : pageCursor);
        batch = [];
      }
    }
    if (scan[1] === '0') break;
  }
  // The end is always said, even with no key left to carry it, so a checkpoint can call this scan done.
  if (batch.length > 0 || lastResume !== DONE) yield yielded(batch, DONE);
}

const resumeAt = (cursor: string | undefined): string => (cursor === '0' || cursor === undefined ? DONE : cursor);
