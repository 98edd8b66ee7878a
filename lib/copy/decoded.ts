// Values from an .rdb file that the target cannot RESTORE (an encoding newer than it reads: a Redis 7.2 listpack
// set, a 7.4 hash with field expiries, into 7.0): decoded here and written by type, small ones a batch per call.
import { decodeValue, type RdbValue, type StreamValue } from '../rdb/decode.js';
import { RdbFormatError } from '../rdb/errors.js';
import { buildInChunks, compareStreamIds, exists, fieldExpiriesDropped, PLACEHOLDER, writeTyped, type TypedRecord } from './by-type.js';
import type { Arg } from '../net/reply.js';
import type { Connection } from '../net/connections.js';
import { mapLimited } from '../concurrency.js';
import type { KeyOutcome, StoredValue } from '../records.js';
import { CHUNKED_KEYS_AT_ONCE, type CopyContext, failed, KeyProblem } from './context.js';

/** A key and its value as the file holds it. */
interface DecodedWrite {
  key: Buffer;
  stored: StoredValue;
}

/**
 * Writes each value by type, as `COPY_METHOD=type` writes a key read from a server: small ones with their
 * expiry in one TYPE_WRITE call, streams, big values and hashes with field expiries built in chunks under a
 * temporary name and moved into place. A hash whose field expiries the target cannot keep is written without
 * them, and its outcome says so (`dropped`), never silently.
 */
export async function writeDecoded(ctx: Omit<CopyContext, 'source'>, items: readonly DecodedWrite[]): Promise<KeyOutcome[]> {
  const outcomes = new Array<KeyOutcome>(items.length);
  const decoded = new Array<RdbValue | undefined>(items.length);
  const whole: { index: number; record: TypedRecord }[] = [];
  const alone: { index: number; key: Buffer; value: Exclude<RdbValue, { type: 'module' }>; expireAt: number }[] = [];
  const now = Date.now();
  items.forEach(({ key, stored }, index) => {
    if (stored.expireAt > 0 && stored.expireAt <= now) {
      outcomes[index] = { key, status: 'vanished' };
      return;
    }
    let value: RdbValue;
    try {
      value = decodeValue(stored.value);
    } catch (err) {
      if (!(err instanceof RdbFormatError)) throw err;
      outcomes[index] = { key, status: 'failed', reason: `the file's value cannot be decoded: ${err.message}` };
      return;
    }
    if (value.type === 'module') {
      outcomes[index] = failed(key, new KeyProblem(`a module value (${value.value.moduleType}) can only be restored, and the target cannot read its payload`));
      return;
    }
    decoded[index] = value;
    if (value.type === 'stream' || needsChunks(value, ctx.settings.chunkSize)) alone.push({ index, key, value, expireAt: stored.expireAt });
    else whole.push({ index, record: { key, kind: value.type, expireAt: stored.expireAt, values: valuesInWriteOrder(value) } });
  });
  if (whole.length > 0) {
    const answers = await writeTyped(ctx.target, ctx.settings.overwrite ? 'replace' : 'create', whole.map((w) => w.record));
    whole.forEach(({ index, record }, j) => {
      const answer = answers[j];
      outcomes[index] = answer === undefined || answer.status === 'chunked' ? { key: record.key, status: 'failed', reason: 'the target asked for chunks' } : answer;
      ctx.stats.bytesMoved += record.values.reduce((sum, v) => sum + v.length, 0);
    });
  }
  const built = await mapLimited(alone, CHUNKED_KEYS_AT_ONCE, (a) => writeAlone(ctx, a.key, a.value, a.expireAt));
  alone.forEach(({ index }, j) => (outcomes[index] = built[j] as KeyOutcome));
  return outcomes.map((outcome, i) => (outcome.status === 'restored' ? withCrossing(outcome.key, decoded[i], ctx.target) : outcome));
}

/** A key restored by type: so counted, with what the target could not hold of it (field expiries, on a target that has none). */
function withCrossing(key: Buffer, value: RdbValue | undefined, target: Connection): KeyOutcome {
  const expiries = value?.type === 'hash' && !target.capabilities.fieldExpiry ? (value.fieldExpireAt ?? []).filter((at) => at >= 0).length : 0;
  if (expiries === 0) return { key, status: 'restored', via: 'byType' };
  return { key, status: 'restored', via: 'byType', dropped: fieldExpiriesDropped(expiries, target) };
}

/** Hashes with field expiries are built too: the expiries go on before the key takes its name. */
function needsChunks(value: Exclude<RdbValue, { type: 'stream' | 'module' }>, chunkSize: number): boolean {
  if (value.type === 'hash' && value.fieldExpireAt?.some((at) => at >= 0)) return true;
  return value.type !== 'string' && value.value.length > chunkSize;
}

/** Elements as TYPE_WRITE takes them: list items, set members, score-member pairs, field-value pairs. */
function valuesInWriteOrder(value: Exclude<RdbValue, { type: 'stream' | 'module' }>): Buffer[] {
  switch (value.type) {
    case 'string':
      return [value.value];
    case 'list':
    case 'set':
      return value.value;
    case 'zset':
      return value.value.flatMap(([member, score]) => [Buffer.from(scoreText(score)), member]);
    case 'hash':
      return value.value.flat();
  }
}

