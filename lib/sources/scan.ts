// Which keys a run covers: SCAN with MATCH, COUNT and TYPE on the server, then KEY_EXCLUDE_PATTERN here,
// matched byte for byte by a port of Redis's own glob matcher.
import { isConnectionLoss, type Connection, type Reply } from '../net/connections.js';
import { asArray, asText } from '../batch.js';

export interface KeySelection {
  match: string;
  /** SCAN's TYPE option; empty for every type. */
  type: string;
  /** Keys matching this glob are left out; empty for none. */
  exclude: string;
  scanCount: number;
}

const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const BACKSLASH = 0x5c;
const CARET = 0x5e;
const DASH = 0x2d;

/** Redis compares range ends as C `char`, which is signed: bytes from 0x80 sort below 'a'. */
const signed = (byte: number): number => (byte > 127 ? byte - 256 : byte);

/**
 * Redis's own glob matcher (stringmatchlen in util.c), ported byte for byte so KEY_EXCLUDE_PATTERN means
 * exactly what SCAN MATCH would: escapes inside classes, reversed ranges, unclosed classes and all.
 */
export function globMatches(pattern: Uint8Array, key: Uint8Array): boolean {
  return matchFrom(pattern, 0, key, 0, { giveUp: false });
}

function matchFrom(p: Uint8Array, pi: number, s: Uint8Array, si: number, state: { giveUp: boolean }): boolean {
  while (pi < p.length && si < s.length) {
    const c = p[pi];
    if (c === STAR) {
      while (pi + 1 < p.length && p[pi + 1] === STAR) pi++;
      if (pi === p.length - 1) return true;
      for (; si < s.length; si++) {
        if (matchFrom(p, pi + 1, s, si, state)) return true;
        if (state.giveUp) return false;
      }
      // No match for the rest from anywhere: longer matches for earlier stars cannot help either.
      state.giveUp = true;
      return false;
    } else if (c === QUESTION) {
      si++;
    } else if (c === OPEN) {
      const [matched, end] = matchClass(p, pi + 1, s[si] as number);
      if (!matched) return false;
      pi = end;
      si++;
    } else {
      if (c === BACKSLASH && p.length - pi >= 2) pi++;
      if (p[pi] !== s[si]) return false;
      si++;
    }
    pi++;
    if (si === s.length) {
      while (pi < p.length && p[pi] === STAR) pi++;
      break;
    }
  }
  return pi === p.length && si === s.length;
}

/** A [...] class from just after '['; returns whether `byte` is in it, and where the class ends. */
function matchClass(p: Uint8Array, start: number, byte: number): [boolean, number] {
  let pi = start;
  const negate = p[pi] === CARET;
  if (negate) pi++;
  let match = false;
  for (;; pi++) {
    if (p[pi] === BACKSLASH && p.length - pi >= 2) {
      pi++;
      if (p[pi] === byte) match = true;
    } else if (p[pi] === CLOSE) {
      break;
    } else if (pi >= p.length) {
      pi--; // an unclosed class takes the rest of the pattern
      break;
    } else if (p.length - pi >= 3 && p[pi + 1] === DASH) {
      const [low, high] = [signed(p[pi] as number), signed(p[pi + 2] as number)].sort((a, b) => a - b) as [number, number];
      if (signed(byte) >= low && signed(byte) <= high) match = true;
      pi += 2;
    } else if (p[pi] === byte) {
      match = true;
    }
  }
  return [negate ? !match : match, pi];
}

/** Counts what the selection left out on this side of SCAN. */
export interface SelectionCounts {
  scanned: number;
  excluded: number;
}

/** A batch of selected keys, and where a later run may resume the scan once it and every earlier batch are done. */
export interface KeyBatch {
  keys: Buffer[];
  /** Which master's scan (see ScanUnit) the keys come from. */
  unit: number;
  /** The SCAN cursor to resume from, or DONE when the unit's scan ended with this batch. */
  resumeCursor: string;
  /** The run_id of the server that cursor belongs to: a checkpoint takes it only for that server. */
  runId: string;
  /** Set by a source that holds the values already (an .rdb file), one per key: nothing is read from a server. */
  stored?: StoredValue[];
  /** Called once the batch is done with (copied, failed or abandoned): live mode's queue frees its keys. */
  settled?: () => void;
}

/** A key's value as an .rdb file holds it: its type byte and bytes as saved, a DUMP payload once footed. */
export interface StoredValue {
  /** Absolute ms, or -1. */
  expireAt: number;
  type: number;
  value: Buffer;
  /** The file's RDB version. */
  rdbVersion: number;
}

export const DONE = 'done';

/** One master's scan: it follows that master's slots to a new node after a failover. */
export interface ScanUnit {
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
  counts: SelectionCounts = { scanned: 0, excluded: 0 },
  recovery?: ScanRecovery,
): AsyncGenerator<KeyBatch> {
  const excluded = selection.exclude ? Buffer.from(selection.exclude) : undefined;
  const scan = ['SCAN', unit.startCursor, 'MATCH', selection.match, 'COUNT', String(selection.scanCount)];
  if (selection.type) scan.push('TYPE', selection.type);
  let node = unit.node();
  let runId = node.capabilities.runId;
  let batch: Buffer[] = [];
  let lastResume = unit.startCursor;
  /** When this SCAN call was first lost, while it keeps failing. */
  let lostSince: number | undefined;
  if (unit.startCursor === DONE) return;
  const yielded = (keys: Buffer[], resumeCursor: string): KeyBatch => {
    lastResume = resumeCursor;
    return { keys, unit: unit.index, resumeCursor, runId };
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
      if (excluded && globMatches(excluded, key)) {
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
