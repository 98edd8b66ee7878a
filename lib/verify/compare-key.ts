// Comparing one key: is each source key on the target, of the same type, with the same content and expiry?
// Identical DUMP payloads settle most keys at once; the rest are compared logically, in chunks.
import { CommandRefused, type Connection } from '../net/connections.js';
import { COMPARABLE_TYPES, GROUP_FIELDS, serverView, storedView, type StreamEntry, type ValueView } from './value-views.js';
import { decodeValue, type RdbValue } from '../rdb/decode.js';
import { RdbFormatError } from '../rdb/errors.js';
import { FOOTER_BYTES } from '../rdb/payload.js';
import { asArray, asText } from '../net/reply.js';
import { CONTENT_DIGEST, DUMP_READ, type DumpRecord, flagsFor, parseDumpHeader, READ_FLAGS, withFlags } from '../net/scripts.js';
import { mapLimited } from '../concurrency.js';
import { displayKey, type KeyNames, READ_BUDGET_BYTES, type StoredValue, STRING_CHUNK_BYTES } from '../records.js';

export type DiffCategory = 'missing' | 'type' | 'value' | 'ttl';
export const CATEGORIES: readonly DiffCategory[] = ['missing', 'type', 'value', 'ttl'];

interface Difference {
  key: Buffer;
  category: DiffCategory;
  detail: string;
}

export interface CompareOptions {
  ttlToleranceMs: number;
  chunkSize: number;
  dumpMaxBytes: number;
  /** KEY_PREFIX_STRIP and KEY_PREFIX_ADD: the target is read under its own names; verdicts keep the source's. */
  names?: KeyNames;
}

/** The names of `keys` on the target. */
const onTarget = (keys: readonly Buffer[], options: CompareOptions): Buffer[] => (options.names?.renames ? keys.map((k) => (options.names as KeyNames).toTarget(k)) : [...keys]);

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
    const [src, tgt] = await Promise.all([snapshots(source, rest, options.dumpMaxBytes), snapshots(target, onTarget(rest, options), options.dumpMaxBytes)]);
    const covered = rest.slice(0, Math.min(src.length, tgt.length));
    rest = rest.slice(covered.length);
    const quick = covered.map((key, i) => quickVerdict(key, (src[i] as DumpRecord).expireAt, tgt[i] as DumpRecord, samePayload(src[i] as DumpRecord, tgt[i] as DumpRecord), options.ttlToleranceMs));
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
  const [ours, theirs] = await Promise.all([contentDigests(source, openKeys, options.chunkSize), contentDigests(target, onTarget(openKeys, options), options.chunkSize)]);
  // Digests leave out hash-field expiries: where a side has them, hashes are compared field by field.
  const fieldExpiries = source.capabilities.fieldExpiry || target.capabilities.fieldExpiry;
  open.forEach((index, j) => {
    if (ours[j] === '' || ours[j] !== theirs[j] || (fieldExpiries && ours[j]?.startsWith('hash:'))) return;
    verdicts[index] = ttlVerdict(keys[index] as Buffer, (src[index] as DumpRecord).expireAt, (tgt[index] as DumpRecord).expireAt, options.ttlToleranceMs);
  });
}

async function contentDigests(server: Connection, keys: readonly Buffer[], elementLimit: number): Promise<string[]> {
  const reply = await server.evalScript(withFlags(CONTENT_DIGEST, flagsFor(server, READ_FLAGS)), keys, [String(elementLimit)]);
  return asText(reply).split(';').slice(0, keys.length);
}

/**
 * A verdict from the DUMP reads alone (the source's expire-at -2 for a key gone from it), or undefined when
 * the payloads differ and the values must be compared logically.
 */
function quickVerdict(key: Buffer, srcExpireAt: number, tgt: DumpRecord, samePayload: boolean, toleranceMs: number): KeyVerdict | undefined {
  if (srcExpireAt === -2) return { key, verdict: 'vanished' };
  if (tgt.expireAt === -2) return { key, verdict: 'different', category: 'missing', detail: 'not on the target' };
  return samePayload ? ttlVerdict(key, srcExpireAt, tgt.expireAt, toleranceMs) : undefined;
}

