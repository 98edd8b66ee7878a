// The streaming RDB reader (lib/rdb/) against real files: the fixtures written by Redis 2.0 to 8.0 and Valkey 8.0
// and 9.1 and their manifests, a restore into a real redis-server 7.0, files built by hand for what no server here
// writes (RDB 1 opcodes, Valkey 9's own types, empty collections), corrupt inputs, and a big generated file.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Crc64, crc64, crcHex } from '../lib/rdb/crc64.js';
import { valueCursor } from '../lib/rdb/cursor.js';
import { decodeValue, type RdbValue, type StreamValue } from '../lib/rdb/decode.js';
import { readLength, readLengthBigint, readString, readTextDouble } from '../lib/rdb/encodings.js';
import { isEmptyCollection } from '../lib/rdb/empty.js';
import { lzfDecompress } from '../lib/rdb/lzf.js';
import { intsetItems, listpackItems, ziplistItems } from '../lib/rdb/packed.js';
import { dumpPayload, payloadChecksumOk, payloadRdbVersion, payloadTypeByte, restampPayload } from '../lib/rdb/payload.js';
import { logicalType } from '../lib/rdb/types.js';
import { RdbFormatError, readRdb, type RdbHeader, type RdbKey, type RdbReadOptions } from '../lib/rdb/reader.js';
import { startRedis, type LocalServer } from './helpers/servers.js';
import { moduleAuxRecord, moduleValueBody, rdbFile, rdbLength, rdbString } from './helpers/rdb-files.js';
import { headerVersion, type Manifest, type ManifestEntry, type ManifestGroup } from './helpers/manifest.js';
import { slowCrc64 } from './helpers/crc64-reference.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'rdb');
const FIXTURE_NAMES = ['redis-2.0', 'redis-2.4', 'redis-2.6', 'redis-2.8', 'redis-2.8-nochecksum', 'redis-3.2', 'redis-4.0', 'redis-5.0', 'redis-5.0-lfu', 'redis-6.2', 'redis-7.0', 'redis-7.2', 'redis-7.4', 'valkey-8.0', 'redis-8.0', 'valkey-9.1'] as const;
type FixtureName = (typeof FIXTURE_NAMES)[number];
const fixturePath = (name: FixtureName): string => join(FIXTURES, `${name}.rdb`);

// ---- The manifest (test/fixtures/rdb/README.md) ----

const loadManifest = (name: FixtureName): Manifest => JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')) as Manifest;

/** The fixed absolute expiries of the dataset (README), which 6.2's manifest shows only as "relative". */
const DATASET_EXPIRIES = [2000000000123, 2100000000456];

interface FileContents {
  header: RdbHeader;
  keys: RdbKey[];
  functions: Buffer[];
}

async function readAll(path: string, options: RdbReadOptions = {}): Promise<FileContents> {
  let header: RdbHeader | undefined;
  const functions: Buffer[] = [];
  const keys: RdbKey[] = [];
  for await (const key of readRdb(path, { ...options, onHeader: (h) => (header = h), onFunction: (code) => functions.push(code) })) keys.push(key);
  if (!header) throw new Error('onHeader was never called');
  return { header, keys, functions };
}

/** The error a read throws, or a failure if it throws none. */
async function readError(path: string, options: RdbReadOptions = {}): Promise<Error> {
  try {
    await readAll(path, options);
  } catch (err) {
    return err as Error;
  }
  throw new Error(`reading ${path} did not throw`);
}

const b64 = (b: Buffer): string => b.toString('base64');

/** A manifest score (Python repr) as a number. */
function manifestScore(text: string): number {
  if (text === 'inf') return Infinity;
  if (text === '-inf') return -Infinity;
  return Number(text);
}

/** The decoded value in the manifest's `value` shape, to compare with toEqual. */
function asManifestValue(decoded: RdbValue): unknown {
  switch (decoded.type) {
    case 'string':
      return b64(decoded.value);
    case 'list':
      return decoded.value.map(b64);
    case 'set':
      return decoded.value.map(b64).sort();
    case 'zset':
      return decoded.value.map(([member, score]) => [b64(member), score]);
    case 'hash':
      return Object.fromEntries(decoded.value.map(([field, value]) => [b64(field), b64(value)]));
    case 'stream':
      return decoded.value.entries.map(([id, fields]) => [id, fields.map(b64)]);
    case 'module':
      return decoded.value;
  }
}

function manifestValueOf(entry: ManifestEntry): unknown {
  if (entry.type === 'set') return [...(entry.value as string[])].sort();
  if (entry.type === 'zset') return (entry.value as [string, string][]).map(([member, score]) => [member, manifestScore(score)]);
  return entry.value;
}

function groupsAsManifest(stream: StreamValue): ManifestGroup[] {
  return stream.groups.map((g) => ({
    name: g.name.toString(),
    last_delivered_id: g.lastDeliveredId,
    entries_read: g.entriesRead ?? null, // not saved before Redis 7.0, where the manifest has null too
    pending: g.pending.map((p): [string, string, number] => [p.id, p.consumer?.toString() ?? '?', p.deliveryCount]),
    consumers: g.consumers.map((c) => c.name.toString()),
  }));
}

// ---- Building small RDB files by hand, for the cases no server writes ----

/** A listpack of short strings and small integers (0 to 127), enough for hand-made values. */
function listpack(...items: (string | number)[]): Buffer {
  const entries = items.map((item) => {
    if (typeof item === 'number') return Buffer.from([item, 1]);
    const bytes = Buffer.from(item);
    return Buffer.concat([Buffer.from([0x80 | bytes.length]), bytes, Buffer.from([bytes.length + 1])]);
  });
  const lp = Buffer.concat([Buffer.alloc(6), ...entries, Buffer.from([0xff])]);
  lp.writeUInt32LE(lp.length, 0);
  lp.writeUInt16LE(items.length, 4);
  return lp;
}

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'rkm-reader-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function scratchFile(name: string, bytes: Buffer | string): string {
  const path = join(scratch, name);
  writeFileSync(path, bytes);
  return path;
}

