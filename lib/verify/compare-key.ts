// Comparing one key: is each source key on the target, of the same type, with the same content and expiry?
// Identical DUMP payloads settle most keys at once; the rest are compared logically, in chunks.
import { CommandRefused, type Connection, type Reply } from '../net/connections.js';
import { asArray, asNumber, asText, flagsFor, mapLimited, READ_BUDGET_BYTES, STRING_CHUNK_BYTES } from '../batch.js';
import { displayKey } from '../error-log.js';
import { CONTENT_DIGEST, DUMP_READ, parseDumpHeader, READ_FLAGS, withFlags, type DumpRecord } from '../net/scripts.js';

export type DiffCategory = 'missing' | 'type' | 'value' | 'ttl';
export const CATEGORIES: readonly DiffCategory[] = ['missing', 'type', 'value', 'ttl'];

export interface Difference {
  key: Buffer;
  category: DiffCategory;
  detail: string;
}

export interface CompareOptions {
  ttlToleranceMs: number;
  chunkSize: number;
  dumpMaxBytes: number;
}

/** What comparing one key found: identical, gone from the source meanwhile, or a difference. */
export type KeyVerdict =
  | { key: Buffer; verdict: 'identical' }
  | { key: Buffer; verdict: 'vanished' }
  | ({ verdict: 'different' } & Difference);

const KEYS_COMPARED_AT_ONCE = 8;
/** Keys up to this DUMP size whose payloads differ are summed by CONTENT_DIGEST before any element-wise look. */
const DIGEST_MAX_PAYLOAD_BYTES = 256 * 1024;

/**
 * Compares a batch of keys. Most keys are settled at once from the two DUMP reads (identical payloads, or
 * missing); small keys whose payloads differ by layout alone are settled by a content digest of each side;
 * only the rest are compared element by element, and a key found different is compared once more.
 */
export async function compareBatch(source: Connection, target: Connection, keys: readonly Buffer[], options: CompareOptions): Promise<KeyVerdict[]> {
  const verdicts: KeyVerdict[] = [];
  let rest = keys;
  while (rest.length > 0) {
    // Both sides at once; each read may stop early at its byte budget, so take what both covered.
    const [src, tgt] = await Promise.all([snapshots(source, rest, options.dumpMaxBytes), snapshots(target, rest, options.dumpMaxBytes)]);
    const covered = rest.slice(0, Math.min(src.length, tgt.length));
    rest = rest.slice(covered.length);
    const quick = covered.map((key, i) => quickVerdict(key, src[i] as DumpRecord, tgt[i] as DumpRecord, options.ttlToleranceMs));
    await settleByDigest(source, target, covered, src, tgt, quick, options);
    const open = quick.flatMap((v, i) => (v === undefined || v.verdict === 'different' ? [i] : []));
    // A difference seen in the DUMP reads is checked again from fresh reads; one found only by the logical
    // comparison gets its second look here too, so a source that moved on is not reported as a difference.
    const settled = await mapLimited(open, KEYS_COMPARED_AT_ONCE, async (i) => {
      const again = await compareKey(source, target, covered[i] as Buffer, options);
      return quick[i] === undefined && again.verdict === 'different' ? compareKey(source, target, again.key, options) : again;
    });
    open.forEach((index, j) => (quick[index] = settled[j]));
    verdicts.push(...(quick as KeyVerdict[]));
  }
  return verdicts;
}

/**
 * Small keys left open by the DUMP reads (a hashtable set is dumped in the order of its server's own hash
 * seed, and encodings may differ): equal content digests on both sides settle them.
 */
async function settleByDigest(
  source: Connection, target: Connection, keys: readonly Buffer[], src: readonly DumpRecord[], tgt: readonly DumpRecord[],
  verdicts: (KeyVerdict | undefined)[], options: CompareOptions,
): Promise<void> {
  const small = (r: DumpRecord | undefined): boolean => r !== undefined && r.payload.length > 0 && r.payload.length <= DIGEST_MAX_PAYLOAD_BYTES;
  const open = verdicts.flatMap((v, i) => (v === undefined && small(src[i]) && small(tgt[i]) ? [i] : []));
  if (open.length === 0) return;
  const openKeys = open.map((i) => keys[i] as Buffer);
  const [ours, theirs] = await Promise.all([contentDigests(source, openKeys, options.chunkSize), contentDigests(target, openKeys, options.chunkSize)]);
  // Digests leave out hash-field expiries: where a side has them, hashes are compared field by field.
  const fieldExpiries = source.capabilities.fieldExpiry || target.capabilities.fieldExpiry;
  open.forEach((index, j) => {
    if (ours[j] === '' || ours[j] !== theirs[j] || (fieldExpiries && ours[j]?.startsWith('hash:'))) return;
    const key = keys[index] as Buffer;
    const ttl = ttlDifference((src[index] as DumpRecord).expireAt, (tgt[index] as DumpRecord).expireAt, options.ttlToleranceMs);
    verdicts[index] = ttl === null ? { key, verdict: 'identical' } : { key, verdict: 'different', category: 'ttl', detail: ttl };
  });
}

