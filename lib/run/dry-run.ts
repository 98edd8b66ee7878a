// DRY_RUN: reads what a copy would copy (type, memory, expiry of each key, and whether the target has it)
// and reports it, writing nothing. One read-only script call per batch on each side; from an .rdb file, the
// batch's values say the rest.
import type { Connection } from '../net/connections.js';
import { logicalType } from '../rdb/types.js';
import { emptyKeysLines, formatBytes } from '../report/summary.js';
import { byNode, forEachPair, type NodePair } from '../net/routing.js';
import type { Side } from '../net/side.js';
import { asText } from '../net/reply.js';
import { flagsFor, READ_FLAGS, withFlags } from '../net/scripts.js';
import { exitStatus } from './exit.js';
import { say, timingOf, writeSummary, type Session } from './session.js';
import { displayKey, type KeyNames, type RecordBatch, type StoredValue } from '../records.js';

/** Per key: "type,memory-bytes,expire-at;" (type 'none' for a key gone meanwhile). */
const DESCRIBE = `
local out = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local kind = redis.call('TYPE', k)['ok']
  local size, at = 0, -2
  if kind ~= 'none' then
    size = redis.call('MEMORY', 'USAGE', k) or 0
    at = redis.call('PTTL', k)
  end
  out[i] = kind .. ',' .. size .. ',' .. at .. ';'
end
return table.concat(out)
`;

/** Per key on the target: '1' when it exists, '0' when not, one character each. */
const EXISTS_EACH = `
local out = {}
for i = 1, #KEYS do out[i] = tostring(redis.call('EXISTS', KEYS[i])) end
return table.concat(out)
`;

const LARGEST_SHOWN = 10;

interface TypeTally {
  keys: number;
  bytes: number;
}

class DryRun {
  private readonly byType = new Map<string, TypeTally>();
  private readonly largest: { key: Buffer; kind: string; bytes: number }[] = [];
  keys = 0;
  bytes = 0;
  present = 0;
  withTtl = 0;
  vanished = 0;

  /**
   * `source` undefined: the keys come from an .rdb file, each batch with its values. `names`: KEY_PREFIX_STRIP and
   * KEY_PREFIX_ADD, for what the target holds already.
   */
  constructor(private readonly source: Side | undefined, private readonly target: Side, private readonly names: KeyNames) {}

  private onTarget(keys: readonly Buffer[]): Buffer[] {
    return keys.map((key) => this.names.toTarget(key));
  }

  async add(batch: RecordBatch): Promise<void> {
    const { keys, stored } = batch;
    if (stored) {
      await Promise.all(byNode(this.target, keys, stored, (key) => this.names.toTarget(key)).map((group) => this.addStored(group.node, group.keys, group.values)));
      return;
    }
    if (!this.source) throw new Error('a batch without values needs a source server');
    await forEachPair(this.source, this.target, keys, async (pair) => [await this.addPair(pair)], (key) => this.names.toTarget(key));
  }

  private async addPair({ source, target, keys }: NodePair): Promise<void> {
    const [described, flags] = await Promise.all([source.evalScript(withFlags(DESCRIBE, flagsFor(source, READ_FLAGS)), keys, []), existing(target, this.onTarget(keys))]);
    asText(described).split(';').slice(0, keys.length).forEach((record, i) => {
      const [kind = 'none', size = '0', ttl = '-2'] = record.split(',');
      if (kind === 'none') {
        this.vanished += 1;
        return;
      }
      this.count(keys[i] as Buffer, kind, Number(size), Number(ttl) >= 0, flags[i] === '1');
    });
  }

  /** Values from a file: the size as saved, and a key whose expiry has passed is one a copy leaves out. */
  private async addStored(target: Connection, keys: readonly Buffer[], stored: readonly StoredValue[]): Promise<void> {
    const flags = await existing(target, this.onTarget(keys));
    const now = Date.now();
    stored.forEach((value, i) => {
      if (value.expireAt !== -1 && value.expireAt <= now) this.vanished += 1;
      else this.count(keys[i] as Buffer, logicalType(value.type) ?? 'unknown', value.value.length, value.expireAt !== -1, flags[i] === '1');
    });
  }

  private count(key: Buffer, kind: string, bytes: number, hasTtl: boolean, present: boolean): void {
    this.keys += 1;
    this.bytes += bytes;
    if (hasTtl) this.withTtl += 1;
    if (present) this.present += 1;
    const tally = this.byType.get(kind) ?? { keys: 0, bytes: 0 };
    tally.keys += 1;
    tally.bytes += bytes;
    this.byType.set(kind, tally);
    // Keep only the largest few: memory stays flat however many keys there are.
    if (this.largest.length < LARGEST_SHOWN || bytes > (this.largest.at(-1)?.bytes ?? 0)) {
      this.largest.push({ key, kind, bytes });
      this.largest.sort((a, b) => b.bytes - a.bytes);
      this.largest.length = Math.min(this.largest.length, LARGEST_SHOWN);
    }
  }

  report(overwrite: boolean): string[] {
    const lines = [
      'Dry run: nothing was written.',
      `Would copy ${this.keys - (overwrite ? 0 : this.present)} keys; ${this.present} already on the target would be ` +
        `${overwrite ? 'replaced' : 'skipped'}; ${this.withTtl} have an expiry; ${formatBytes(this.bytes)} ${this.source ? 'in memory on the source (MEMORY USAGE)' : 'of values in the file (as saved)'}.`,
    ];
    for (const [kind, t] of [...this.byType.entries()].sort((a, b) => b[1].keys - a[1].keys)) {
      lines.push(`  ${kind.padEnd(8)} ${String(t.keys).padStart(10)} keys  ${formatBytes(t.bytes).padStart(10)}`);
    }
    if (this.vanished > 0) lines.push(this.source ? `  ${this.vanished} keys vanished from the source while being read` : `  ${this.vanished} keys in the file have expired: a copy leaves them out`);
    if (this.largest.length > 0) lines.push('Largest keys:');
    for (const k of this.largest) lines.push(`  ${formatBytes(k.bytes).padStart(10)}  ${k.kind.padEnd(8)} |${displayKey(k.key)}|`);
    return lines;
  }
}

async function dryRunBatches(dryRun: DryRun, batches: AsyncIterable<RecordBatch>, shouldStop: () => boolean): Promise<void> {
  for await (const batch of batches) {
    if (shouldStop()) break;
    await dryRun.add(batch);
  }
}

/** Per key, '1' when the target has it, '0' when not. */
async function existing(target: Connection, keys: readonly Buffer[]): Promise<string> {
  return asText(await target.evalScript(withFlags(EXISTS_EACH, flagsFor(target, READ_FLAGS)), keys, []));
}

/** DRY_RUN: what a copy would do, from reads only. */
export async function dryRun(session: Session): Promise<number> {
  const report = new DryRun(session.source, session.target, session.settings.names);
  await dryRunBatches(report, session.keys, () => session.interruption.requested);
  for (const line of [...report.report(session.settings.overwrite), ...emptyKeysLines(session.selection.empty)]) say(line);
  const status = exitStatus({ interrupted: session.interruption.requested, ...session.libraries });
  writeSummary(session.settings, { mode: 'dry-run', timing: timingOf(session, 0), exitStatus: status });
  return status;
}