// ---- Building blocks ----

describe('CRC-64', () => {
  it('gives 0xe9c6d914c4b8d9ca for "123456789", as Redis crc64.c', () => {
    expect(crcHex(crc64(Buffer.from('123456789')))).toBe('0xe9c6d914c4b8d9ca');
  });

  it('equals the bit-by-bit definition on 20 KB of varied bytes, fed whole or in odd pieces', () => {
    const data = Buffer.alloc(20_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 23;
    const expected = slowCrc64(data);
    expect(crc64(data)).toBe(expected);
    const pieces = new Crc64();
    for (let at = 0; at < data.length; at += 997) pieces.update(data, at, Math.min(data.length, at + 997));
    expect(pieces.digest()).toBe(expected);
  });

  it('the word path (slicing by 16, long runs) equals the definition at every alignment and length around its edges', () => {
    const backing = Buffer.alloc(1200);
    for (let i = 0; i < backing.length; i++) backing[i] = (i * 2246822519 + 7) >>> 24;
    for (const offset of [0, 1, 2, 3, 5]) {
      for (const length of [0, 1, 15, 16, 17, 255, 256, 257, 259, 271, 272, 1000, 1195 - offset]) {
        const data = backing.subarray(offset, offset + length); // byteOffset not a multiple of 4 for most
        const expected = slowCrc64(data);
        expect(crc64(data), `offset ${offset}, length ${length}`).toBe(expected);
        // A run starting mid-buffer, after a short piece that took the byte path.
        const split = new Crc64().update(data, 0, Math.min(3, length)).update(data, Math.min(3, length));
        expect(split.digest(), `offset ${offset}, length ${length}, split`).toBe(expected);
      }
    }
  });

  it('matches the checksum stored at the end of every fixture that has one (RDB 5 and later, saved with rdbchecksum yes)', () => {
    const checksummed = FIXTURE_NAMES.filter((name) => headerVersion(loadManifest(name).rdb_header) >= 5 && !name.endsWith('nochecksum'));
    expect(checksummed.length).toBeGreaterThan(8);
    for (const name of checksummed) {
      const file = readFileSync(fixturePath(name));
      expect(crc64(file.subarray(0, file.length - 8)), name).toBe(file.readBigUInt64LE(file.length - 8));
    }
  });
});

describe('LZF', () => {
  it('expands the LZF-compressed str:lzf of the 7.0 fixture to the manifest value', async () => {
    const { keys } = await readAll(fixturePath('redis-7.0'));
    const value = keys.find((k) => k.key.toString() === 'str:lzf')!.value;
    expect(value[1]).toBe(0xc3); // string encoding 3: LZF
    const c = valueCursor(value, 2, () => {
      throw new Error('short');
    });
    const compressed = readLength(c);
    const length = readLength(c);
    const out = lzfDecompress(c.bytes(compressed), length);
    expect(compressed).toBeLessThan(length);
    expect(b64(out)).toBe(loadManifest('redis-7.0').databases['0']![b64(Buffer.from('str:lzf'))]!.value);
  });

  it('expands a back reference that overlaps its own output (a run of one byte)', () => {
    // literal "a", then a reference of 7 + 10 + 2 = 19 bytes starting 1 byte back
    expect(lzfDecompress(Buffer.from([0x00, 0x61, 0xe0, 10, 0x00]), 20).toString()).toBe('a'.repeat(20));
  });

  it('refuses a back reference to before the start of the output', () => {
    expect(() => lzfDecompress(Buffer.from([0x00, 0x61, 0x20, 0x05]), 4)).toThrow(/before the start/);
  });

  it('refuses data that expands past the stated length', () => {
    expect(() => lzfDecompress(Buffer.from([0x02, 0x61, 0x62, 0x63]), 2)).toThrow(/past its stated length/);
  });
});

describe('length and string encodings', () => {
  const cursor = (...bytes: number[]) =>
    valueCursor(Buffer.from(bytes), 0, (need) => {
      throw new RdbFormatError(`short, need ${need}`);
    });

  it('reads 6-bit, 14-bit, 32-bit and 64-bit lengths', () => {
    expect(readLength(cursor(0x3f))).toBe(63);
    expect(readLength(cursor(0x7f, 0xff))).toBe(16383);
    expect(readLength(cursor(0x80, 0x00, 0x01, 0x00, 0x00))).toBe(65536);
    expect(readLength(cursor(0x81, 0, 0, 0, 1, 0, 0, 0, 0))).toBe(2 ** 32);
  });

  it('reads 2^64 - 1 as a bigint length (a group with unknown entries_read)', () => {
    expect(readLengthBigint(cursor(0x81, 255, 255, 255, 255, 255, 255, 255, 255))).toBe(2n ** 64n - 1n);
  });

  it('refuses a string encoding marker where a length belongs, naming the offset', () => {
    expect(() => readLength(cursor(0xc0, 0x01))).toThrow(/expected a length at byte 0 of the value/);
  });

  it('refuses a 64-bit length beyond 2^53 as a plain length', () => {
    expect(() => readLength(cursor(0x81, 0x7f, 0, 0, 0, 0, 0, 0, 0))).toThrow(RdbFormatError);
  });

  it('reads int8, int16 and int32 encoded strings as their decimal text', () => {
    expect(readString(cursor(0xc0, 0xf9)).toString()).toBe('-7');
    expect(readString(cursor(0xc1, 0x39, 0x30)).toString()).toBe('12345');
    expect(readString(cursor(0xc2, 0x00, 0x00, 0x00, 0x80)).toString()).toBe('-2147483648');
  });

  it('reads an LZF-encoded string', () => {
    expect(readString(cursor(0xc3, 5, 20, 0x00, 0x61, 0xe0, 10, 0x00)).toString()).toBe('a'.repeat(20));
  });

  it('refuses an unknown string encoding', () => {
    expect(() => readString(cursor(0xc4))).toThrow(/unknown string encoding 4 at byte 0/);
  });

  it('reads the special text doubles of RDB_TYPE_ZSET', () => {
    expect(readTextDouble(cursor(254))).toBe(Infinity);
    expect(readTextDouble(cursor(255))).toBe(-Infinity);
    expect(readTextDouble(cursor(3, 0x30, 0x2e, 0x35))).toBe(0.5);
  });

  it('reads every listpack integer width, signs included', () => {
    const entries = [
      [0x05, 1], // 7-bit 5
      [0xdf, 0xff, 2], // 13-bit -1
      [0xf1, 0x00, 0x80, 3], // 16-bit -32768
      [0xf2, 0xff, 0xff, 0x7f, 4], // 24-bit 8388607
      [0xf3, 0x00, 0x00, 0x00, 0x80, 5], // 32-bit -2^31
      [0xf4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 9], // 64-bit 2^63 - 1
      [0x82, 0x68, 0x69, 3], // "hi"
    ].flat();
    const lp = Buffer.from([0, 0, 0, 0, 7, 0, ...entries, 0xff]);
    lp.writeUInt32LE(lp.length, 0);
    expect(listpackItems(lp)).toEqual([5n, -1n, -32768n, 8388607n, -(2n ** 31n), 2n ** 63n - 1n, Buffer.from('hi')]);
  });

  it('reads ziplist immediate, int8 and int24 entries and a 14-bit string length', () => {
    const long = Buffer.alloc(100, 0x78);
    const entries = Buffer.concat([
      Buffer.from([0x00, 0xf1]), // immediate 0
      Buffer.from([0x02, 0xfd]), // immediate 12
      Buffer.from([0x02, 0xfe, 0x80]), // int8 -128
      Buffer.from([0x03, 0xf0, 0x00, 0x00, 0x80]), // int24 -2^23
      Buffer.from([0x05, 0x40, 100]), long, // 14-bit length 100
    ]);
    const zl = Buffer.concat([Buffer.alloc(10), entries, Buffer.from([0xff])]);
    zl.writeUInt32LE(zl.length, 0);
    zl.writeUInt16LE(5, 8);
    expect(ziplistItems(zl)).toEqual([0n, 12n, -128n, -(2n ** 23n), long]);
  });

  it('reads 16- and 64-bit intsets as signed integers', () => {
    const set16 = Buffer.from([2, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 0x01, 0x00]);
    expect(intsetItems(set16)).toEqual([-1n, 1n]);
    const set64 = Buffer.concat([Buffer.from([8, 0, 0, 0, 1, 0, 0, 0]), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x80])]);
    expect(intsetItems(set64)).toEqual([-(2n ** 63n)]);
  });
});

