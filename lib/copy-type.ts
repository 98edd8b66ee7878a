// Copy by type: small keys read and written whole, a batch per script call; big keys and streams
// key by key in bounded chunks, with stream consumer groups and pending entries recreated.
import type { Arg, Connection, Reply } from './connections.js';
import {
  asArray, asNumber, asText, CHUNKED_KEYS_AT_ONCE, failed, flagsFor, isolateFailures, isScriptingRefused, KeyProblem, mapLimited,
  READ_BUDGET_BYTES, STRING_CHUNK_BYTES, type CopyContext, type KeyOutcome,
} from './batch.js';
import { READ_FLAGS, TYPE_READ, TYPE_WRITE, WRITE_FLAGS, withFlags } from './scripts.js';

/** A key as read for writing: values already in write order; null values mean "copy in chunks". */
export interface TypedRecord {
  key: Buffer;
  kind: string;
  expireAt: number;
  values: Buffer[] | null;
}

type WriteMode = 'create' | 'replace' | 'append';

export async function copyBatchByType(ctx: CopyContext, keys: readonly Buffer[]): Promise<KeyOutcome[]> {
  if (!ctx.sourceScripts) return mapLimited(keys, CHUNKED_KEYS_AT_ONCE, (key) => copyKeyInChunks(ctx, key));
  const outcomes: KeyOutcome[] = [];
  let rest = keys;
  while (rest.length > 0) {
    let read: (TypedRecord | { error: unknown })[];
    try {
      read = await isolateFailures(rest, (some) => readTyped(ctx.source, some, ctx.settings.chunkSize));
    } catch (err) {
      if (!isScriptingRefused(err)) throw err;
      ctx.sourceScripts = false;
      return [...outcomes, ...(await copyBatchByType(ctx, rest))];
    }
    outcomes.push(...(await writeRecords(ctx, rest.slice(0, read.length), read)));
    rest = rest.slice(read.length);
  }
  return outcomes;
}

/** Writes what one read call returned: whole keys in one script call, the others in chunks. */
async function writeRecords(
  ctx: CopyContext,
  keys: readonly Buffer[],
  read: readonly (TypedRecord | { error: unknown })[],
): Promise<KeyOutcome[]> {
  const outcomes: KeyOutcome[] = new Array<KeyOutcome>(read.length);
  const whole: TypedRecord[] = [];
  const wholeAt: number[] = [];
  const chunked: number[] = [];
  read.forEach((record, i) => {
    const key = keys[i] as Buffer;
    if ('error' in record) outcomes[i] = failed(key, record.error);
    else if (record.kind === 'none') outcomes[i] = { key, status: 'vanished' };
    else if (record.values === null) chunked.push(i);
    else {
      whole.push(record);
      wholeAt.push(i);
    }
  });
  const mode: WriteMode = ctx.settings.overwrite ? 'replace' : 'create';
  const written = await writeTyped(ctx.target, mode, whole);
  written.forEach((outcome, j) => (outcomes[wholeAt[j] as number] = outcome));
  const big = await mapLimited(chunked, CHUNKED_KEYS_AT_ONCE, (i) => {
    const record = read[i] as TypedRecord;
    return copyKeyInChunks(ctx, record.key, record);
  });
  big.forEach((outcome, j) => (outcomes[chunked[j] as number] = outcome));
  return outcomes;
}