async function contentDigests(server: Connection, keys: readonly Buffer[], elementLimit: number): Promise<string[]> {
  const reply = await server.evalScript(withFlags(CONTENT_DIGEST, flagsFor(server, READ_FLAGS)), keys, [String(elementLimit)]);
  return asText(reply).split(';').slice(0, keys.length);
}

/** A verdict from the DUMP reads alone, or undefined when the values must be compared logically. */
function quickVerdict(key: Buffer, src: DumpRecord, tgt: DumpRecord, toleranceMs: number): KeyVerdict | undefined {
  if (src.expireAt === -2) return { key, verdict: 'vanished' };
  if (tgt.expireAt === -2) return { key, verdict: 'different', category: 'missing', detail: 'not on the target' };
  if (src.payload.length === 0 || !src.payload.equals(tgt.payload)) return undefined;
  const ttl = ttlDifference(src.expireAt, tgt.expireAt, toleranceMs);
  return ttl === null ? { key, verdict: 'identical' } : { key, verdict: 'different', category: 'ttl', detail: ttl };
}

/** Compares one key from fresh reads. */
export async function compareKey(source: Connection, target: Connection, key: Buffer, options: CompareOptions): Promise<KeyVerdict> {
  const [[src], [tgt]] = await Promise.all([snapshotsOfAll(source, [key], options.dumpMaxBytes), snapshotsOfAll(target, [key], options.dumpMaxBytes)]);
  return judge(source, target, key, src as DumpRecord, tgt as DumpRecord, options);
}

/** The DUMP read script, as in the dump copy: expire-at and payload ('' for keys over the size limit). */
async function snapshots(server: Connection, keys: readonly Buffer[], maxBytes: number): Promise<DumpRecord[]> {
  const script = withFlags(DUMP_READ, flagsFor(server, READ_FLAGS));
  const args = [String(READ_BUDGET_BYTES), String(maxBytes), server.capabilities.expireTime ? '1' : '0'];
  const [header, payloads] = asArray(await server.evalScript(script, keys, args));
  const records = parseDumpHeader(asText(header), payloads as Buffer);
  const failure = records.findIndex((r) => r.expireAt === -3);
  if (failure >= 0) {
    throw new CommandRefused(`${server.label} could not read |${displayKey(keys[failure] as Buffer)}|: ${records[failure]?.payload.toString()}`);
  }
  return records;
}

async function snapshotsOfAll(server: Connection, keys: readonly Buffer[], maxBytes: number): Promise<DumpRecord[]> {
  const all: DumpRecord[] = [];
  while (all.length < keys.length) all.push(...(await snapshots(server, keys.slice(all.length), maxBytes)));
  return all;
}

async function judge(source: Connection, target: Connection, key: Buffer, src: DumpRecord, tgt: DumpRecord, options: CompareOptions): Promise<KeyVerdict> {
  if (src.expireAt === -2) return { key, verdict: 'vanished' };
  if (tgt.expireAt === -2) return { key, verdict: 'different', category: 'missing', detail: 'not on the target' };
  const samePayload = src.payload.length > 0 && src.payload.equals(tgt.payload);
  if (!samePayload) {
    const [srcType, tgtType] = await Promise.all([typeOf(source, key), typeOf(target, key)]);
    if (srcType === 'none') return { key, verdict: 'vanished' };
    if (tgtType === 'none') return { key, verdict: 'different', category: 'missing', detail: 'not on the target' };
    if (srcType !== tgtType) return { key, verdict: 'different', category: 'type', detail: `${srcType} on the source, ${tgtType} on the target` };
    const detail = await firstDifference(source, target, key, srcType, options.chunkSize);
    if (detail !== null) return { key, verdict: 'different', category: 'value', detail };
    const fields = srcType === 'hash' ? await fieldExpiryDifference(source, target, key, options) : null;
    if (fields !== null) return { key, verdict: 'different', category: 'ttl', detail: fields };
  }
  const ttl = ttlDifference(src.expireAt, tgt.expireAt, options.ttlToleranceMs);
  if (ttl !== null) return { key, verdict: 'different', category: 'ttl', detail: ttl };
  return { key, verdict: 'identical' };
}

