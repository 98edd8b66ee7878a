// Finds where a serialized value ends without decoding it: each value type's layout as a small grammar of
// lengths, strings and fixed-size fields, walked by a scanner that can stop at any field and resume later.
import type { ByteCursor } from './cursor.js';
import { readLength, skipLength, stringBodyLength, textDoubleBodyLength } from './encodings.js';
import { RdbFormatError } from './errors.js';
import { isValkeyFormat, MODULE_OPCODE, RDB_TYPE, VALKEY_HASH_2 } from './types.js';

/**
 * One field of a layout: 'len' a length, 'str' a string, 'dbl' a text double, a number that many raw bytes,
 * 'module' module opcodes up to their EOF, { each } a length N followed by N repetitions of the steps.
 */
export type Step = 'len' | 'str' | 'dbl' | 'module' | number | { readonly each: readonly Step[] };

const STREAM_ID = ['len', 'len'] as const;
const PEL_ENTRY = [16, 8, 'len'] as const; // raw 128-bit ID, delivery time, delivery count
const CONSUMER_PEL = { each: [16] } as const;

/** Redis 8.6's IDMP state after a stream's groups: duration, max entries, producers with their IDs, two counters. */
const IDMP: readonly Step[] = ['len', 'len', { each: ['str', { each: ['str', ...STREAM_ID] }] }, 'len', 'len'];

function streamLayout(version: 1 | 2 | 3): readonly Step[] {
  const metadata: Step[] = version === 1
    ? ['len', ...STREAM_ID] // length, last ID
    : ['len', ...STREAM_ID, ...STREAM_ID, ...STREAM_ID, 'len']; // + first ID, max deleted ID, entries added
  const consumer: Step[] = version === 3 ? ['str', 8, 8, CONSUMER_PEL] : ['str', 8, CONSUMER_PEL];
  const group: Step[] = [
    'str', ...STREAM_ID, ...(version === 1 ? [] : ['len' as const]), // name, last delivered ID, entries read
    { each: PEL_ENTRY },
    { each: consumer },
  ];
  return [{ each: ['str', 'str'] }, ...metadata, { each: group }]; // node keys and listpacks first
}

const LAYOUTS = new Map<number, readonly Step[]>([
  [RDB_TYPE.STRING, ['str']],
  [RDB_TYPE.LIST, [{ each: ['str'] }]],
  [RDB_TYPE.SET, [{ each: ['str'] }]],
  [RDB_TYPE.ZSET, [{ each: ['str', 'dbl'] }]],
  [RDB_TYPE.HASH, [{ each: ['str', 'str'] }]],
  [RDB_TYPE.ZSET_2, [{ each: ['str', 8] }]],
  [RDB_TYPE.MODULE_2, ['len', 'module']],
  [RDB_TYPE.HASH_ZIPMAP, ['str']],
  [RDB_TYPE.LIST_ZIPLIST, ['str']],
  [RDB_TYPE.SET_INTSET, ['str']],
  [RDB_TYPE.ZSET_ZIPLIST, ['str']],
  [RDB_TYPE.HASH_ZIPLIST, ['str']],
  [RDB_TYPE.LIST_QUICKLIST, [{ each: ['str'] }]],
  [RDB_TYPE.STREAM_LISTPACKS, streamLayout(1)],
  [RDB_TYPE.HASH_LISTPACK, ['str']],
  [RDB_TYPE.ZSET_LISTPACK, ['str']],
  [RDB_TYPE.LIST_QUICKLIST_2, [{ each: ['len', 'str'] }]], // container kind, node
  [RDB_TYPE.STREAM_LISTPACKS_2, streamLayout(2)],
  [RDB_TYPE.SET_LISTPACK, ['str']],
  [RDB_TYPE.STREAM_LISTPACKS_3, streamLayout(3)],
  [RDB_TYPE.STREAM_LISTPACKS_4, [...streamLayout(3), ...IDMP]],
  [RDB_TYPE.HASH_METADATA_PRE_GA, [{ each: ['len', 'str', 'str'] }]], // expiry, field, value
  [RDB_TYPE.HASH_LISTPACK_EX_PRE_GA, ['str']],
  [RDB_TYPE.HASH_METADATA, [8, { each: ['len', 'str', 'str'] }]], // minimum expiry first
  [RDB_TYPE.HASH_LISTPACK_EX, [8, 'str']],
]);