export async function readTyped(source: Connection, keys: readonly Buffer[], chunkSize: number): Promise<TypedRecord[]> {
  const script = withFlags(TYPE_READ, flagsFor(source, READ_FLAGS));
  const args = [String(READ_BUDGET_BYTES), String(chunkSize), source.capabilities.expireTime ? '1' : '0', String(STRING_CHUNK_BYTES)];
  const flat = asArray(await source.evalScript(script, keys, args));
  const records: TypedRecord[] = [];
  for (let p = 0, i = 0; p < flat.length; i++) {
    const kind = asText(flat[p]);
    const expireAt = asNumber(flat[p + 1]);
    const count = asNumber(flat[p + 2]);
    p += 3;
    const values = count < 0 ? null : inWriteOrder(kind, flat.slice(p, p + count) as Buffer[]);
    p += Math.max(count, 0);
    records.push({ key: keys[i] as Buffer, kind, expireAt, values });
  }
  return records;
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

/** Writes records with the type-write script; one forbidden key fails alone, not its whole batch. */
export async function writeTyped(target: Connection, mode: WriteMode, records: readonly TypedRecord[]): Promise<KeyOutcome[]> {
  if (records.length === 0) return [];
  const script = withFlags(TYPE_WRITE, flagsFor(target, WRITE_FLAGS));
  const byKey = new Map(records.map((r) => [r.key, r]));
  const results = await isolateFailures(
    records.map((r) => r.key),
    async (keys) => {
      const chosen = keys.map((k) => byKey.get(k) as TypedRecord);
      const args: Arg[] = [mode];
      for (const r of chosen) args.push(r.kind, String(r.expireAt), String((r.values as Buffer[]).length), ...(r.values as Buffer[]));
      return asArray(await target.evalScript(script, keys, args));
    },
  ).catch((err: unknown) => records.map(() => ({ error: err })));
  return results.map((result, i) => outcomeOfWrite((records[i] as TypedRecord).key, result));
}

function outcomeOfWrite(key: Buffer, result: Reply | { error: unknown }): KeyOutcome {
  if (result !== null && typeof result === 'object' && 'error' in result) return failed(key, result.error);
  if (result === 1) return { key, status: 'restored' };
  if (result === 0) return { key, status: 'skipped' };
  if (result === 2) return { key, status: 'vanished' };
  return { key, status: 'failed', reason: asText(result) };
}

/**
 * Copies one key in bounded chunks. The first chunk decides: skipped when the key exists (create mode),
 * so nothing more is read. A failure after the first chunk removes the partial key.
 */
export async function copyKeyInChunks(ctx: CopyContext, key: Buffer, known?: Omit<TypedRecord, 'values'>): Promise<KeyOutcome> {
  const { source, target, settings } = ctx;
  let written = false;
  try {
    const kind = known?.kind ?? asText(await source.send(['TYPE', key]));
    if (kind === 'none') return { key, status: 'vanished' };
    const expireAt = known?.expireAt ?? (await readExpireAt(source, key));
    let mode: WriteMode = settings.overwrite ? 'replace' : 'create';
    for await (const values of readChunks(source, key, kind, settings.chunkSize)) {
      const [outcome] = await writeTyped(target, mode, [{ key, kind, expireAt: -1, values }]);
      if (outcome?.status !== 'restored') return outcome as KeyOutcome;
      written = true;
      mode = 'append';
    }
    if (!written && kind !== 'stream') return { key, status: 'vanished' };
    if (kind === 'stream') {
      if (!written) {
        const [outcome] = await writeTyped(target, mode, [{ key, kind, expireAt: -1, values: [] }]);
        if (outcome?.status !== 'restored') return outcome as KeyOutcome;
        written = true;
      }
      await copyStreamState(source, target, key, settings.chunkSize);
    }
    return await applyExpiry(target, key, expireAt);
  } catch (err) {
    if (written && !settings.overwrite) await target.send(['DEL', key]).catch(() => undefined);
    return failed(key, err);
  }
}

export async function readExpireAt(source: Connection, key: Buffer): Promise<number> {
  if (source.capabilities.expireTime) return asNumber(await source.send(['PEXPIRETIME', key]));
  const ttl = asNumber(await source.send(['PTTL', key]));
  return ttl >= 0 ? Date.now() + ttl : ttl;
}

async function applyExpiry(target: Connection, key: Buffer, expireAt: number): Promise<KeyOutcome> {
  if (expireAt <= 0) return { key, status: 'restored' };
  await target.send(['PEXPIREAT', key, String(expireAt)]);
  const exists = asNumber(await target.send(['EXISTS', key]));
  return { key, status: exists === 1 ? 'restored' : 'vanished' };
}

/** Yields the key's content in write order, at most `size` elements (or one string window) at a time. */
async function* readChunks(source: Connection, key: Buffer, kind: string, size: number): AsyncGenerator<Buffer[]> {
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
      yield* streamChunks(source, key, size);
      return;
    default:
      throw new KeyProblem(`cannot copy type ${kind} by type`);
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

/** Entries as id, field count, fields and values, a page of `size` entries at a time. */
async function* streamChunks(source: Connection, key: Buffer, size: number): AsyncGenerator<Buffer[]> {
  let start = '-';
  for (;;) {
    const entries = asArray(await source.send(['XRANGE', key, start, '+', 'COUNT', String(size)]));
    const flat: Buffer[] = [];
    for (const entry of entries) {
      const [id, fields] = asArray(entry) as [Buffer, Reply];
      const fieldValues = asArray(fields) as Buffer[];
      flat.push(id, Buffer.from(String(fieldValues.length)), ...fieldValues);
      start = `(${id.toString()}`;
    }
    if (flat.length > 0) yield flat;
    if (entries.length < size) return;
  }
}

function toMap(reply: Reply): Map<string, Reply> {
  const items = asArray(reply);
  const map = new Map<string, Reply>();
  for (let i = 0; i + 1 < items.length; i += 2) map.set(asText(items[i]), items[i + 1] as Reply);
  return map;
}

/** Last ID and counters, then each group with its consumers and pending entries (delivery count and idle time). */
async function copyStreamState(source: Connection, target: Connection, key: Buffer, size: number): Promise<void> {
  const info = toMap(await source.send(['XINFO', 'STREAM', key]));
  const modern = target.capabilities.version[0]! >= 7 && info.has('entries-added');
  const setId: Arg[] = ['XSETID', key, asText(info.get('last-generated-id'))];
  if (modern) setId.push('ENTRIESADDED', asText(info.get('entries-added')), 'MAXDELETEDID', asText(info.get('max-deleted-entry-id')));
  await target.send(setId);
  for (const groupReply of asArray(await source.send(['XINFO', 'GROUPS', key]))) {
    const group = toMap(groupReply);
    const name = group.get('name') as Buffer;
    const create: Arg[] = ['XGROUP', 'CREATE', key, name, asText(group.get('last-delivered-id'))];
    const entriesRead = group.get('entries-read');
    if (modern && entriesRead !== null && entriesRead !== undefined) create.push('ENTRIESREAD', asText(entriesRead));
    await target.send(create);
    for (const consumerReply of asArray(await source.send(['XINFO', 'CONSUMERS', key, name]))) {
      await target.send(['XGROUP', 'CREATECONSUMER', key, name, toMap(consumerReply).get('name') as Buffer]);
    }
    await copyPending(source, target, key, name, size);
  }
}

async function copyPending(source: Connection, target: Connection, key: Buffer, group: Buffer, size: number): Promise<void> {
  let start = '-';
  for (;;) {
    const page = asArray(await source.send(['XPENDING', key, group, start, '+', String(size)]));
    await Promise.all(
      page.map((item) => {
        const [id, consumer, idle, deliveries] = asArray(item);
        return target.send(['XCLAIM', key, group, consumer as Buffer, '0', id as Buffer, 'IDLE', asText(idle), 'RETRYCOUNT', asText(deliveries), 'FORCE', 'JUSTID']);
      }),
    );
    if (page.length < size) return;
    start = `(${asText(asArray(page[page.length - 1] as Reply)[0])}`;
  }
}