describe('DUMP payloads', () => {
  it('foots value bytes with the version and a CRC that restampPayload recomputes for another version', () => {
    const value = Buffer.from([0, 3, 0x61, 0x62, 0x63]); // a string "abc"
    const p10 = dumpPayload(value, 10);
    expect(payloadTypeByte(p10)).toBe(0);
    expect(payloadRdbVersion(p10)).toBe(10);
    expect(p10.readBigUInt64LE(p10.length - 8)).toBe(crc64(p10.subarray(0, p10.length - 8)));
    const p9 = restampPayload(p10, 9);
    expect(p9.subarray(0, value.length)).toEqual(value);
    expect(payloadRdbVersion(p9)).toBe(9);
    expect(p9.readBigUInt64LE(p9.length - 8)).toBe(crc64(p9.subarray(0, p9.length - 8)));
  });

  it("accepts every fixture server's own DUMP payloads as checksummed right, and not one with a flipped byte", () => {
    const dumps = FIXTURE_NAMES.flatMap((name) =>
      Object.values(loadManifest(name).databases).flatMap((keys) => Object.values(keys).flatMap((e) => (e.dump === undefined ? [] : [Buffer.from(e.dump, 'base64')]))));
    expect(dumps.every(payloadChecksumOk)).toBe(true);
    const flipped = Buffer.from(dumps[0]!);
    flipped.writeUInt8(flipped[1]! ^ 0x10, 1);
    expect(payloadChecksumOk(flipped)).toBe(false);
  });
});

// ---- The fixtures ----

