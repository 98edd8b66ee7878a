// Copy by type: small keys read and written whole, a batch per script call; big keys and streams
// key by key in bounded chunks, with stream consumer groups and pending entries recreated.
import { randomBytes } from 'node:crypto';
import { ErrorReply } from '@redis/client';
import { keySlot, slotTag } from '../net/cluster.js';
import { type Arg, asArray, asMap, asNumber, asText, type Reply } from '../net/reply.js';
import { type Connection, isScriptingRefused } from '../net/connections.js';
import { flagsFor, MOVE_INTO_PLACE, NOT_BY_TYPE_HINT, READ_FLAGS, TYPE_READ, TYPE_WRITE, withFlags, WRITE_FLAGS } from '../net/scripts.js';
import { mapLimited } from '../concurrency.js';
import { type KeyOutcome, READ_BUDGET_BYTES, STRING_CHUNK_BYTES } from '../records.js';
import { answerOf, CHUNKED_KEYS_AT_ONCE, type CopyContext, failed, KeyProblem, recordCount, settleChunked, type WriteAnswer } from './context.js';

/** A key as read for writing: values already in write order. */
export interface TypedRecord {
  key: Buffer;
  kind: string;
  expireAt: number;
  /** A relative expiry in ms instead of expireAt (keys being built: the target's clock counts). */
  expireIn?: number;
  values: Buffer[];
}

/** What a type read returns for the first keys of a batch, in the layout TYPE_WRITE takes (lib/net/scripts.ts). */
interface TypedBatch {
  keys: readonly Buffer[];
  header: string;
  lengths: string;
  values: Buffer;
}

type WriteMode = 'create' | 'replace' | 'append';

export async function copyBatchByType(ctx: CopyContext, keys: readonly Buffer[]): Promise<KeyOutcome[]> {
  const outcomes: KeyOutcome[] = [];
  let rest = keys;
  while (rest.length > 0 && ctx.source.scriptsAllowed) {
    let batch: TypedBatch;
    try {
      batch = await readTyped(ctx.source, rest, ctx.settings.chunkSize);
    } catch (err) {
      if (!isScriptingRefused(err)) throw err;
      ctx.source.scriptsAllowed = false;
      break;
    }
    rest = rest.slice(batch.keys.length);
    const answers = await writeBatch(ctx.target, ctx.settings.overwrite ? 'replace' : 'create', batch);
    ctx.stats.bytesMoved += batch.values.length;
    outcomes.push(...(await settleChunked(answers, (key) => copyKeyInChunks(ctx, key))));
  }
  // Without scripting on the source, every key is read with plain commands, in chunks.
  return [...outcomes, ...(await mapLimited(rest, CHUNKED_KEYS_AT_ONCE, (key) => copyKeyInChunks(ctx, key)))];
}

async function readTyped(source: Connection, keys: readonly Buffer[], chunkSize: number): Promise<TypedBatch> {
  const script = withFlags(TYPE_READ, flagsFor(source, READ_FLAGS));
  const args = [String(READ_BUDGET_BYTES), String(chunkSize), source.capabilities.expireTime ? '1' : '0', String(STRING_CHUNK_BYTES), source.capabilities.fieldExpiry ? '1' : '0'];
  const [header, lengths, values] = asArray(await source.evalScript(script, keys, args));
  const text = asText(header);
  return { keys: keys.slice(0, recordCount(text)), header: text, lengths: asText(lengths), values: values as Buffer };
}

/** One TYPE_WRITE call; a refusal of the whole call fails each of its keys with the reason. */
async function writeBatch(target: Connection, mode: WriteMode, batch: TypedBatch): Promise<WriteAnswer[]> {
  if (batch.keys.length === 0) return [];
  const script = withFlags(TYPE_WRITE, flagsFor(target, WRITE_FLAGS));
  try {
    const replies = asArray(await target.evalScript(script, batch.keys, [mode, batch.header, batch.lengths, batch.values]));
    return batch.keys.map((key, i) => answerOf(key, replies[i]));
  } catch (err) {
    return batch.keys.map((key) => failed(key, err));
  }
}

/** Writes records read with plain commands (chunks of big keys), in TYPE_WRITE's layout. */
export async function writeTyped(target: Connection, mode: WriteMode, records: readonly TypedRecord[]): Promise<WriteAnswer[]> {
  const values = records.flatMap((r) => r.values);
  return writeBatch(target, mode, {
    keys: records.map((r) => r.key),
    header: records.map((r) => `${r.kind},${r.expireIn === undefined ? r.expireAt : `+${r.expireIn}`},${r.values.length};`).join(''),
    lengths: values.map((v) => v.length).join(','),
    values: Buffer.concat(values),
  });
}

