// Values the target cannot take by RESTORE (an encoding newer than it reads: a Redis 7.2 listpack set, a 7.4
// hash with field expiries, into 7.0; or a value past DUMP_MAX_BYTES): decoded and written by type, big ones in chunks.
import { decodeValue, type RdbValue, type StreamValue } from '../rdb/decode.js';
import { RdbFormatError } from '../rdb/errors.js';
import { buildInChunks, fieldExpiriesDropped, writeTyped, type TypedRecord } from './by-type.js';
import { exists, type Connection } from '../net/connections.js';
import { concatAll, mapLimited } from '../concurrency.js';
import { compareStreamIds, KeyProblem, PLACEHOLDER, STRING_CHUNK_BYTES, type KeyOutcome, type PendingClaim, type StoredValue, type StreamState } from '../records.js';
import { CHUNKED_KEYS_AT_ONCE, failed, type WriteContext } from './context.js';

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
export async function writeDecoded(ctx: WriteContext, items: readonly DecodedWrite[]): Promise<KeyOutcome[]> {
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
      value = decodeValue(stored.value, stored.rdbVersion);
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

/**
 * A key restored by type: so counted, with what the target could not hold of it: field expiries, on a target that
 * has none; a stream's IDMP history (Redis 8.6+), which no command writes and so only a RESTORE carries.
 */
function withCrossing(key: Buffer, value: RdbValue | undefined, target: Connection): KeyOutcome {
  const dropped = droppedOf(value, target);
  return dropped === undefined ? { key, status: 'restored', via: 'byType' } : { key, status: 'restored', via: 'byType', dropped };
}

function droppedOf(value: RdbValue | undefined, target: Connection): string | undefined {
  if (value?.type === 'hash' && !target.capabilities.fieldExpiry) {
    const expiries = (value.fieldExpireAt ?? []).filter((at) => at >= 0).length;
    return expiries > 0 ? fieldExpiriesDropped(expiries, target) : undefined;
  }
  const producers = value?.type === 'stream' ? (value.value.idmpProducers ?? 0) : 0;
  const reads = target.capabilities.rdbVersion === undefined ? '' : ` reads RDB ${target.capabilities.rdbVersion},`;
  if (producers > 0) return `the IDMP history of ${producers} idempotent ${producers === 1 ? 'producer' : 'producers'} (XADD IDMP; ${target.label}${reads} Redis 8.6 or later holds it)`;
  return undefined;
}

/** Hashes with field expiries are built too: the expiries go on before the key takes its name. */
function needsChunks(value: Exclude<RdbValue, { type: 'stream' | 'module' }>, chunkSize: number): boolean {
  if (value.type === 'hash' && value.fieldExpireAt?.some((at) => at >= 0)) return true;
  if (value.type === 'string') return value.value.length > STRING_CHUNK_BYTES;
  return value.value.length > chunkSize;
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
      return concatAll(value.value);
  }
}

/** A score as ZADD parses it back to the same double: shortest round-trip digits, or inf. */
function scoreText(score: number): string {
  if (score === Infinity) return 'inf';
  if (score === -Infinity) return '-inf';
  return String(score);
}

async function writeAlone(ctx: WriteContext, key: Buffer, value: Exclude<RdbValue, { type: 'module' }>, expireAt: number): Promise<KeyOutcome> {
  const size = ctx.settings.chunkSize;
  // A key that is there already costs no build; the final RENAMENX still decides, atomically.
  try {
    if (!ctx.settings.overwrite && (await exists(ctx.target, key))) return { key, status: 'skipped' };
  } catch (err) {
    return failed(key, err);
  }
  const stillThere = async (): Promise<boolean> => true;
  if (value.type === 'stream') {
    const dangling = danglingIds(value.value);
    return buildInChunks(ctx, key, { kind: 'stream', expireAt, chunks: streamPages(value.value, size, dangling), stillThere, streamState: async () => streamStateOf(value.value, dangling) });
  }
  if (value.type === 'string') return buildInChunks(ctx, key, { kind: 'string', expireAt, chunks: stringWindows(value.value), stillThere });
  const values = valuesInWriteOrder(value);
  const width = value.type === 'zset' || value.type === 'hash' ? 2 : 1;
  const hash = value.type === 'hash' && value.fieldExpireAt?.some((at) => at >= 0) ? value : undefined;
  return buildInChunks(ctx, key, {
    kind: value.type, expireAt, chunks: windows(values, size * width), stillThere,
    fieldExpiries: hash && ctx.target.capabilities.fieldExpiry ? fieldExpiriesOf(hash) : undefined,
  });
}

async function* windows(values: readonly Buffer[], width: number): AsyncGenerator<Buffer[]> {
  for (let i = 0; i < values.length; i += width) yield values.slice(i, i + width);
}

/** A big string in STRING_CHUNK_BYTES pieces: SET, then APPENDs. */
async function* stringWindows(value: Buffer): AsyncGenerator<Buffer[]> {
  for (let at = 0; at < value.length; at += STRING_CHUNK_BYTES) yield [value.subarray(at, at + STRING_CHUNK_BYTES)];
}

/** A hash's field expiries as the file has them (absolute ms), looked up per chunk of fields. */
function fieldExpiriesOf(hash: Extract<RdbValue, { type: 'hash' }>): (fields: Buffer[]) => Promise<number[]> {
  const byField = new Map<string, number>();
  hash.value.forEach(([field], i) => byField.set(field.toString('latin1'), hash.fieldExpireAt?.[i] ?? -1));
  return async (fields) => fields.map((field) => byField.get(field.toString('latin1')) ?? -1);
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

/** The stream's groups, consumers and pending entries (with their delivery time and count), as the file has them. */
function streamStateOf(stream: StreamValue, dangling: readonly string[]): StreamState {
  return {
    lastId: stream.lastId,
    entriesAdded: stream.entriesAdded === undefined ? undefined : String(stream.entriesAdded),
    maxDeletedId: stream.maxDeletedEntryId,
    dangling,
    groups: stream.groups.map((group) => ({
      name: group.name,
      lastDeliveredId: group.lastDeliveredId,
      entriesRead: group.entriesRead === undefined || group.entriesRead === null ? group.entriesRead : String(group.entriesRead),
      consumers: group.consumers.map((c) => c.name),
      pending: pages(group.pending.map((entry): PendingClaim => ({
        id: entry.id,
        consumer: entry.consumer ?? group.consumers[0]?.name ?? Buffer.from('redis-keys-migrator'),
        deliveryTime: entry.deliveryTime,
        deliveries: entry.deliveryCount,
      })), CLAIMS_AT_ONCE),
    })),
  };
}

async function* pages<T>(items: readonly T[], size: number): AsyncGenerator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}