describe.each(FIXTURE_NAMES)('the %s fixture', (name) => {
  let manifest: Manifest;
  let contents: FileContents;
  /** Records by "db/base64 key". */
  const byKey = new Map<string, RdbKey>();
  const entries = (): [string, ManifestEntry, RdbKey][] =>
    Object.entries(manifest.databases).flatMap(([db, keys]) =>
      Object.entries(keys).map(([key, entry]): [string, ManifestEntry, RdbKey] => {
        const record = byKey.get(`${db}/${key}`);
        if (!record) throw new Error(`${name}: no record for db ${db} key ${Buffer.from(key, 'base64').toString('latin1')}`);
        return [key, entry, record];
      }));
  const ofType = (type: ManifestEntry['type']) => entries().filter(([, entry]) => entry.type === type);

  beforeAll(async () => {
    manifest = loadManifest(name);
    contents = await readAll(fixturePath(name));
    for (const record of contents.keys) byKey.set(`${record.db}/${b64(record.key)}`, record);
  });

  it('reports the header version', () => {
    expect(contents.header.version).toBe(headerVersion(manifest.rdb_header));
  });

  it("yields exactly the manifest's keys in each database", () => {
    const found: Record<string, string[]> = {};
    for (const record of contents.keys) (found[String(record.db)] ??= []).push(b64(record.key));
    const wanted = Object.fromEntries(Object.entries(manifest.databases).map(([db, keys]) => [db, Object.keys(keys).sort()]));
    expect(Object.fromEntries(Object.entries(found).map(([db, keys]) => [db, keys.sort()]))).toEqual(wanted);
  });

  it("gives each key the manifest's expiry (6.2's \"relative\" ones: one of the dataset's fixed times)", () => {
    for (const [key, entry, record] of entries()) {
      if (entry.expire_at_ms === 'relative') expect(DATASET_EXPIRIES, key).toContain(record.expireAt);
      else expect(record.expireAt, key).toBe(entry.expire_at_ms);
    }
  });

  it.each(['string', 'list', 'set', 'zset', 'hash', 'stream'] as const)('decodes every %s to the manifest value', (type) => {
    const keys = ofType(type);
    // Streams came with Redis 5.0 (RDB 9); every other type is in every file.
    if (type === 'stream' && contents.header.version < 9) expect(keys).toEqual([]);
    else expect(keys.length).toBeGreaterThan(0);
    for (const [key, entry, record] of keys) {
      const decoded = decodeValue(record.value, record.rdbVersion);
      expect(decoded.type, key).toBe(type);
      expect(asManifestValue(decoded), Buffer.from(key, 'base64').toString('latin1')).toEqual(manifestValueOf(entry));
    }
  });

  it('decodes each hash field expiry as the manifest has it (none where it has none)', () => {
    for (const [key, entry, record] of ofType('hash')) {
      const decoded = decodeValue(record.value, record.rdbVersion);
      if (decoded.type !== 'hash') throw new Error('not a hash');
      const expiries: Record<string, number> = {};
      decoded.value.forEach(([field], i) => {
        const at = decoded.fieldExpireAt?.[i] ?? -1;
        if (at !== -1) expiries[b64(field)] = at;
      });
      expect(expiries, key).toEqual(entry.field_expire_at_ms ?? {});
    }
  });

  it("decodes each stream's last_id, entries_added and max_deleted_entry_id as the manifest has them", () => {
    for (const [key, entry, record] of ofType('stream')) {
      const decoded = decodeValue(record.value, record.rdbVersion);
      if (decoded.type !== 'stream') throw new Error('not a stream');
      expect(decoded.value.lastId, key).toBe(entry.last_id);
      expect(decoded.value.entriesAdded, key).toBe(entry.entries_added);
      expect(decoded.value.maxDeletedEntryId, key).toBe(entry.max_deleted_entry_id);
      expect(decoded.value.length, key).toBe(decoded.value.entries.length);
    }
  });

  it("decodes each stream's consumer groups, pending entries and consumers as the manifest has them", () => {
    for (const [key, entry, record] of ofType('stream')) {
      const decoded = decodeValue(record.value, record.rdbVersion);
      if (decoded.type !== 'stream') throw new Error('not a stream');
      expect(groupsAsManifest(decoded.value), key).toEqual(entry.groups);
    }
  });

  it("hands the manifest's function libraries to onFunction", () => {
    expect(contents.functions.map((code) => code.toString())).toEqual(manifest.functions ?? []);
  });

  it("names each key's type byte with the manifest's type", () => {
    for (const [key, entry, record] of entries()) expect(logicalType(record.type), key).toBe(entry.type);
  });

  it("makes each key's DUMP payload byte for byte from its value bytes and the file's version (servers before 2.6 had no DUMP)", () => {
    const dumped = entries().filter(([, entry]) => entry.dump !== undefined);
    expect(dumped.length).toBe(contents.header.version >= 6 ? entries().length : 0);
    for (const [key, entry, record] of dumped) {
      const ours = dumpPayload(record.value, contents.header.version);
      // Valkey 9's hash tables iterate in another order for DUMP than for SAVE: same content, other bytes.
      if (name === 'valkey-9.1' && entry.encoding === 'hashtable') {
        const theirs = Buffer.from(entry.dump as string, 'base64');
        expect(asManifestValue(decodeValue(ours.subarray(0, -10), 80))).toEqual(asManifestValue(decodeValue(theirs.subarray(0, -10), 80)));
        expect(ours.subarray(-10, -8)).toEqual(theirs.subarray(-10, -8));
      } else expect(b64(ours), Buffer.from(key, 'base64').toString('latin1')).toBe(entry.dump);
    }
  });

  it('yields the same records reading in 64-byte chunks (every value across chunk boundaries)', async () => {
    const small = await readAll(fixturePath(name), { chunkBytes: 64 });
    expect(small.keys).toEqual(contents.keys);
    expect(small.functions).toEqual(contents.functions);
  });
});

