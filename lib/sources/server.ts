// What a copy reads from a source server, and nothing it writes: a batch's DUMP payloads or its values by type
// (one script call each, packed as the write scripts take them), and a big key's content in bounded chunks with
// what chunks cannot carry (a hash's field expiries, a stream's groups and pending entries) as data.
import { ErrorReply } from '@redis/client';
import { describeError, exists, isScriptingRefused, type Connection } from '../net/connections.js';
import { asArray, asMap, asNumber, asText, type Reply } from '../net/reply.js';
import { DUMP_READ, flagsFor, NOT_BY_TYPE_HINT, READ_FLAGS, TYPE_READ, withFlags } from '../net/scripts.js';
import { mapLimited } from '../concurrency.js';
import { compareStreamIds, KeyProblem, PLACEHOLDER, READ_BUDGET_BYTES, STRING_CHUNK_BYTES, type ChunkedKey, type ChunkReader, type DumpBatch, type DumpRead, type GroupState, type NodeReads, type PendingClaim, type StreamState, type TypedBatch, type TypedRead } from '../records.js';

/** One source node's reads, with the run's limits: keys' DUMP payloads or values by type, a big key in chunks. */
export class ServerReader implements ChunkReader, NodeReads {
  constructor(readonly node: Connection, private readonly limits: { dumpMaxBytes: number; chunkSize: number }) {}

  /** DUMP payloads of `keys`, a read budget at a time. */
  async *dumps(keys: readonly Buffer[]): AsyncGenerator<DumpRead> {
    for (let rest = keys; rest.length > 0; ) {
      const batch = await this.readDumps(rest);
      rest = rest.slice(batch.keys.length);
      yield { from: this, batch };
    }
  }

  /** Values by type of `keys`, a read budget at a time; all the rest to read in chunks where the node refuses scripts. */
  async *typed(keys: readonly Buffer[]): AsyncGenerator<TypedRead> {
    for (let rest = keys; rest.length > 0; ) {
      const batch = await this.readTyped(rest);
      if (!batch) {
        yield { from: this, chunked: [...rest] };
        return;
      }
      rest = rest.slice(batch.keys.length);
      yield { from: this, batch };
    }
  }

  /** DUMP payloads of the first keys, up to the read budget; by plain commands (100 keys) where scripts are refused. */
  private async readDumps(keys: readonly Buffer[]): Promise<DumpBatch> {
    const rdbVersion = this.node.capabilities.rdbVersion;
    if (this.node.scriptsAllowed) {
      try {
        return { ...(await this.dumpsByScript(keys)), rdbVersion };
      } catch (err) {
        if (!isScriptingRefused(err)) throw err;
        this.node.scriptsAllowed = false;
      }
    }
    return { ...(await this.dumpsPlain(keys.slice(0, 100))), rdbVersion };
  }

  private async dumpsByScript(keys: readonly Buffer[]): Promise<DumpBatch> {
    const source = this.node;
    const script = withFlags(DUMP_READ, flagsFor(source, READ_FLAGS));
    const args = [String(READ_BUDGET_BYTES), String(this.limits.dumpMaxBytes), source.capabilities.expireTime ? '1' : '0'];
    const [header, payloads] = asArray(await source.evalScript(script, keys, args));
    const text = asText(header);
    return { keys: keys.slice(0, recordCount(text)), header: text, payloads: payloads as Buffer };
  }

  /** The same read with plain commands, for servers that refuse EVAL; same layout. */
  private async dumpsPlain(keys: readonly Buffer[]): Promise<DumpBatch> {
    const source = this.node;
    const records = await mapLimited(keys, keys.length, async (key): Promise<[number, Buffer]> => {
      try {
        const expireAt = await readExpireAt(source, key);
        if (expireAt === -2) return [-2, Buffer.alloc(0)];
        if (asNumber(await source.send(['MEMORY', 'USAGE', key])) > this.limits.dumpMaxBytes) return [expireAt, Buffer.alloc(0)];
        const payload = (await source.send(['DUMP', key])) as Buffer | null;
        return payload === null ? [-2, Buffer.alloc(0)] : [expireAt, payload];
      } catch (err) {
        return [-3, Buffer.from(keyFailure(err))];
      }
    });
    return {
      keys: [...keys],
      header: records.map(([at, payload]) => `${at},${payload.length};`).join(''),
      payloads: Buffer.concat(records.map(([, payload]) => payload)),
    };
  }

  /** Values by type of the first keys, up to the read budget; undefined where the source refuses scripts. */
  private async readTyped(keys: readonly Buffer[]): Promise<TypedBatch | undefined> {
    const source = this.node;
    if (!source.scriptsAllowed) return undefined;
    const script = withFlags(TYPE_READ, flagsFor(source, READ_FLAGS));
    const args = [String(READ_BUDGET_BYTES), String(this.limits.chunkSize), source.capabilities.expireTime ? '1' : '0', String(STRING_CHUNK_BYTES), source.capabilities.fieldExpiry ? '1' : '0'];
    let reply: Reply;
    try {
      reply = await source.evalScript(script, keys, args);
    } catch (err) {
      if (!isScriptingRefused(err)) throw err;
      source.scriptsAllowed = false;
      return undefined;
    }
    const [header, lengths, values] = asArray(reply);
    const text = asText(header);
    return { keys: keys.slice(0, recordCount(text)), header: text, lengths: asText(lengths), values: values as Buffer };
  }