/** ZRANGE WITHSCORES gives member, score; ZADD takes score, member. */
function inWriteOrder(kind: string, values: Buffer[]): Buffer[] {
  if (kind !== 'zset') return values;
  const out: Buffer[] = new Array<Buffer>(values.length);
  for (let i = 0; i < values.length; i += 2) {
    out[i] = values[i + 1] as Buffer;
    out[i + 1] = values[i] as Buffer;
  }
  return out;
}

/** How long a key being built may live if the run dies; renewed with every chunk, so only an abandoned build expires. */
const BUILD_EXPIRY_MS = 60 * 60 * 1000;
/** XSETID's refusal when the source stream's last ID went back below what the build holds. */
const STREAM_REPLACED = /XSETID is smaller than the target stream top item/;
const STREAM_COPY_ATTEMPTS = 3;

/**
 * Copies one key in bounded chunks, built under a temporary name in the key's own hash slot (see
 * buildingName) that expires by itself if the run dies. Only a complete key is moved into place, in one
 * atomic step with its final expiry: RENAMENX in skip-existing mode, RENAME when overwriting. A killed run
 * therefore leaves no partial key under the real name, and a rerun copies the key whole.
 */
export async function copyKeyInChunks(ctx: CopyContext, key: Buffer): Promise<KeyOutcome> {
  for (let attempt = 1; ; attempt++) {
    const outcome = await copyKeyOnce(ctx, key);
    // A stream replaced on the source while its pages were read (deleted and written again, renamed over):
    // its last ID went back below what was copied. The build is gone; the key is copied again from the start.
    if (outcome.status !== 'failed' || !STREAM_REPLACED.test(outcome.reason) || attempt >= STREAM_COPY_ATTEMPTS) return outcome;
  }
}

async function copyKeyOnce(ctx: CopyContext, key: Buffer): Promise<KeyOutcome> {
  const { source, target, settings } = ctx;
  try {
    const kind = asText(await source.send(['TYPE', key]));
    const expireAt = kind === 'none' ? -2 : await readExpireAt(source, key);
    if (expireAt === -2) return { key, status: 'vanished' };
    // Nothing is read for a key that is there already; the final RENAMENX still decides, atomically.
    if (!settings.overwrite && (await exists(target, key))) return { key, status: 'skipped' };
    const dangling = kind === 'stream' ? await danglingPendingIds(source, key, settings.chunkSize) : [];
    const fields = kind === 'hash' && source.capabilities.fieldExpiry ? new FieldExpiries(source, target, key) : undefined;
    const outcome = await buildInChunks(ctx, key, {
      kind,
      expireAt,
      chunks: readChunks(source, key, kind, settings.chunkSize, dangling),
      stillThere: () => exists(source, key),
      afterChunk: fields ? (building, values) => fields.copy(building, values) : undefined,
      finish: kind === 'stream' ? (building) => copyStreamState(source, target, key, building, settings.chunkSize, dangling) : undefined,
    });
    if (outcome.status === 'failed' && (await goneMeanwhile(source, key, outcome.reason))) return { key, status: 'vanished' };
    return fields && outcome.status === 'restored' ? fields.noted(outcome) : outcome;
  } catch (err) {
    const outcome = failed(key, err);
    return outcome.status === 'failed' && (await goneMeanwhile(source, key, outcome.reason)) ? { key, status: 'vanished' } : outcome;
  }
}

/** A source read that found no key (XINFO on a stream deleted or renamed away mid-copy): the key vanished. */
async function goneMeanwhile(source: Connection, key: Buffer, reason: string): Promise<boolean> {
  return /no such key/i.test(reason) && !(await exists(source, key));
}

/**
 * A hash's field expiries (Redis 7.4+), copied chunk by chunk onto the build as absolute times; on a target
 * that has none, counted, so the key's outcome can say what it lost.
 */
class FieldExpiries {
  private dropped = 0;

  constructor(private readonly source: Connection, private readonly target: Connection, private readonly key: Buffer) {}