describe('restoring the 7.0 fixture on redis-server 7.0', () => {
  let restored: LocalServer;
  let loaded: LocalServer;
  let contents: FileContents;

  beforeAll(async () => {
    contents = await readAll(fixturePath('redis-7.0'));
    [restored, loaded] = await Promise.all([startRedis(), startRedis()]);
    // The reference: the same server version loading the file itself.
    copyFileSync(fixturePath('redis-7.0'), join(loaded.dir, 'dump.rdb'));
    await loaded.cmd('DEBUG', 'RELOAD', 'NOSAVE');
    let db = -1;
    for (const record of contents.keys) {
      if (record.db !== db) await restored.cmd('SELECT', (db = record.db));
      const ttl = record.expireAt === -1 ? 0 : record.expireAt;
      await restored.cmd('RESTORE', record.key, ttl, dumpPayload(record.value, contents.header.version), 'ABSTTL');
    }
  });
  afterAll(async () => {
    await Promise.all([restored?.stop(), loaded?.stop()]);
  });

  /** Per key "db/key": DEBUG DIGEST-VALUE and PEXPIRETIME. */
  async function keyspaceDigest(server: LocalServer): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const record of contents.keys) {
      await server.cmd('SELECT', record.db);
      const [digest] = (await server.cmd('DEBUG', 'DIGEST-VALUE', record.key)) as string[];
      out.set(`${record.db}/${b64(record.key)}`, `${digest} ${String(await server.cmd('PEXPIRETIME', record.key))}`);
    }
    return out;
  }

  it('holds every key, restored from its payload, with the same value and expiry as the server that loaded the file', async () => {
    expect(await loaded.cmd('DBSIZE')).toBeGreaterThan(0);
    const [mine, reference] = await Promise.all([keyspaceDigest(restored), keyspaceDigest(loaded)]);
    expect([...mine.values()].every((v) => !v.startsWith('0000000000000000000000000000000000000000 '))).toBe(true);
    expect(mine).toEqual(reference);
  });

  it('holds nothing else: each database has exactly the keys the file has', async () => {
    for (const db of [0, 3]) {
      await restored.cmd('SELECT', db);
      expect(await restored.cmd('DBSIZE'), `db ${db}`).toBe(contents.keys.filter((k) => k.db === db).length);
    }
  });
});

// ---- Corrupt and unusual input ----