/** Expire-at values in ms, -1 for none. */
export function ttlDifference(src: number, tgt: number, toleranceMs: number): string | null {
  if (src < 0 && tgt < 0) return null;
  if (src < 0) return `no expiry on the source, expires at ${tgt} on the target`;
  if (tgt < 0) return `expires at ${src} on the source, no expiry on the target`;
  const delta = tgt - src;
  return Math.abs(delta) > toleranceMs ? `expiry differs by ${delta} ms` : null;
}

async function typeOf(server: Connection, key: Buffer): Promise<string> {
  return asText(await server.send(['TYPE', key]));
}

/** ZSET scores as doubles: "inf" and "-inf" as Redis writes them, "1e300" and "0.1" alike. */
export function parseScore(text: string): number {
  const lower = text.toLowerCase();
  if (lower === 'inf' || lower === '+inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  return Number(text);
}

/** A short hint of the first difference in content, or null when the values are logically equal. */
async function firstDifference(source: Connection, target: Connection, key: Buffer, kind: string, size: number): Promise<string | null> {
  const both = (args: (string | Buffer)[]): Promise<[Reply, Reply]> => Promise.all([source.send(args), target.send(args)]);
  const lengthCommand: Record<string, string> = { string: 'STRLEN', list: 'LLEN', set: 'SCARD', zset: 'ZCARD', hash: 'HLEN', stream: 'XLEN' };
  const command = lengthCommand[kind];
  if (command === undefined) return `cannot compare type ${kind}`;
  const [srcLen, tgtLen] = await both([command, key]);
  if (srcLen !== tgtLen) return `length ${asText(srcLen)} on the source, ${asText(tgtLen)} on the target`;
  switch (kind) {
    case 'string':
      return compareWindows(both, (from) => ['GETRANGE', key, String(from), String(from + STRING_CHUNK_BYTES - 1)], STRING_CHUNK_BYTES, 'bytes from');
    case 'list':
      return compareWindows(both, (from) => ['LRANGE', key, String(from), String(from + size - 1)], size, 'index');
    case 'zset':
      return compareZset(both, key, size);
    case 'hash':
      return compareByScan(source, target, key, 'HSCAN', size);
    case 'set':
      return compareByScan(source, target, key, 'SSCAN', size);
    default:
      return compareStream(source, target, key, size);
  }
}

type Both = (args: (string | Buffer)[]) => Promise<[Reply, Reply]>;

function sameReply(a: Reply | undefined, b: Reply | undefined): boolean {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameReply(x, b[i]));
  return a === b;
}

/** Compares the same window on both sides until a short window ends the value. */
async function compareWindows(both: Both, window: (from: number) => (string | Buffer)[], size: number, unit: string): Promise<string | null> {
  for (let from = 0; ; from += size) {
    const [a, b] = await both(window(from));
    if (!sameReply(a, b)) {
      if (Buffer.isBuffer(a)) return `${unit} ${from} differ`;
      const index = asArray(a).findIndex((x, i) => !sameReply(x, asArray(b)[i]));
      return `${unit} ${from + Math.max(index, 0)} differs`;
    }
    const length = Buffer.isBuffer(a) ? a.length : asArray(a).length;
    if (length < size) return null;
  }
}

async function compareZset(both: Both, key: Buffer, size: number): Promise<string | null> {
  for (let from = 0; ; from += size) {
    const [a, b] = (await both(['ZRANGE', key, String(from), String(from + size - 1), 'WITHSCORES'])).map(asArray) as [Reply[], Reply[]];
    for (let i = 0; i < Math.max(a.length, b.length); i += 2) {
      const member = a[i] as Buffer | undefined;
      if (!sameReply(member, b[i])) return `member ${asText(member ?? null)} at rank ${from + i / 2}`;
      if (parseScore(asText(a[i + 1])) !== parseScore(asText(b[i + 1]))) {
        return `member ${asText(member ?? null)}: score ${asText(a[i + 1])} on the source, ${asText(b[i + 1])} on the target`;
      }
    }
    if (a.length < 2 * size) return null;
  }
}