  /** `values`: a chunk of field, value pairs as written. */
  async copy(building: Buffer, values: readonly Buffer[]): Promise<void> {
    const fields = values.filter((_, i) => i % 2 === 0);
    if (fields.length === 0) return;
    const times = asArray(await this.source.send(['HPEXPIRETIME', this.key, 'FIELDS', String(fields.length), ...fields])).map(asNumber);
    const byTime = new Map<number, Buffer[]>();
    times.forEach((at, i) => at >= 0 && byTime.set(at, [...(byTime.get(at) ?? []), fields[i] as Buffer]));
    if (!this.target.capabilities.fieldExpiry) {
      for (const group of byTime.values()) this.dropped += group.length;
      return;
    }
    await Promise.all([...byTime].map(([at, group]) => this.target.send(['HPEXPIREAT', building, String(at), 'FIELDS', String(group.length), ...group])));
  }

  noted(outcome: KeyOutcome): KeyOutcome {
    return this.dropped === 0 || outcome.status === 'failed' ? outcome : { ...outcome, dropped: fieldExpiriesDropped(this.dropped, this.target) };
  }
}

/** What a hash lost on a target with no field expiries, for the log. */
export function fieldExpiriesDropped(count: number, target: Connection): string {
  return `${count} hash-field ${count === 1 ? 'expiry' : 'expiries'} (${target.label} has no field expiries: Redis 7.4 or later has)`;
}

/** A key's content for a chunked build: read from a source server, or decoded from a file (decoded.ts). */
interface ChunkedContent {
  kind: string;
  expireAt: number;
  /** The values in write order, a bounded chunk at a time; a stream's first chunk may be empty. */
  chunks: AsyncIterable<Buffer[]>;
  /** Whether the key is still at its source once every chunk is written (a key deleted meanwhile is not created). */
  stillThere: () => Promise<boolean>;
  /** What a chunk cannot carry (its hash fields' expiries), applied to the build once the chunk is written. */
  afterChunk?: (building: Buffer, values: Buffer[]) => Promise<void>;
  /** What the chunks cannot carry (a stream's groups, hash-field expiries), applied to the build before it moves. */
  finish?: (building: Buffer) => Promise<void>;
}

/**
 * Builds one key from its chunks under a temporary name in the key's own hash slot (see buildingName) that
 * expires by itself if the run dies. Only a complete key is moved into place, in one atomic step with its
 * final expiry: RENAMENX in skip-existing mode, RENAME when overwriting. A killed run therefore leaves no
 * partial key under the real name, and a rerun copies the key whole.
 */
export async function buildInChunks(ctx: Omit<CopyContext, 'source'>, key: Buffer, content: ChunkedContent): Promise<KeyOutcome> {
  const { target, settings } = ctx;
  // A name of its own for each attempt: two copies of one key (a retry, a key SCAN returned twice) never mix.
  const building = buildingName(key, randomBytes(4).toString('hex'));
  let written = false;
  try {
    let mode: WriteMode = 'create';
    for await (const values of content.chunks) {
      const [answer] = await writeTyped(target, mode, [{ key: building, kind: content.kind, expireAt: -1, expireIn: BUILD_EXPIRY_MS, values }]);
      written = true;
      ctx.stats.bytesMoved += values.reduce((sum, v) => sum + v.length, 0);
      if (answer?.status !== 'restored') return await dropBuilding(ctx, building, { ...chunkOutcome(answer), key });
      await content.afterChunk?.(building, values);
      mode = 'append';
    }
    if (!written || !(await content.stillThere())) return await dropBuilding(ctx, building, { key, status: 'vanished' });
    await content.finish?.(building);
    const placed = await moveIntoPlace(target, building, key, content.expireAt, settings.overwrite);
    // Refused (the cluster down, the slot moved): the key is tried again under a new build name.
    return placed.status === 'failed' ? await dropBuilding(ctx, building, placed) : placed;
  } catch (err) {
    // Even with no chunk confirmed: a chunk whose reply was lost may have been written. Where the connection
    // is gone, the build is removed once the run has reconnected (else it expires).
    await dropBuilding(ctx, building, { key, status: 'vanished' }).catch(() => ctx.abandoned?.push({ target, key: building }));
    return failed(key, err);
  }
}

/** Temporary keys: `redis-keys-migrator:tmp:{<tag>}:<attempt>:<key>`. */
export const BUILDING_PREFIX = 'redis-keys-migrator:tmp:';

/**
 * The temporary name a big key is built under: the prefix, a short hash tag chosen to fall in the key's own
 * slot (so RENAME works in a cluster, even for keys whose own braces are not a hash tag), the attempt, the key.
 */
export function buildingName(key: Buffer, attempt: string): Buffer {
  return Buffer.concat([Buffer.from(`${BUILDING_PREFIX}{${slotTag(keySlot(key))}}:${attempt}:`), key]);
}

