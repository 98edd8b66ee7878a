// DUMP payload headers and footers (lib/rdb/payload.ts), grounded in the payloads real servers wrote: every
// DUMP in the five fixture manifests (Redis 6.2 to 7.4, Valkey 8.0). No server is started.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { crc64 } from '../lib/rdb/crc64.js';
import { RdbFormatError } from '../lib/rdb/errors.js';
import { dumpPayload, FOOTER_BYTES, payloadChecksumOk, payloadRdbVersion, payloadTypeByte, restampPayload, writeDumpPayload } from '../lib/rdb/payload.js';
import { RDB_TYPE } from '../lib/rdb/types.js';
import { parseDumpHeader } from '../lib/net/scripts.js';
import type { Manifest, ManifestEntry } from './helpers/manifest.js';

// Read here rather than with helpers/manifest.ts, which loads the server helpers (and a Redis client) too.
const readManifest = (name: string): Manifest => JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'rdb', `${name}.json`), 'utf8')) as Manifest;

const FIXTURES = ['redis-6.2', 'redis-7.0', 'redis-7.2', 'redis-7.4', 'valkey-8.0'] as const;

interface Dump {
  fixture: string;
  /** The RDB version in the fixture's file header (REDIS0009 → 9). */
  version: number;
  key: string;
  entry: ManifestEntry;
  payload: Buffer;
}

const DUMPS: Dump[] = FIXTURES.flatMap((fixture) => {
  const manifest = readManifest(fixture);
  const version = Number(manifest.rdb_header.replace(/^REDIS/, '')); // the modern fixtures: REDIS and 4 digits
  return Object.entries(manifest.databases).flatMap(([db, keys]) =>
    Object.entries(keys).map(([key64, entry]) => ({ fixture, version, key: `${fixture} db${db} ${Buffer.from(key64, 'base64').toString('latin1')}`, entry, payload: Buffer.from(entry.dump as string, 'base64') })),
  );
});

/** The RDB type byte each server's DUMP starts with for a type and encoding, per src/rdb.h. */
function expectedTypeByte(d: Dump): number {
  const { type, encoding } = d.entry;
  const v = d.version;
  switch (type) {
    case 'string':
      return RDB_TYPE.STRING;
    case 'list':
      return v >= 10 ? RDB_TYPE.LIST_QUICKLIST_2 : RDB_TYPE.LIST_QUICKLIST;
    case 'set':
      if (encoding === 'intset') return RDB_TYPE.SET_INTSET;
      if (encoding === 'listpack') return RDB_TYPE.SET_LISTPACK;
      return RDB_TYPE.SET;
    case 'zset':
      if (encoding === 'skiplist') return RDB_TYPE.ZSET_2;
      return v >= 10 ? RDB_TYPE.ZSET_LISTPACK : RDB_TYPE.ZSET_ZIPLIST;
    case 'hash':
      if (encoding === 'listpackex') return RDB_TYPE.HASH_LISTPACK_EX;
      if (encoding === 'hashtable') return d.entry.field_expire_at_ms ? RDB_TYPE.HASH_METADATA : RDB_TYPE.HASH;
      return v >= 10 ? RDB_TYPE.HASH_LISTPACK : RDB_TYPE.HASH_ZIPLIST;
    case 'stream':
      return v >= 11 ? RDB_TYPE.STREAM_LISTPACKS_3 : v === 10 ? RDB_TYPE.STREAM_LISTPACKS_2 : RDB_TYPE.STREAM_LISTPACKS;
  }
}

const flipped = (payload: Buffer, at: number): Buffer => {
  const copy = Buffer.from(payload);
  copy[at] = (copy[at] as number) ^ 0x01;
  return copy;
};

describe('the fixture payloads', () => {
  it('are many, from every fixture, of every type', () => {
    expect(DUMPS.length).toBeGreaterThan(130);
    for (const fixture of FIXTURES) expect(DUMPS.filter((d) => d.fixture === fixture).length, fixture).toBeGreaterThanOrEqual(27);
    expect(new Set(DUMPS.map((d) => d.entry.type))).toEqual(new Set(['string', 'list', 'set', 'zset', 'hash', 'stream']));
  });
});