/** Walks the source's fields or members with a cursor and looks each one up on the target. */
async function compareByScan(source: Connection, target: Connection, key: Buffer, command: 'HSCAN' | 'SSCAN', size: number): Promise<string | null> {
  let cursor = '0';
  do {
    const [next, items] = asArray(await source.send([command, key, cursor, 'COUNT', String(size)]));
    cursor = asText(next);
    const values = asArray(items as Reply) as Buffer[];
    if (command === 'SSCAN') {
      const present = asArray(await target.send(['SMISMEMBER', key, ...values]));
      const missing = present.findIndex((p) => p !== 1);
      if (missing >= 0) return `member ${asText(values[missing] ?? null)} not on the target`;
    } else {
      const fields = values.filter((_, i) => i % 2 === 0);
      const theirs = asArray(await target.send(['HMGET', key, ...fields]));
      const differs = fields.findIndex((_, i) => !sameReply(values[2 * i + 1], theirs[i]));
      if (differs >= 0) return `field ${asText(fields[differs] ?? null)} differs`;
    }
  } while (cursor !== '0');
  return null;
}

/**
 * Hash-field expiries (Redis 7.4+), the source's fields a scan page at a time, within the tolerance; a side
 * with no field expiries has none. Null when they agree (or neither side has them).
 */
async function fieldExpiryDifference(source: Connection, target: Connection, key: Buffer, options: CompareOptions): Promise<string | null> {
  if (!source.capabilities.fieldExpiry && !target.capabilities.fieldExpiry) return null;
  const expiries = async (server: Connection, fields: Buffer[]): Promise<number[]> =>
    server.capabilities.fieldExpiry ? asArray(await server.send(['HPEXPIRETIME', key, 'FIELDS', String(fields.length), ...fields])).map(asNumber) : fields.map(() => -1);
  let cursor = '0';
  do {
    const [next, items] = asArray(await source.send(['HSCAN', key, cursor, 'COUNT', String(options.chunkSize)]));
    cursor = asText(next);
    const fields = (asArray(items as Reply) as Buffer[]).filter((_, i) => i % 2 === 0);
    if (fields.length === 0) continue;
    const [ours, theirs] = await Promise.all([expiries(source, fields), expiries(target, fields)]);
    for (let i = 0; i < fields.length; i++) {
      const differs = ttlDifference(ours[i] as number, theirs[i] as number, options.ttlToleranceMs);
      if (differs !== null) return `field ${asText(fields[i] ?? null)}: ${differs}${target.capabilities.fieldExpiry ? '' : ` (${target.label} has no field expiries)`}`;
    }
  } while (cursor !== '0');
  return null;
}

function fieldsOf(reply: Reply): Map<string, Reply> {
  const items = asArray(reply);
  const map = new Map<string, Reply>();
  for (let i = 0; i + 1 < items.length; i += 2) map.set(asText(items[i]), items[i + 1] as Reply);
  return map;
}

/** Entries page by page, then each group's last-delivered ID, pending count and consumers. */
async function compareStream(source: Connection, target: Connection, key: Buffer, size: number): Promise<string | null> {
  const both: Both = (args) => Promise.all([source.send(args), target.send(args)]);
  let start = '-';
  for (;;) {
    const [a, b] = (await both(['XRANGE', key, start, '+', 'COUNT', String(size)])).map(asArray) as [Reply[], Reply[]];
    const differs = a.findIndex((entry, i) => !sameReply(entry, b[i]));
    if (differs >= 0) return `entry ${asText(asArray(a[differs] as Reply)[0])} differs`;
    if (a.length < size) break;
    start = `(${asText(asArray(a[a.length - 1] as Reply)[0])}`;
  }
  const [srcGroups, tgtGroups] = (await both(['XINFO', 'GROUPS', key])).map((r) => asArray(r).map(fieldsOf)) as [Map<string, Reply>[], Map<string, Reply>[]];
  if (srcGroups.length !== tgtGroups.length) return `${srcGroups.length} consumer groups on the source, ${tgtGroups.length} on the target`;
  for (const group of srcGroups) {
    const name = asText(group.get('name'));
    const theirs = tgtGroups.find((g) => asText(g.get('name')) === name);
    if (!theirs) return `group ${name} not on the target`;
    for (const field of ['last-delivered-id', 'pending', 'consumers']) {
      if (asText(group.get(field)) !== asText(theirs.get(field))) return `group ${name}: ${field} ${asText(group.get(field))} on the source, ${asText(theirs.get(field))} on the target`;
    }
    const [srcConsumers, tgtConsumers] = await both(['XINFO', 'CONSUMERS', key, name]);
    const summary = (r: Reply): string => asArray(r).map(fieldsOf).map((c) => `${asText(c.get('name'))}:${asText(c.get('pending'))}`).sort().join(',');
    if (summary(srcConsumers) !== summary(tgtConsumers)) return `group ${name}: consumers ${summary(srcConsumers)} on the source, ${summary(tgtConsumers)} on the target`;
  }
  return null;
}