/** Valkey 9's HASH_2: per field its name, value and int64 expiry. Its types from 22 on are not Redis's. */
const VALKEY_HASH_2_LAYOUT: readonly Step[] = [{ each: ['str', 'str', 8] }];

/** The layout of a value type in a file of RDB `version`, or undefined for a type this reader cannot walk. */
export function layoutOf(rdbType: number, version = 0): readonly Step[] | undefined {
  if (isValkeyFormat(version) && rdbType >= VALKEY_HASH_2) return rdbType === VALKEY_HASH_2 ? VALKEY_HASH_2_LAYOUT : undefined;
  return LAYOUTS.get(rdbType);
}

/** The body of a MODULE_AUX record after its header: module opcodes up to EOF. */
export const MODULE_AUX_BODY: readonly Step[] = ['module'];

interface Frame {
  readonly steps: readonly Step[];
  index: number;
  /** Passes over `steps` still to do, this one included. */
  remaining: number;
}

/**
 * Walks a layout from a start offset. `at` only moves past fields that are complete, so when the cursor runs
 * out (and throws) the scan resumes there with a fresh cursor. A string's body is skipped by arithmetic, so it
 * need not be in memory: `at` may point past the bytes the cursor holds.
 */
export class ValueScanner {
  private readonly frames: Frame[];
  at: number;

  constructor(steps: readonly Step[], start: number) {
    this.frames = [{ steps, index: 0, remaining: 1 }];
    this.at = start;
  }

  get done(): boolean {
    return this.frames.length === 0;
  }

  /** Scans on from `at` with a cursor whose bytes start at or before it; returns once the value is complete. */
  advance(c: ByteCursor): void {
    const frames = this.frames;
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]!;
      if (frame.index === frame.steps.length) {
        frame.index = 0;
        if (--frame.remaining === 0) {
          frames.pop();
          const parent = frames[frames.length - 1];
          if (parent) parent.index++;
        }
        continue;
      }
      const step = frame.steps[frame.index]!;
      if (typeof step === 'number') {
        this.at += step; // fixed-size: skipped without looking
        frame.index++;
        continue;
      }
      c.pos = this.at - c.base;
      if (step === 'str') {
        const body = stringBodyLength(c);
        this.at = c.offset + body;
        frame.index++;
      } else if (step === 'len') {
        skipLength(c);
        this.at = c.offset;
        frame.index++;
      } else if (step === 'dbl') {
        const body = textDoubleBodyLength(c);
        this.at = c.offset + body;
        frame.index++;
      } else if (step === 'module') {
        if (this.moduleItem(c)) frame.index++;
      } else {
        const count = readLength(c);
        this.at = c.offset;
        if (count === 0) frame.index++;
        else frames.push({ steps: step.each, index: 0, remaining: count });
      }
    }
  }

  /** One module opcode and its operand (rdbLoadCheckModuleValue); true at the EOF opcode. */
  private moduleItem(c: ByteCursor): boolean {
    const start = c.offset;
    const opcode = readLength(c);
    switch (opcode) {
      case MODULE_OPCODE.EOF:
        this.at = c.offset;
        return true;
      case MODULE_OPCODE.SINT:
      case MODULE_OPCODE.UINT:
        skipLength(c);
        this.at = c.offset;
        return false;
      case MODULE_OPCODE.FLOAT:
        this.at = c.offset + 4;
        return false;
      case MODULE_OPCODE.DOUBLE:
        this.at = c.offset + 8;
        return false;
      case MODULE_OPCODE.STRING: {
        const body = stringBodyLength(c);
        this.at = c.offset + body;
        return false;
      }
    }
    throw new RdbFormatError(`unknown module value opcode ${opcode} ${c.at(start)}`);
  }
}