describe('payloadRdbVersion', () => {
  it("reads each server's DUMP version as the RDB version of the file it saved (9 for 6.2 up to 12 for 7.4; 11 for Valkey 8.0)", () => {
    const versions = Object.fromEntries(FIXTURES.map((f) => [f, [...new Set(DUMPS.filter((d) => d.fixture === f).map((d) => payloadRdbVersion(d.payload)))]]));
    expect(versions).toEqual({ 'redis-6.2': [9], 'redis-7.0': [10], 'redis-7.2': [11], 'redis-7.4': [12], 'valkey-8.0': [11] });
  });

  it('refuses a payload with no room for a footer after a type byte', () => {
    expect(() => payloadRdbVersion(Buffer.alloc(FOOTER_BYTES))).toThrow(RdbFormatError);
    expect(() => payloadRdbVersion(Buffer.alloc(0))).toThrow(/0 bytes has no room for its footer/);
    expect(payloadRdbVersion(Buffer.from([0, 0x0b, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]))).toBe(11);
  });
});

describe('payloadTypeByte', () => {
  it('gives, for every fixture payload, the RDB type byte rdb.h assigns its type and encoding on that version', () => {
    const wrong = DUMPS.filter((d) => payloadTypeByte(d.payload) !== expectedTypeByte(d)).map((d) => `${d.key}: ${payloadTypeByte(d.payload)}, expected ${expectedTypeByte(d)}`);
    expect(wrong).toEqual([]);
  });

  it('tells the encodings that changed across versions apart', () => {
    const typeOf = (fixture: string, key: string): number => payloadTypeByte((DUMPS.find((d) => d.fixture === fixture && d.key.endsWith(` ${key}`)) as Dump).payload);
    expect(typeOf('redis-6.2', 'list:small')).toBe(RDB_TYPE.LIST_QUICKLIST);
    expect(typeOf('redis-7.0', 'list:small')).toBe(RDB_TYPE.LIST_QUICKLIST_2);
    expect(typeOf('redis-6.2', 'hash:small')).toBe(RDB_TYPE.HASH_ZIPLIST);
    expect(typeOf('redis-7.4', 'hash:small')).toBe(RDB_TYPE.HASH_LISTPACK);
    expect(typeOf('redis-7.4', 'hash:fieldttl')).toBe(RDB_TYPE.HASH_LISTPACK_EX);
    expect(typeOf('redis-7.4', 'hash:fieldttl:big')).toBe(RDB_TYPE.HASH_METADATA);
    expect(typeOf('redis-7.0', 'set:small')).toBe(RDB_TYPE.SET);
    expect(typeOf('redis-7.2', 'set:small')).toBe(RDB_TYPE.SET_LISTPACK);
    expect(typeOf('redis-7.0', 'stream:a')).toBe(RDB_TYPE.STREAM_LISTPACKS_2);
    expect(typeOf('valkey-8.0', 'stream:a')).toBe(RDB_TYPE.STREAM_LISTPACKS_3);
  });

  it('refuses an empty payload, and reads the first byte of any other', () => {
    expect(() => payloadTypeByte(Buffer.alloc(0))).toThrow(RdbFormatError);
    expect(payloadTypeByte(Buffer.from([0x13]))).toBe(0x13);
  });
});

describe('payloadChecksumOk', () => {
  it("accepts every payload a real server wrote (none of them with checksums off)", () => {
    expect(DUMPS.filter((d) => !payloadChecksumOk(d.payload)).map((d) => d.key)).toEqual([]);
    expect(DUMPS.some((d) => d.payload.subarray(-8).every((b) => b === 0))).toBe(false);
  });

  it('refuses each payload with one bit flipped in its type byte, its value, its version or its CRC', () => {
    for (const d of DUMPS) {
      const n = d.payload.length;
      for (const at of [0, Math.floor((n - FOOTER_BYTES) / 2), n - FOOTER_BYTES, n - 1]) {
        expect(payloadChecksumOk(flipped(d.payload, at)), `${d.key}, byte ${at} of ${n}`).toBe(false);
      }
    }
  });

  it('accepts a CRC of eight zero bytes whatever the content (a server with rdbchecksum no)', () => {
    const d = DUMPS[0] as Dump;
    const unchecked = flipped(d.payload, 1);
    unchecked.fill(0, unchecked.length - 8);
    expect(payloadChecksumOk(unchecked)).toBe(true);
  });

  it('refuses a payload too short to hold a type byte and a footer', () => {
    expect(payloadChecksumOk(Buffer.alloc(0))).toBe(false);
    expect(payloadChecksumOk(Buffer.alloc(FOOTER_BYTES))).toBe(false);
    expect(payloadChecksumOk(Buffer.alloc(FOOTER_BYTES + 1)), 'a type byte and a zero CRC').toBe(true);
  });
});