/**
 * The same value bytes, whatever the RDB version stamp and CRC after them: a payload restamped for an older
 * target holds the same value, and a module's value (which only its module could decode) is settled here.
 */
export const samePayload = (src: DumpRecord, tgt: DumpRecord): boolean =>
  src.payload.length > FOOTER_BYTES && src.payload.length === tgt.payload.length && src.payload.compare(tgt.payload, 0, tgt.payload.length - FOOTER_BYTES, 0, src.payload.length - FOOTER_BYTES) === 0;

/** Identical, or a ttl difference, for a key whose content is the same on both sides. */
function ttlVerdict(key: Buffer, srcExpireAt: number, tgtExpireAt: number, toleranceMs: number): KeyVerdict {
  const ttl = ttlDifference(srcExpireAt, tgtExpireAt, toleranceMs);
  return ttl === null ? { key, verdict: 'identical' } : { key, verdict: 'different', category: 'ttl', detail: ttl };
}

/** Compares one key from fresh reads. */
async function compareKey(source: Connection, target: Connection, key: Buffer, options: CompareOptions): Promise<KeyVerdict> {
  const [[src], [tgt]] = await Promise.all([snapshotsOfAll(source, [key], options.dumpMaxBytes), snapshotsOfAll(target, onTarget([key], options), options.dumpMaxBytes)]);
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
  const quick = quickVerdict(key, src.expireAt, tgt, samePayload(src, tgt), options.ttlToleranceMs);
  if (quick) return quick;
  const [targetKey] = onTarget([key], options) as [Buffer];
  const types = await Promise.all([typeOf(source, key), typeOf(target, targetKey)]);
  return logicalVerdict(key, types, [serverView(source, key), serverView(target, targetKey)], [src.expireAt, tgt.expireAt], options);
}

/** Type, then content (read through the two views), then expiry: the verdict on a key whose payloads differ. */
async function logicalVerdict(
  key: Buffer, [srcType, tgtType]: [string, string], [source, target]: [ValueView, ValueView], [srcExpireAt, tgtExpireAt]: [number, number], options: CompareOptions,
): Promise<KeyVerdict> {
  if (srcType === 'none') return { key, verdict: 'vanished' };
  if (tgtType === 'none') return { key, verdict: 'different', category: 'missing', detail: 'not on the target' };
  if (srcType !== tgtType) return { key, verdict: 'different', category: 'type', detail: `${srcType} on the source, ${tgtType} on the target` };
  const detail = await firstDifference(source, target, srcType, options.chunkSize);
  if (detail !== null) return { key, verdict: 'different', category: 'value', detail };
  const fields = srcType === 'hash' ? await fieldExpiryDifference(source, target, options) : null;
  if (fields !== null) return { key, verdict: 'different', category: 'ttl', detail: fields };
  return ttlVerdict(key, srcExpireAt, tgtExpireAt, options.ttlToleranceMs);
}

/**
 * Compares keys whose source values are in hand (an .rdb file's) with the target. The target's DUMP read
 * settles most: a payload that is the file's bytes under any version and CRC trailer holds the same value.
 * The others are decoded and compared logically, the target read in chunks. A key whose expiry in the file
 * has passed counts as gone from the source, as one that expired on a source server does.
 */