describe('corrupt input', () => {
  it('refuses a text file as "not an RDB file", naming byte 0', async () => {
    const err = await readError(scratchFile('text.rdb', 'hello world, not a database\n'));
    expect(err).toBeInstanceOf(RdbFormatError);
    expect(err.message).toBe('not an RDB file: header "hello wor" at byte 0');
  });

  it('refuses a wrong magic with a 4-digit version', async () => {
    const file = readFileSync(fixturePath('redis-7.0'));
    file.write('HELLO', 0, 'latin1');
    const err = await readError(scratchFile('magic.rdb', file));
    expect(err).toBeInstanceOf(RdbFormatError);
    expect(err.message).toBe('not an RDB file: header "HELLO0010" at byte 0');
  });

  it('refuses RDB version 14 (Redis 8.8) as newer than it knows, and Redis 8.6\'s module key metadata', async () => {
    const err = await readError(scratchFile('v14.rdb', rdbFile(14)));
    expect(err).toBeInstanceOf(RdbFormatError);
    expect(err.message).toBe('RDB version 14 is newer than this reader knows (1 to 13): try RDB_READER=server');
    const meta = await readError(scratchFile('keymeta.rdb', rdbFile(13, Buffer.from([0xfe, 0x00, 0xf3, 1]), Buffer.from('abcd'), Buffer.from([0, 0]), rdbString('k'), rdbString('v'))));
    expect(meta.message).toMatch(/^module key metadata \(Redis 8\.6's KEY_META, opcode 0xf3\) at byte 11: not supported by this reader, try RDB_READER=server/);
  });

  it('refuses the first half of a fixture as truncated, naming where the file ends', async () => {
    const file = readFileSync(fixturePath('redis-7.2'));
    const half = Math.floor(file.length / 2);
    const err = await readError(scratchFile('half.rdb', file.subarray(0, half)), { chunkBytes: 4096 });
    expect(err).toBeInstanceOf(RdbFormatError);
    expect(err.message).toMatch(new RegExp(`^file ends at byte ${half} inside key ".*" \\(truncated\\?\\)$`));
  });

  it('refuses a file cut between two keys as ending before the EOF marker', async () => {
    const whole = rdbFile(11, Buffer.from([0xfe, 0x00, 0x00]), rdbString('k'), rdbString('v'));
    const cut = whole.subarray(0, whole.length - 9); // without EOF and checksum
    const err = await readError(scratchFile('between.rdb', cut));
    expect(err.message).toBe(`file ends at byte ${cut.length} before the EOF marker (truncated?)`);
  });

  it('refuses a string whose length runs past the end of the file, naming the key', async () => {
    const path = scratchFile('longstr.rdb', rdbFile(11, Buffer.from([0xfe, 0x00, 0x00]), rdbString('k'), Buffer.from([0x80, 0x7f, 0, 0, 0])));
    const err = await readError(path);
    expect(err.message).toMatch(/^file ends at byte \d+ inside key "k" \(truncated\?\)$/);
  });

  it('refuses a Valkey file of a version it does not know (VALKEY081), and Redis\'s types 23 to 25 in a Valkey file', async () => {
    const err = await readError(scratchFile('valkey81.rdb', rdbFile(81)));
    expect(err.message).toBe('RDB version 81 of Valkey (header "VALKEY081" at byte 0) is not one this reader knows (REDIS0001 to REDIS0013, VALKEY080): try RDB_READER=server');
    const type25 = await readError(scratchFile('valkey25.rdb', rdbFile(80, Buffer.from([0xfe, 0x00, 25]), rdbString('h'))));
    expect(type25.message).toBe('unknown value type 25 at byte 11 of a Valkey file');
  });

  it('refuses a file cut just before its checksum', async () => {
    const file = readFileSync(fixturePath('redis-7.2'));
    const err = await readError(scratchFile('nocrc.rdb', file.subarray(0, file.length - 3)));
    expect(err.message).toBe(`file ends at byte ${file.length - 3} inside the checksum (truncated?)`);
  });

  it('notices one flipped byte inside a string value by its CRC64, naming the offset of the checksum', async () => {
    const file = readFileSync(fixturePath('redis-7.4'));
    // Inside the value of the binary key: the run of all 256 byte values, where no structure is.
    const at = file.indexOf(Buffer.from([0x40, 0x41, 0x42, 0x43, 0x44, 0x45]));
    expect(at).toBeGreaterThan(0);
    file.writeUInt8(file[at + 2]! ^ 0x01, at + 2);
    const err = await readError(scratchFile('flipped.rdb', file));
    expect(err).toBeInstanceOf(RdbFormatError);
    expect(err.message).toMatch(new RegExp(`^CRC64 mismatch at byte ${file.length - 8}: file says 0x[0-9a-f]{16}, content gives 0x[0-9a-f]{16}`));
  });

  it('refuses an unknown value type, naming its offset', async () => {
    const path = scratchFile('type99.rdb', rdbFile(11, Buffer.from([0xfe, 0x00, 99]), rdbString('k'), rdbString('v')));
    const err = await readError(path);
    expect(err).toBeInstanceOf(RdbFormatError);
    expect(err.message).toBe('unknown value type 99 at byte 11');
  });

  it('refuses pre-release module values (type 6) and function libraries (opcode 0xf6)', async () => {
    const module = await readError(scratchFile('type6.rdb', rdbFile(11, Buffer.from([0xfe, 0x00, 6]), rdbString('k'))));
    expect(module.message).toMatch(/^module value in the pre-release format .* \(type 6\) at byte 11: not supported/);
    const fn = await readError(scratchFile('f6.rdb', rdbFile(10, Buffer.from([0xf6]), rdbString('code'))));
    expect(fn.message).toMatch(/^function library in the pre-release format .* \(opcode 0xf6\) at byte 9: not supported/);
  });

  it('accepts a checksum of 0 as "checksums disabled"', async () => {
    const file = readFileSync(fixturePath('redis-7.0'));
    file.fill(0, file.length - 8);
    const { keys } = await readAll(scratchFile('nocrc0.rdb', file));
    expect(keys.length).toBe(27);
  });
});

describe('empty collections, which redis-server drops at load', () => {
  const u32 = (n: number): Buffer => {
    const out = Buffer.alloc(4);
    out.writeUInt32LE(n);
    return out;
  };
  const ziplist = (count: number): Buffer => Buffer.concat([u32(11), u32(10), Buffer.from([count, 0, 0xff])]);
  const listpack = (count: number): Buffer => Buffer.concat([u32(7), Buffer.from([count, 0, 0xff])]);
  const value = (type: number, ...body: Buffer[]): Buffer => Buffer.concat([Buffer.from([type]), ...body]);

  it.each([
    ['a list of no items', value(1, rdbLength(0)), true],
    ['a hash listpack of no entries', value(16, rdbString(listpack(0))), true],
    ['a set listpack of no members', value(20, rdbString(listpack(0))), true],
    ['a quicklist of one empty ziplist', value(14, rdbLength(1), rdbString(ziplist(0))), true],
    ['a quicklist 2 of two empty listpacks', value(18, rdbLength(2), rdbLength(2), rdbString(listpack(0)), rdbLength(2), rdbString(listpack(0))), true],
    ['a quicklist 2 with one plain node', value(18, rdbLength(1), rdbLength(1), rdbString('x')), false],
    ['a quicklist 2 whose second node holds an item', value(18, rdbLength(2), rdbLength(2), rdbString(listpack(0)), rdbLength(2), rdbString(listpack(1))), false],
    ['an empty intset (the server refuses it instead)', value(11, rdbString(Buffer.concat([u32(2), u32(0)]))), false],
    ['an empty zipmap (the server refuses it instead)', value(9, rdbString(Buffer.from([0, 0xff]))), false],
    ['an empty string', value(0, rdbString('')), false],
    ['a stream of no entries', value(21, rdbLength(0)), false],
  ])('%s: %s', (_, bytes, empty) => {
    expect(isEmptyCollection(bytes)).toBe(empty);
  });
});

describe('opcodes and types no fixture has', () => {
  it("reads Valkey 9's own format: the VALKEY080 header, a HASH_2 (type 22: field, value, absolute expiry) and a SLOT_IMPORT record (0xf3)", async () => {
    const i64 = (n: bigint): Buffer => {
      const out = Buffer.alloc(8);
      out.writeBigInt64LE(n);
      return out;
    };
    const slotImport = Buffer.concat([Buffer.from([0xf3]), rdbString('j'.repeat(40)), rdbLength(1), rdbLength(0), rdbLength(5460)]);
    const hash2 = Buffer.concat([Buffer.from([22]), rdbString('h'), rdbLength(2), rdbString('f1'), rdbString('v1'), i64(2000000000123n), rdbString('f2'), rdbString('v2'), i64(-1n)]);
    const path = scratchFile('valkey80.rdb', rdbFile(80, Buffer.from([0xfe, 0x00]), slotImport, hash2, Buffer.from([0]), rdbString('k'), rdbString('v')));
    const { header, keys } = await readAll(path);
    expect(header.version).toBe(80);
    expect(keys.map((k) => [k.key.toString(), k.type, k.rdbVersion])).toEqual([['h', 22, 80], ['k', 0, 80]]);
    const hash = decodeValue(keys[0]!.value, 80);
    expect(hash).toEqual({ type: 'hash', value: [[Buffer.from('f1'), Buffer.from('v1')], [Buffer.from('f2'), Buffer.from('v2')]], fieldExpireAt: [2000000000123, -1] });
    // The same bytes in a Redis file are 7.4's pre-release layout, which they do not fit.
    expect(() => decodeValue(keys[0]!.value, 12)).toThrow(RdbFormatError);
  });

  it('reads a file older than RDB 5: it ends at its EOF opcode with no checksum, and its expiries are in seconds', async () => {
    const seconds = Buffer.alloc(4);
    seconds.writeInt32LE(2000000000);
    const path = scratchFile('v1.rdb', rdbFile(1, Buffer.from([0xfe, 0x00, 0xfd]), seconds, Buffer.from([0]), rdbString('k'), rdbString('v'), Buffer.from([1]), rdbString('l'), rdbLength(1), rdbString('x')));
    expect(readFileSync(path).at(-1)).toBe(0xff);
    const { header, keys } = await readAll(path);
    expect(header.version).toBe(1);
    expect(keys.map((k) => [k.key.toString(), k.expireAt, k.type, k.rdbVersion])).toEqual([['k', 2000000000000, 0, 1], ['l', -1, 1, 1]]);
  });

  const moduleBody = moduleValueBody('fixturemo', 3);
  const expiry = Buffer.from([0xfd, 0, 0, 0, 0]);
  expiry.writeInt32LE(2_000_000_000, 1);
  const moduleAux = moduleAuxRecord('fixturemo', 3);
  const file = rdbFile(
    11,
    Buffer.concat([Buffer.from([0xfa]), rdbString('redis-ver'), rdbString('7.2.0')]),
    moduleAux,
    Buffer.from([0xfe, 0x02, 0xfb, 0x02, 0x01]), // SELECTDB 2, RESIZEDB 2 1
    Buffer.from([0xf4, 0x01, 0x02, 0x01]), // SLOT_INFO slot 1, 2 keys, 1 with expiry
    expiry, Buffer.from([0xf8, 0x05, 0xf9, 0x07]), // EXPIRETIME (seconds), IDLE 5, FREQ 7
    Buffer.from([7]), rdbString('mod'), moduleBody,
    Buffer.from([0]), rdbString('plain'), rdbString('v'),
  );

  it('skips RESIZEDB, SLOT_INFO, IDLE and FREQ, names the module of MODULE_AUX, and keeps AUX, SELECTDB and EXPIRETIME', async () => {
    const modules: string[] = [];
    const { header, keys } = await readAll(scratchFile('opcodes.rdb', file), { chunkBytes: 64, onModuleAux: (module) => modules.push(module) });
    expect(modules).toEqual(['fixturemo']);
    expect(header.aux.get('redis-ver')?.toString()).toBe('7.2.0');
    expect(keys.map((k) => [k.db, k.key.toString(), k.expireAt, k.type])).toEqual([
      [2, 'mod', 2_000_000_000_000, 7],
      [2, 'plain', -1, 0],
    ]);
  });

  it('captures a module value whole by walking its opcodes, and decodes its type name', async () => {
    const { keys } = await readAll(scratchFile('module.rdb', file));
    expect(keys[0]!.value).toEqual(Buffer.concat([Buffer.from([7]), moduleBody]));
    expect(decodeValue(keys[0]!.value)).toEqual({ type: 'module', value: { moduleType: 'fixturemo', encodingVersion: 3 } });
  });
});

describe('reading', () => {
  it('holds a key and an AUX value far larger than the chunk size, growing its window to fit', async () => {
    const bigKey = Buffer.alloc(100_000, 0x6b);
    const bigAux = Buffer.alloc(50_000, 0x61);
    const path = scratchFile('bigkey.rdb', rdbFile(11, Buffer.concat([Buffer.from([0xfa]), rdbString('big'), rdbString(bigAux)]),
      Buffer.from([0xfe, 0x00, 0x00]), rdbString(bigKey), rdbString('v')));
    const { header, keys } = await readAll(path, { chunkBytes: 64 });
    expect(header.aux.get('big')).toEqual(bigAux);
    expect(keys.map((k) => k.key)).toEqual([bigKey]);
  });

  it('closes the file when the caller stops after the first key', async () => {
    const path = fixturePath('redis-7.0');
    /** Descriptors of this process open on the fixture. */
    const handlesOnFixture = (): number =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === path;
        } catch {
          return false; // closed meanwhile
        }
      }).length;
    for await (const record of readRdb(path)) {
      expect(handlesOnFixture()).toBe(1);
      expect(record.key.length).toBeGreaterThan(0);
      break;
    }
    expect(handlesOnFixture()).toBe(0);
  });
});