describe('dumpPayload', () => {
  it("rebuilds every server's DUMP byte for byte from its value bytes and its version", () => {
    const rebuilt = DUMPS.filter((d) => !dumpPayload(d.payload.subarray(0, d.payload.length - FOOTER_BYTES), d.version).equals(d.payload));
    expect(rebuilt.map((d) => d.key)).toEqual([]);
  });

  it('foots the value with the version little-endian and the CRC-64 of all before it, little-endian', () => {
    const payload = dumpPayload(Buffer.from([0x00, 0x03, 0x61, 0x62, 0x63]), 0x0102);
    expect(payload.length).toBe(5 + FOOTER_BYTES);
    expect([...payload.subarray(5, 7)]).toEqual([0x02, 0x01]);
    expect(payload.readBigUInt64LE(7)).toBe(crc64(payload.subarray(0, 7)));
  });

  it('writes the same bytes into a larger buffer at an offset, touching nothing around them', () => {
    const d = DUMPS.find((x) => x.entry.type === 'zset') as Dump;
    const value = d.payload.subarray(0, d.payload.length - FOOTER_BYTES);
    const target = Buffer.alloc(d.payload.length + 7, 0xee);
    writeDumpPayload(value, d.version, target, 3);
    expect(target.subarray(3, 3 + d.payload.length).equals(d.payload)).toBe(true);
    expect([...target.subarray(0, 3), ...target.subarray(3 + d.payload.length)]).toEqual([0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]);
  });
});

describe('restampPayload', () => {
  it('gives a 7.4 payload an older version with a CRC to match, the value bytes unchanged', () => {
    for (const d of DUMPS.filter((x) => x.fixture === 'redis-7.4')) {
      const old = restampPayload(d.payload, 9);
      expect(payloadRdbVersion(old), d.key).toBe(9);
      expect(payloadChecksumOk(old), d.key).toBe(true);
      expect(old.length).toBe(d.payload.length);
      expect(old.subarray(0, -FOOTER_BYTES).equals(d.payload.subarray(0, -FOOTER_BYTES)), d.key).toBe(true);
      expect(old.subarray(-8).equals(d.payload.subarray(-8)), `${d.key}: the CRC must change with the version`).toBe(false);
    }
  });

  it("turns one server's payload into another's when only the version differs (7.2 into 7.4's, 7.4 into 6.2's)", () => {
    const same = (a: string, b: string, key: string): [Dump, Dump] => [
      DUMPS.find((d) => d.fixture === a && d.key.endsWith(` ${key}`)) as Dump,
      DUMPS.find((d) => d.fixture === b && d.key.endsWith(` ${key}`)) as Dump,
    ];
    const [newer, older] = same('redis-7.2', 'redis-7.4', 'str:plain');
    expect(restampPayload(newer.payload, 12).equals(older.payload)).toBe(true);
    const [v12, v9] = same('redis-7.4', 'redis-6.2', 'set:int');
    expect(restampPayload(v12.payload, 9).equals(v9.payload)).toBe(true);
  });

  it('restamping with its own version gives the payload back', () => {
    for (const d of DUMPS) expect(restampPayload(d.payload, d.version).equals(d.payload), d.key).toBe(true);
  });

  it('refuses a payload too short for its footer', () => {
    expect(() => restampPayload(Buffer.alloc(FOOTER_BYTES), 9)).toThrow(RdbFormatError);
  });
});

describe('parseDumpHeader', () => {
  it("splits a DUMP read's \"expire-at,length;\" records over the payloads laid end to end", () => {
    const [a, b] = [DUMPS[0] as Dump, DUMPS[1] as Dump];
    const header = `-1,${a.payload.length};2000000000123,${b.payload.length};-2,0;-3,11;`;
    const records = parseDumpHeader(header, Buffer.concat([a.payload, b.payload, Buffer.from('ERR denied!')]));
    expect(records.map((r) => r.expireAt)).toEqual([-1, 2000000000123, -2, -3]);
    expect(records[0]?.payload.equals(a.payload)).toBe(true);
    expect(records[1]?.payload.equals(b.payload)).toBe(true);
    expect(records[2]?.payload.length).toBe(0);
    expect(records[3]?.payload.toString()).toBe('ERR denied!');
    expect(parseDumpHeader('', Buffer.alloc(0))).toEqual([]);
  });
});