export async function compareStoredBatch(target: Connection, keys: readonly Buffer[], stored: readonly StoredValue[], options: CompareOptions): Promise<KeyVerdict[]> {
  const now = Date.now();
  const verdicts: KeyVerdict[] = [];
  while (verdicts.length < keys.length) {
    const from = verdicts.length;
    const tgt = await snapshots(target, onTarget(keys.slice(from), options), options.dumpMaxBytes);
    const quick = tgt.map((record, i) => {
      const value = stored[from + i] as StoredValue;
      const expireAt = value.expireAt !== -1 && value.expireAt <= now ? -2 : value.expireAt;
      return quickVerdict(keys[from + i] as Buffer, expireAt, record, holdsValue(record.payload, value.value), options.ttlToleranceMs);
    });
    const open = quick.flatMap((v, i) => (v === undefined ? [i] : []));
    const settled = await mapLimited(open, KEYS_COMPARED_AT_ONCE, (i) => judgeStored(target, keys[from + i] as Buffer, stored[from + i] as StoredValue, tgt[i] as DumpRecord, options));
    open.forEach((index, j) => (quick[index] = settled[j]));
    verdicts.push(...(quick as KeyVerdict[]));
  }
  return verdicts;
}

/** A DUMP payload is a value's bytes (type byte first) and a 10-byte trailer: RDB version and CRC-64. */
const holdsValue = (payload: Buffer, value: Buffer): boolean => payload.length === value.length + 10 && payload.subarray(0, value.length).equals(value);

async function judgeStored(target: Connection, key: Buffer, value: StoredValue, tgt: DumpRecord, options: CompareOptions): Promise<KeyVerdict> {
  let decoded: RdbValue;
  try {
    decoded = decodeValue(value.value, value.rdbVersion);
  } catch (err) {
    if (!(err instanceof RdbFormatError)) throw err;
    return { key, verdict: 'different', category: 'value', detail: `the file's value cannot be decoded: ${err.message}` };
  }
  const srcType = decoded.type === 'module' ? decoded.value.moduleType : decoded.type;
  const [targetKey] = onTarget([key], options) as [Buffer];
  const types: [string, string] = [srcType, await typeOf(target, targetKey)];
  return logicalVerdict(key, types, [storedView(decoded), serverView(target, targetKey)], [value.expireAt, tgt.expireAt], options);
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

/**
 * A short hint of the first difference in content, or null when the values are logically equal: the source
 * view against the target's, window by window (sets and hashes: the source's pages looked up on the target).
 */
async function firstDifference(source: ValueView, target: ValueView, kind: string, size: number): Promise<string | null> {
  if (!COMPARABLE_TYPES.includes(kind)) return `cannot compare type ${kind}`;
  const [srcLen, tgtLen] = await Promise.all([source.length(kind), target.length(kind)]);
  if (srcLen !== tgtLen) return `length ${srcLen} on the source, ${tgtLen} on the target`;
  switch (kind) {
    case 'string':
      return compareStrings(source, target, srcLen);
    case 'list':
      return compareLists(source, target, size);
    case 'zset':
      return compareZsets(source, target, size);
    case 'hash':
      return compareHashes(source, target, size);
    case 'set':
      return compareSets(source, target, size);
    default:
      return compareStreams(source, target, size);
  }
}

function sameItems(a: readonly Buffer[], b: readonly Buffer[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const [x, y] = [a[i], b[i]];
    if (x === undefined || y === undefined || !x.equals(y)) return i;
  }
  return -1;
}

async function compareStrings(source: ValueView, target: ValueView, length: number): Promise<string | null> {
  for (let from = 0; from < length; from += STRING_CHUNK_BYTES) {
    const [a, b] = await Promise.all([source.bytes(from, STRING_CHUNK_BYTES), target.bytes(from, STRING_CHUNK_BYTES)]);
    if (!a.equals(b)) return `bytes from ${from} differ`;
  }
  return null;
}

async function compareLists(source: ValueView, target: ValueView, size: number): Promise<string | null> {
  for (let from = 0; ; from += size) {
    const [a, b] = await Promise.all([source.listRange(from, size), target.listRange(from, size)]);
    const differs = sameItems(a, b);
    if (differs >= 0) return `index ${from + differs} differs`;
    if (a.length < size) return null;
  }
}

async function compareZsets(source: ValueView, target: ValueView, size: number): Promise<string | null> {
  for (let from = 0; ; from += size) {
    const [a, b] = await Promise.all([source.zsetRange(from, size), target.zsetRange(from, size)]);
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const [x, y] = [a[i], b[i]];
      if (x === undefined || y === undefined || !x.member.equals(y.member)) return `member ${x?.member.toString() ?? ''} at rank ${from + i}`;
      if (x.score !== y.score) return `member ${x.member.toString()}: score ${x.shown} on the source, ${y.shown} on the target`;
    }
    if (a.length < size) return null;
  }
}