describe('decoding value types no fixture has', () => {
  const text = (buffers: Buffer[]): string[] => buffers.map((b) => b.toString());
  const pairsText = (pairs: [Buffer, Buffer][]): string[][] => pairs.map((pair) => text(pair));

  it('decodes a zipmap hash (type 9), skipping the free bytes after a value', () => {
    const zipmap = Buffer.from('\x02\x03foo\x03\x01barX\x05hello\x05\x00world\xff', 'latin1');
    const decoded = decodeValue(Buffer.concat([Buffer.from([9]), rdbString(zipmap)]));
    expect(decoded.type === 'hash' && pairsText(decoded.value)).toEqual([['foo', 'bar'], ['hello', 'world']]);
  });

  it('decodes a linked list (type 1) and a ziplist list (type 10) with integers as text', () => {
    const linked = decodeValue(Buffer.concat([Buffer.from([1, 2]), rdbString('a'), Buffer.from([0xc0, 0xfb])]));
    expect(linked.type === 'list' && text(linked.value)).toEqual(['a', '-5']);
    const zl = Buffer.concat([Buffer.alloc(10), Buffer.from([0x00, 0x01, 0x78, 0x03, 0xf3]), Buffer.from([0xff])]);
    zl.writeUInt32LE(zl.length, 0);
    zl.writeUInt16LE(2, 8);
    const ziplist = decodeValue(Buffer.concat([Buffer.from([10]), rdbString(zl)]));
    expect(ziplist.type === 'list' && text(ziplist.value)).toEqual(['x', '2']);
  });

  it('decodes a zset with text doubles (type 3) in score order, infinities included', () => {
    const value = Buffer.concat([Buffer.from([3, 3]), rdbString('top'), Buffer.from([254]), rdbString('mid'), Buffer.from([3]),
      Buffer.from('2.5'), rdbString('low'), Buffer.from([255])]);
    const decoded = decodeValue(value);
    expect(decoded.type === 'zset' && decoded.value.map(([m, score]) => [m.toString(), score])).toEqual([['low', -Infinity], ['mid', 2.5], ['top', Infinity]]);
  });

  it('decodes quicklist 2 nodes of both containers: a plain node is one item', () => {
    const value = Buffer.concat([Buffer.from([18, 2]), Buffer.from([2]), rdbString(listpack('a', 7)), Buffer.from([1]), rdbString('big item')]);
    const decoded = decodeValue(value);
    expect(decoded.type === 'list' && text(decoded.value)).toEqual(['a', '7', 'big item']);
  });

  it('decodes the 7.4 release-candidate hashes with absolute field expiries (types 22 and 23)', () => {
    const at = 1_900_000_000_000;
    const table = decodeValue(Buffer.concat([Buffer.from([22, 2]), rdbLength(at), rdbString('f1'), rdbString('v1'), rdbLength(0), rdbString('f2'), rdbString('v2')]));
    expect(table).toEqual({ type: 'hash', value: [[Buffer.from('f1'), Buffer.from('v1')], [Buffer.from('f2'), Buffer.from('v2')]], fieldExpireAt: [at, -1] });
    const packed = decodeValue(Buffer.concat([Buffer.from([23]), rdbString(listpack('f', 'v', 0))]));
    expect(packed).toEqual({ type: 'hash', value: [[Buffer.from('f'), Buffer.from('v')]], fieldExpireAt: [-1] });
  });

  it('refuses a value with bytes left over after it, naming the offset', () => {
    expect(() => decodeValue(Buffer.concat([Buffer.from([0]), rdbString('abc'), Buffer.from([0])]))).toThrow(/1 byte left over at byte 5 of the value/);
  });
});