/**
 * A build given up (a failed chunk, a source key gone): removed here. A DEL refused too (the cluster down) is
 * left to the run, which removes such builds again at the end of the copy; a lost connection throws.
 */
async function dropBuilding(ctx: Omit<CopyContext, 'source'>, building: Buffer, outcome: KeyOutcome): Promise<KeyOutcome> {
  try {
    await ctx.target.send(['DEL', building]);
  } catch (err) {
    if (!(err instanceof ErrorReply)) throw err;
    ctx.abandoned?.push({ target: ctx.target, key: building });
  }
  return outcome;
}

/** A chunk write answers like a whole key; it never asks for chunking itself. */
function chunkOutcome(answer: WriteAnswer | undefined): KeyOutcome {
  if (answer === undefined || answer.status === 'chunked') throw new KeyProblem('the target gave no answer for a chunk');
  return answer;
}

export async function exists(connection: Connection, key: Buffer): Promise<boolean> {
  return asNumber(await connection.send(['EXISTS', key])) === 1;
}

/** The finished build takes the key's name and final expiry in one script call (lib/net/scripts.ts MOVE_INTO_PLACE). */
async function moveIntoPlace(target: Connection, building: Buffer, key: Buffer, expireAt: number, overwrite: boolean): Promise<KeyOutcome> {
  const script = withFlags(MOVE_INTO_PLACE, flagsFor(target, WRITE_FLAGS));
  const answer = answerOf(key, await target.evalScript(script, [building, key], [overwrite ? '1' : '0', String(expireAt)]));
  return chunkOutcome(answer);
}

export async function readExpireAt(source: Connection, key: Buffer): Promise<number> {
  if (source.capabilities.expireTime) return asNumber(await source.send(['PEXPIRETIME', key]));
  const ttl = asNumber(await source.send(['PTTL', key]));
  return ttl >= 0 ? Date.now() + ttl : ttl;
}

/** Yields the key's content in write order, at most `size` elements (or one string window) at a time. */
async function* readChunks(source: Connection, key: Buffer, kind: string, size: number, dangling: readonly string[]): AsyncGenerator<Buffer[]> {
  switch (kind) {
    case 'string':
      for (let offset = 0; ; offset += STRING_CHUNK_BYTES) {
        const part = (await source.send(['GETRANGE', key, String(offset), String(offset + STRING_CHUNK_BYTES - 1)])) as Buffer;
        if (part.length > 0) yield [part];
        if (part.length < STRING_CHUNK_BYTES) return;
      }
    case 'list':
    case 'zset':
      for (let start = 0; ; start += size) {
        const range = ['LRANGE', key, String(start), String(start + size - 1)];
        const values = asArray(await source.send(kind === 'list' ? range : ['ZRANGE', ...range.slice(1), 'WITHSCORES'])) as Buffer[];
        if (values.length > 0) yield inWriteOrder(kind, values);
        if (values.length < (kind === 'list' ? size : 2 * size)) return;
      }
    case 'set':
    case 'hash':
      yield* scanChunks(source, key, kind === 'set' ? 'SSCAN' : 'HSCAN', size);
      return;
    case 'stream':
      yield* streamChunks(source, key, size, dangling);
      return;
    default:
      throw new KeyProblem(`cannot copy type ${kind} by type (${NOT_BY_TYPE_HINT})`);
  }
}

/** HSCAN/SSCAN may return more than COUNT at once, so writes are cut to `size` elements again. */
async function* scanChunks(source: Connection, key: Buffer, command: 'SSCAN' | 'HSCAN', size: number): AsyncGenerator<Buffer[]> {
  const width = command === 'HSCAN' ? 2 * size : size;
  let cursor = '0';
  do {
    const [next, items] = asArray(await source.send([command, key, cursor, 'COUNT', String(size)]));
    cursor = asText(next);
    const values = asArray(items as Reply) as Buffer[];
    for (let i = 0; i < values.length; i += width) yield values.slice(i, i + width);
  } while (cursor !== '0');
}

/**
 * Entries as id, field count, fields and values, a page of `size` entries at a time. The first page is
 * yielded even when empty: a stream with no entries (but perhaps groups) must still be created.
 * Placeholder entries go in at `dangling` IDs, in order, so their pending entries can be claimed.
 */