/** Walks the source's members page by page and looks each one up on the target. */
async function compareSets(source: ValueView, target: ValueView, size: number): Promise<string | null> {
  for await (const members of source.pages('set', size)) {
    const missing = (await target.hasMembers(members)).findIndex((present) => !present);
    if (missing >= 0) return `member ${members[missing]?.toString() ?? ''} not on the target`;
  }
  return null;
}

async function compareHashes(source: ValueView, target: ValueView, size: number): Promise<string | null> {
  for await (const items of source.pages('hash', size)) {
    const fields = items.filter((_, i) => i % 2 === 0);
    const theirs = await target.fieldValues(fields);
    const differs = fields.findIndex((_, i) => !(theirs[i]?.equals(items[2 * i + 1] as Buffer) ?? false));
    if (differs >= 0) return `field ${fields[differs]?.toString() ?? ''} differs`;
  }
  return null;
}

/**
 * Hash-field expiries (Redis 7.4+), the source's fields a page at a time, within the tolerance; a side with no
 * field expiries has none. Null when they agree (or neither side can have them).
 */
async function fieldExpiryDifference(source: ValueView, target: ValueView, options: CompareOptions): Promise<string | null> {
  if (!source.fieldExpiry && !target.fieldExpiry) return null;
  for await (const items of source.pages('hash', options.chunkSize)) {
    const fields = items.filter((_, i) => i % 2 === 0);
    const [ours, theirs] = await Promise.all([source.fieldExpiries(fields), target.fieldExpiries(fields)]);
    for (let i = 0; i < fields.length; i++) {
      const differs = ttlDifference(ours[i] ?? -1, theirs[i] ?? -1, options.ttlToleranceMs);
      if (differs !== null) return `field ${fields[i]?.toString() ?? ''}: ${differs}${target.fieldExpiry ? '' : ' (the target has no field expiries)'}`;
    }
  }
  return null;
}

/** Entries page by page, then each group's last-delivered ID, pending count and consumers. */
async function compareStreams(source: ValueView, target: ValueView, size: number): Promise<string | null> {
  for (let after: string | undefined; ;) {
    const [a, b] = await Promise.all([source.streamEntries(after, size), target.streamEntries(after, size)]);
    const differs = a.findIndex(([id, fields], i) => id !== b[i]?.[0] || sameItems(fields, b[i]?.[1] ?? []) >= 0);
    if (differs >= 0) return `entry ${(a[differs] as StreamEntry)[0]} differs`;
    if (a.length < size) break;
    after = (a[a.length - 1] as StreamEntry)[0];
  }
  const [srcGroups, tgtGroups] = await Promise.all([source.streamGroups(), target.streamGroups()]);
  if (srcGroups.length !== tgtGroups.length) return `${srcGroups.length} consumer groups on the source, ${tgtGroups.length} on the target`;
  for (const group of srcGroups) {
    const theirs = tgtGroups.find((g) => g.name === group.name);
    if (!theirs) return `group ${group.name} not on the target`;
    for (const field of GROUP_FIELDS) {
      if (group.fields[field] !== theirs.fields[field]) return `group ${group.name}: ${field} ${group.fields[field]} on the source, ${theirs.fields[field]} on the target`;
    }
    if (group.consumers !== theirs.consumers) return `group ${group.name}: consumers ${group.consumers} on the source, ${theirs.consumers} on the target`;
  }
  return null;
}