// ---- A big file ----

describe('a big file written by redis-server', () => {
  const KEYS = 200_000;
  const LIST_ITEMS = 2_000_000;
  let server: LocalServer;
  let path: string;

  beforeAll(async () => {
    server = await startRedis();
    // Values from a PRNG, so LZF cannot squeeze the file small.
    await server.cmd('EVAL', `
      for first = 1, tonumber(ARGV[1]), 1000 do
        local args = {}
        for i = first, math.min(first + 999, tonumber(ARGV[1])) do
          local parts = {}
          for p = 1, 24 do parts[p] = string.format('%08x', math.random(0, 2147483647)) end
          args[#args + 1] = 'key:' .. i; args[#args + 1] = table.concat(parts)
        end
        redis.call('MSET', unpack(args))
      end
      for first = 1, tonumber(ARGV[2]), 5000 do
        local items = {}
        for i = first, math.min(first + 4999, tonumber(ARGV[2])) do items[#items + 1] = string.format('%x', math.random(0, 2147483647)) .. i end
        redis.call('RPUSH', 'big:list', unpack(items))
      end
      return 1`, 0, KEYS, LIST_ITEMS);
    await server.cmd('SAVE');
    path = join(server.dir, 'dump.rdb');
  }, 60_000);
  afterAll(async () => server?.stop());

  it('reads 200,000 keys and a 2,000,000-item list in 64 KiB chunks with RSS growth under 60 MB beyond the largest value', async () => {
    const size = statSync(path).size; // just written by SAVE, so in the page cache: the timing is the reader's own
    const before = process.memoryUsage().rss;
    let peak = before;
    let largest = 0;
    let count = 0;
    let listValue: Buffer | undefined;
    const started = performance.now();
    for await (const record of readRdb(path, { chunkBytes: 65536 })) {
      count++;
      largest = Math.max(largest, record.value.length);
      if (record.key.toString() === 'big:list') listValue = record.value;
      if (count % 2000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
    }
    const seconds = (performance.now() - started) / 1000;
    peak = Math.max(peak, process.memoryUsage().rss);
    const growth = peak - before;
    console.log(
      `big file: ${(size / 1e6).toFixed(1)} MB, ${count} keys, largest value ${(largest / 1e6).toFixed(1)} MB, ` +
        `read in ${seconds.toFixed(2)} s = ${(size / 1e6 / seconds).toFixed(0)} MB/s, RSS growth ${(growth / 1e6).toFixed(1)} MB`,
    );
    expect(count).toBe(KEYS + 1);
    expect(listValue?.length).toBe(largest);
    expect(growth).toBeLessThan(largest + 60e6);
  });

  it("decodes the big list to its 2,000,000 items", async () => {
    for await (const record of readRdb(path)) {
      if (record.key.toString() !== 'big:list') continue;
      const decoded = decodeValue(record.value, record.rdbVersion);
      if (decoded.type !== 'list') throw new Error(`big:list decoded as a ${decoded.type}`);
      expect(decoded.value.length).toBe(LIST_ITEMS);
      expect(decoded.value.at(-1)?.toString()).toMatch(new RegExp(`^[0-9a-f]+${LIST_ITEMS}$`));
    }
  });
});