async function* streamChunks(source: Connection, key: Buffer, size: number, dangling: readonly string[]): AsyncGenerator<Buffer[]> {
  let start = '-';
  let next = 0;
  const placeholdersBefore = (id: string | undefined, flat: Buffer[]): void => {
    while (next < dangling.length && (id === undefined || compareStreamIds(dangling[next] as string, id) < 0)) {
      flat.push(Buffer.from(dangling[next++] as string), Buffer.from('2'), PLACEHOLDER, PLACEHOLDER);
    }
  };
  for (let page = 0; ; page++) {
    const entries = asArray(await source.send(['XRANGE', key, start, '+', 'COUNT', String(size)]));
    const flat: Buffer[] = [];
    for (const entry of entries) {
      const [id, fields] = asArray(entry) as [Buffer, Reply];
      placeholdersBefore(id.toString(), flat);
      const fieldValues = asArray(fields) as Buffer[];
      flat.push(id, Buffer.from(String(fieldValues.length)), ...fieldValues);
      start = `(${id.toString()}`;
    }
    const last = entries.length < size;
    if (last) placeholdersBefore(undefined, flat);
    if (flat.length > 0 || page === 0) yield flat;
    if (last) return;
  }
}

export const PLACEHOLDER = Buffer.from('redis-keys-migrator-placeholder');

/** Orders stream IDs ("ms-seq") numerically. */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : as < bs ? -1 : 1;
}

/**
 * Pending IDs whose entries were deleted or trimmed away. XCLAIM ... FORCE ignores IDs that are not in the
 * stream, so these get placeholder entries while copying, are claimed, then deleted again.
 */
async function danglingPendingIds(source: Connection, key: Buffer, size: number): Promise<string[]> {
  const dangling = new Set<string>();
  for (const group of asArray(await source.send(['XINFO', 'GROUPS', key]))) {
    const name = asMap(group).get('name') as Buffer;
    await forEachPendingPage(source, key, name, size, async (page) => {
      const ids = page.map((item) => asText(asArray(item)[0]));
      const found = await Promise.all(ids.map((id) => source.send(['XRANGE', key, id, id])));
      ids.forEach((id, i) => asArray(found[i] as Reply).length === 0 && dangling.add(id));
    });
  }
  return [...dangling].sort(compareStreamIds);
}

async function forEachPendingPage(source: Connection, key: Buffer, group: Buffer, size: number, visit: (page: Reply[]) => Promise<void>): Promise<void> {
  let start = '-';
  for (;;) {
    const page = asArray(await source.send(['XPENDING', key, group, start, '+', String(size)]));
    if (page.length > 0) await visit(page);
    if (page.length < size) return;
    start = `(${asText(asArray(page[page.length - 1] as Reply)[0])}`;
  }
}

/**
 * Each group with its consumers and pending entries (delivery count and idle time); then the placeholders
 * go, and XSETID sets the last ID and counters as the source has them.
 */
async function copyStreamState(source: Connection, target: Connection, key: Buffer, building: Buffer, size: number, dangling: readonly string[]): Promise<void> {
  const info = asMap(await source.send(['XINFO', 'STREAM', key]));
  const modern = (target.capabilities.version[0] ?? 0) >= 7 && info.has('entries-added');
  for (const groupReply of asArray(await source.send(['XINFO', 'GROUPS', key]))) {
    const group = asMap(groupReply);
    const name = group.get('name') as Buffer;
    const create: Arg[] = ['XGROUP', 'CREATE', building, name, asText(group.get('last-delivered-id'))];
    const entriesRead = group.get('entries-read');
    if (modern && entriesRead !== null && entriesRead !== undefined) create.push('ENTRIESREAD', asText(entriesRead));
    await target.send(create);
    for (const consumerReply of asArray(await source.send(['XINFO', 'CONSUMERS', key, name]))) {
      await target.send(['XGROUP', 'CREATECONSUMER', building, name, asMap(consumerReply).get('name') as Buffer]);
    }
    await forEachPendingPage(source, key, name, size, async (page) => {
      await Promise.all(
        page.map((item) => {
          const [id, consumer, idle, deliveries] = asArray(item);
          return target.send(['XCLAIM', building, name, consumer as Buffer, '0', id as Buffer, 'IDLE', asText(idle), 'RETRYCOUNT', asText(deliveries), 'FORCE', 'JUSTID']);
        }),
      );
    });
  }
  for (let i = 0; i < dangling.length; i += size) await target.send(['XDEL', building, ...dangling.slice(i, i + size)]);
  const setId: Arg[] = ['XSETID', building, asText(info.get('last-generated-id'))];
  if (modern) setId.push('ENTRIESADDED', asText(info.get('entries-added')), 'MAXDELETEDID', asText(info.get('max-deleted-entry-id')));
  await target.send(setId);
}