/** A score as ZADD parses it back to the same double: shortest round-trip digits, or inf. */
function scoreText(score: number): string {
  if (score === Infinity) return 'inf';
  if (score === -Infinity) return '-inf';
  return String(score);
}

async function writeAlone(ctx: Omit<CopyContext, 'source'>, key: Buffer, value: Exclude<RdbValue, { type: 'module' }>, expireAt: number): Promise<KeyOutcome> {
  const size = ctx.settings.chunkSize;
  const target = ctx.target;
  // A key that is there already costs no build; the final RENAMENX still decides, atomically.
  try {
    if (!ctx.settings.overwrite && (await exists(target, key))) return { key, status: 'skipped' };
  } catch (err) {
    return failed(key, err);
  }
  if (value.type === 'stream') {
    const dangling = danglingIds(value.value);
    return buildInChunks(ctx, key, {
      kind: 'stream', expireAt, chunks: streamPages(value.value, size, dangling), stillThere: async () => true,
      finish: (building) => writeStreamState(target, building, value.value, dangling),
    });
  }
  const values = valuesInWriteOrder(value);
  const width = value.type === 'zset' || value.type === 'hash' ? 2 : 1;
  const withExpiries = value.type === 'hash' && target.capabilities.fieldExpiry ? value : undefined;
  return buildInChunks(ctx, key, {
    kind: value.type, expireAt, chunks: windows(values, size * width), stillThere: async () => true,
    finish: withExpiries ? (building) => writeFieldExpiries(target, building, withExpiries) : undefined,
  });
}

async function* windows(values: readonly Buffer[], width: number): AsyncGenerator<Buffer[]> {
  for (let i = 0; i < values.length; i += width) yield values.slice(i, i + width);
}

/** HPEXPIREAT per field, absolute as the file has it, grouped by expiry (Redis 7.4+). */
async function writeFieldExpiries(target: Connection, building: Buffer, hash: Extract<RdbValue, { type: 'hash' }>): Promise<void> {
  const byExpiry = new Map<number, Buffer[]>();
  hash.value.forEach(([field], i) => {
    const at = hash.fieldExpireAt?.[i] ?? -1;
    if (at >= 0) byExpiry.set(at, [...(byExpiry.get(at) ?? []), field]);
  });
  for (const [at, fields] of byExpiry) await target.send(['HPEXPIREAT', building, String(at), 'FIELDS', String(fields.length), ...fields]);
}

/** Pending IDs whose entries were deleted: written as placeholders so XCLAIM can take them, then removed. */
function danglingIds(stream: StreamValue): string[] {
  const present = new Set(stream.entries.map(([id]) => id));
  const ids = new Set(stream.groups.flatMap((g) => g.pending.map((p) => p.id)).filter((id) => !present.has(id)));
  return [...ids].sort(compareStreamIds);
}

/** Entries as id, field count, fields and values, `size` at a time, placeholders at their IDs; the first page even when empty. */
async function* streamPages(stream: StreamValue, size: number, dangling: readonly string[]): AsyncGenerator<Buffer[]> {
  const ids: [string, Buffer[]][] = [...stream.entries, ...dangling.map((id): [string, Buffer[]] => [id, [PLACEHOLDER, PLACEHOLDER]])];
  ids.sort(([a], [b]) => compareStreamIds(a, b));
  for (let i = 0; i === 0 || i < ids.length; i += size) {
    yield ids.slice(i, i + size).flatMap(([id, fields]) => [Buffer.from(id), Buffer.from(String(fields.length)), ...fields]);
  }
}

const CLAIMS_AT_ONCE = 100;

/** Groups, consumers and pending entries (with their delivery time and count), then XSETID, as the file has them. */
async function writeStreamState(target: Connection, building: Buffer, stream: StreamValue, dangling: readonly string[]): Promise<void> {
  const modern = (target.capabilities.version[0] ?? 0) >= 7 && stream.entriesAdded !== undefined;
  for (const group of stream.groups) {
    const create: Arg[] = ['XGROUP', 'CREATE', building, group.name, group.lastDeliveredId];
    if (modern && group.entriesRead !== undefined && group.entriesRead !== null) create.push('ENTRIESREAD', String(group.entriesRead));
    await target.send(create);
    for (const consumer of group.consumers) await target.send(['XGROUP', 'CREATECONSUMER', building, group.name, consumer.name]);
    for (let i = 0; i < group.pending.length; i += CLAIMS_AT_ONCE) {
      await Promise.all(
        group.pending.slice(i, i + CLAIMS_AT_ONCE).map((entry) => {
          const owner = entry.consumer ?? group.consumers[0]?.name ?? Buffer.from('redis-keys-migrator');
          return target.send(['XCLAIM', building, group.name, owner, '0', entry.id, 'TIME', String(entry.deliveryTime), 'RETRYCOUNT', String(entry.deliveryCount), 'FORCE', 'JUSTID']);
        }),
      );
    }
  }
  for (let i = 0; i < dangling.length; i += CLAIMS_AT_ONCE) await target.send(['XDEL', building, ...dangling.slice(i, i + CLAIMS_AT_ONCE)]);
  const setId: Arg[] = ['XSETID', building, stream.lastId];
  if (modern) setId.push('ENTRIESADDED', String(stream.entriesAdded), 'MAXDELETEDID', stream.maxDeletedEntryId ?? '0-0');
  await target.send(setId);
}