  async open(key: Buffer): Promise<ChunkedKey | undefined> {
    const source = this.node;
    const kind = asText(await source.send(['TYPE', key]));
    const expireAt = kind === 'none' ? -2 : await readExpireAt(source, key);
    if (expireAt === -2) return undefined;
    const size = this.limits.chunkSize;
    return {
      kind,
      expireAt,
      content: async () => {
        const dangling = kind === 'stream' ? await danglingPendingIds(source, key, size) : [];
        return {
          kind,
          expireAt,
          chunks: readChunks(source, key, kind, size, dangling),
          stillThere: () => exists(source, key),
          fieldExpiries: kind === 'hash' && source.capabilities.fieldExpiry ? (fields) => fieldExpiries(source, key, fields) : undefined,
          streamState: kind === 'stream' ? () => streamState(source, key, size, dangling) : undefined,
        };
      },
    };
  }

  /** A source read that found no key (XINFO on a stream deleted or renamed away mid-copy): the key vanished. */
  async goneMeanwhile(key: Buffer, reason: string): Promise<boolean> {
    return /no such key/i.test(reason) && !(await exists(this.node, key));
  }
}

/** A key's own error (the server's answer), as its failure reason; anything else (a lost socket, a bug) is rethrown. */
function keyFailure(err: unknown): string {
  if (!(err instanceof ErrorReply)) throw err;
  return describeError(err);
}

/** How many records a batch header holds: one ';' ends each. */
export function recordCount(header: string): number {
  let n = 0;
  for (let i = header.indexOf(';'); i >= 0; i = header.indexOf(';', i + 1)) n++;
  return n;
}

async function readExpireAt(source: Connection, key: Buffer): Promise<number> {
  if (source.capabilities.expireTime) return asNumber(await source.send(['PEXPIRETIME', key]));
  const ttl = asNumber(await source.send(['PTTL', key]));
  return ttl >= 0 ? Date.now() + ttl : ttl;
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

/**
 * Pending IDs whose entries were deleted or trimmed away. XCLAIM ... FORCE ignores IDs that are not in the
 * stream, so these get placeholder entries while copying, are claimed, then deleted again.
 */
async function danglingPendingIds(source: Connection, key: Buffer, size: number): Promise<string[]> {
  const dangling = new Set<string>();
  for (const group of asArray(await source.send(['XINFO', 'GROUPS', key]))) {
    const name = asMap(group).get('name') as Buffer;
    for await (const page of pendingPages(source, key, name, size)) {
      const ids = page.map((item) => asText(asArray(item)[0]));
      const found = await Promise.all(ids.map((id) => source.send(['XRANGE', key, id, id])));
      ids.forEach((id, i) => asArray(found[i] as Reply).length === 0 && dangling.add(id));
    }
  }
  return [...dangling].sort(compareStreamIds);
}

/** XPENDING's extended form, a page of `size` entries at a time. */
async function* pendingPages(source: Connection, key: Buffer, group: Buffer, size: number): AsyncGenerator<Reply[]> {
  let start = '-';
  for (;;) {
    const page = asArray(await source.send(['XPENDING', key, group, start, '+', String(size)]));
    if (page.length > 0) yield page;
    if (page.length < size) return;
    start = `(${asText(asArray(page[page.length - 1] as Reply)[0])}`;
  }
}

/** A stream's groups, consumers and pending entries (with idle time and delivery count), and its last ID. */
async function streamState(source: Connection, key: Buffer, size: number, dangling: readonly string[]): Promise<StreamState> {
  const info = asMap(await source.send(['XINFO', 'STREAM', key]));
  const groups: GroupState[] = [];
  for (const groupReply of asArray(await source.send(['XINFO', 'GROUPS', key]))) {
    const group = asMap(groupReply);
    const name = group.get('name') as Buffer;
    const consumers = asArray(await source.send(['XINFO', 'CONSUMERS', key, name])).map((c) => asMap(c).get('name') as Buffer);
    const entriesRead = group.get('entries-read');
    groups.push({
      name,
      lastDeliveredId: asText(group.get('last-delivered-id')),
      entriesRead: entriesRead === null || entriesRead === undefined ? entriesRead : asText(entriesRead),
      consumers,
      pending: claims(pendingPages(source, key, name, size)),
    });
  }
  return {
    lastId: asText(info.get('last-generated-id')),
    entriesAdded: info.has('entries-added') ? asText(info.get('entries-added')) : undefined,
    maxDeletedId: info.has('max-deleted-entry-id') ? asText(info.get('max-deleted-entry-id')) : undefined,
    groups,
    dangling,
  };
}

async function* claims(pages: AsyncIterable<Reply[]>): AsyncGenerator<PendingClaim[]> {
  for await (const page of pages) {
    yield page.map((item) => {
      const [id, consumer, idle, deliveries] = asArray(item);
      return { id: id as Buffer, consumer: consumer as Buffer, idleMs: asNumber(idle), deliveries: asNumber(deliveries) };
    });
  }
}

/** HPEXPIRETIME of a chunk's fields (Redis 7.4+). */
async function fieldExpiries(source: Connection, key: Buffer, fields: Buffer[]): Promise<number[]> {
  return asArray(await source.send(['HPEXPIRETIME', key, 'FIELDS', String(fields.length), ...fields])).map(asNumber);
}
