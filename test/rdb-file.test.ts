// SOURCE_RDB_FILE with the default RDB_READER=native: .rdb files written by real Redis 2.0 to 8.0 and Valkey 8.0
// and 9.1 servers (test/fixtures/rdb), and files built here for what no fixture holds (empty collections, module
// auxiliary data, Redis 8.6 streams), read by our own reader and RESTOREd into the local redis-server with no server
// on the source side. Values a 7.0 target reads are restored (payloads stamped with its RDB version), the others
// decoded and written by type, and what it cannot hold is said. The other modes with a file: rdb-file-modes.test.ts.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oldestVersionReading, stampFor, typeReadableBy } from '../lib/rdb/types.js';
import { differenceFromManifest, headerVersion, manifestKeys, rdbFixture, readManifest, type ManifestEntry } from './helpers/manifest.js';
import { moduleAuxRecord, moduleValueBody, rdbFile, rdbLength, rdbString } from './helpers/rdb-files.js';
import { runDir } from './helpers/fixtures.js';
import { parseSummary } from './helpers/inspect.js';
import { digest } from './helpers/sample-data.js';
import { runMigrator, startRedis, type LocalServer } from './helpers/servers.js';

const fixture = rdbFixture;
const manifest = readManifest;

describe('our reader (the default RDB_READER) into Redis 7.0', () => {
  let target: LocalServer;
  beforeAll(async () => {
    target = await startRedis();
  });
  afterAll(async () => {
    await target.stop();
  });
  const settings = (file: string, extra: Record<string, string | number> = {}): Record<string, string | number> => ({
    SOURCE_RDB_FILE: file, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0, ...extra,
  });

  /** A server that loaded the file itself, to compare with: what redis-server 7.0 makes of it. */
  async function loadedByRedis(name: string): Promise<LocalServer> {
    const dir = runDir();
    copyFileSync(fixture(name), join(dir, 'dump.rdb'));
    return startRedis(['--dir', dir, '--dbfilename', 'dump.rdb']);
  }

  it.each(['redis-2.0', 'redis-2.4', 'redis-2.6', 'redis-2.8-nochecksum', 'redis-3.2', 'redis-4.0', 'redis-5.0-lfu', 'redis-6.2', 'redis-7.0'])('%s: every key of both databases, equal to what redis-server loads from the file', async (name) => {
    await target.cmd('FLUSHALL');
    const run = await runMigrator(settings(fixture(name)), runDir());
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const reference = await loadedByRedis(name);
    try {
      for (const db of ['0', '3']) {
        await Promise.all([target.cmd('SELECT', db), reference.cmd('SELECT', db)]);
        expect(await digest(target), `db ${db}`).toBe(await digest(reference));
        // A key that expired since the save is left out, by the server at load as by us.
        const live = Object.values(manifest(name).databases[db] ?? {}).filter((entry) => !entry.expired_at_load);
        expect(await target.cmd('DBSIZE')).toBe(live.length);
      }
    } finally {
      await target.cmd('SELECT', 0);
      await reference.stop();
    }
    expect(run.stdout).toMatch(/^Database 0 -> 0$/m);
    expect(run.stdout).toMatch(/^Database 3 -> 3$/m);
  });

  it.each(['redis-7.2', 'valkey-8.0', 'redis-7.4', 'redis-8.0', 'valkey-9.1'])('%s (RDB 11, 12 and Valkey 9\'s 80): every key restored into 7.0 equal to the manifest, restamped or decoded per key, and the summary says how many went each way', async (name) => {
    await target.cmd('FLUSHALL');
    const dir = runDir();
    const run = await runMigrator(settings(fixture(name), { SOURCE_REDIS_DB_INDEX: 0 }), dir);
    const keys = manifestKeys(readManifest(name));
    const version = headerVersion(readManifest(name).rdb_header);
    const restamped = keys.filter(([, entry]) => typeReadableBy(Buffer.from(entry.dump as string, 'base64')[0] ?? 255, 10, version));
    expect(restamped.length).toBeGreaterThan(0);
    expect(restamped.length).toBeLessThan(keys.length);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: keys.length, skipped: 0, failed: 0, vanished: 0 });
    expect(run.stdout).toContain(`Crossing RDB versions: ${restamped.length} keys restored with the target's older version stamp (their encodings are ones it reads), ${keys.length - restamped.length} written by type`);
    for (const [key, entry] of keys) expect(await differenceFromManifest(target, key, entry), key.toString()).toBeNull();
    // Field expiries have no place on 7.0: each such hash is named in the log, and the summary counts them.
    const log = readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8');
    const withFieldExpiries = keys.filter(([, entry]) => entry.field_expire_at_ms !== undefined);
    expect(withFieldExpiries.length).toBe(['redis-7.4', 'redis-8.0', 'valkey-9.1'].includes(name) ? 2 : 0);
    for (const [key] of withFieldExpiries) expect(log).toMatch(new RegExp(`WARNING - Migrated key \\|${key.toString()}\\| without \\d hash-field expir`));
    if (withFieldExpiries.length > 0) expect(run.stdout).toContain(`${withFieldExpiries.length} keys were restored without what the target cannot hold (hash-field expiries`);
    else expect(run.stdout).not.toContain('hash-field expiries');
  });

  it.each(['redis-7.0', 'valkey-8.0'])('%s: the function library in the file is loaded on the target, not silently dropped', async (name) => {
    await target.cmd('FLUSHALL');
    await target.cmd('FUNCTION', 'FLUSH');
    const run = await runMigrator(settings(fixture(name)), runDir());
    const [code] = manifest(name).functions ?? [];
    expect(manifest(name).functions).toHaveLength(1);
    expect(run.stdout).toMatch(/^Functions: 1 library loaded, 0 skipped \(already on the target\), 0 failed$/m);
    const listed = (await target.cmd('FUNCTION', 'LIST', 'WITHCODE')) as unknown[][];
    expect(listed.map((entry) => entry[entry.indexOf('library_code') + 1])).toEqual([code]);
    expect(await target.cmd('FCALL', 'fixture_echo', 0, 'hello')).toBe('hello');
  });

  it('filters and skip-existing as for a server: MATCH, KEY_EXCLUDE_PATTERN, SCAN_TYPE; a key already there is left alone', async () => {
    await target.cmd('FLUSHALL');
    await target.cmd('SET', 'str:plain', 'mine');
    const run = await runMigrator(settings(fixture('redis-7.0'), { SOURCE_REDIS_DB_INDEX: 0, SCAN_MATCH_PATTERN: 'str:*', KEY_EXCLUDE_PATTERN: 'str:lzf', SCAN_TYPE: 'string' }), runDir());
    const strings = Object.keys(manifest('redis-7.0').databases['0'] ?? {}).map((k) => Buffer.from(k, 'base64').toString()).filter((k) => k.startsWith('str:'));
    expect(run.code, run.stdout).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: strings.length - 2, skipped: 1, failed: 0, vanished: 0 });
    expect(run.stdout).toMatch(/^Number of excluded keys: 1$/m);
    expect(await target.cmd('GET', 'str:plain')).toBe('mine');
    expect(await target.cmd('EXISTS', 'str:lzf')).toBe(0);
  });

  it('a file with one byte flipped: refused before any key is written, in one line naming the offset; exit 1', async () => {
    await target.cmd('FLUSHALL');
    const dir = runDir();
    const bytes = readFileSync(fixture('redis-7.0'));
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
    writeFileSync(join(dir, 'broken.rdb'), bytes);
    const run = await runMigrator(settings(join(dir, 'broken.rdb')), dir);
    expect(run.code).toBe(1);
    expect(run.stdout.trim().split('\n')).toEqual([expect.stringMatching(/^Error reading SOURCE_RDB_FILE : CRC64 mismatch at byte \d+: .*nothing was copied$/)]);
    expect(Number(await target.cmd('DBSIZE')), 'a corrupt file wrote keys').toBe(0);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('empty collections in every encoding (as in Redis\'s own test files): left out and counted, as redis-server leaves them out when it loads the file; exit 0', async () => {
    await target.cmd('FLUSHALL');
    const dir = runDir();
    const u32 = (n: number): Buffer => Buffer.from([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24]);
    const emptyZiplist = Buffer.concat([u32(11), u32(10), Buffer.from([0, 0, 0xff])]);
    const emptyListpack = Buffer.concat([u32(7), Buffer.from([0, 0, 0xff])]);
    const key = (type: number, name: string, ...body: Buffer[]): Buffer => Buffer.concat([Buffer.from([type]), rdbString(name), ...body]);
    const file = rdbFile(10, Buffer.from([0xfe, 0x00]),
      key(1, 'list'), Buffer.from([0]), key(2, 'set'), Buffer.from([0]), key(4, 'hash'), Buffer.from([0]), key(5, 'zset'), Buffer.from([0]),
      key(10, 'ziplist', rdbString(emptyZiplist)),
      key(16, 'listpack', rdbString(emptyListpack)), key(18, 'quicklist', Buffer.from([1, 2]), rdbString(emptyListpack)),
      key(0, 'plain', rdbString('v')));
    writeFileSync(join(dir, 'empty.rdb'), file);
    const run = await runMigrator(settings(join(dir, 'empty.rdb'), { SUMMARY_JSON_FILE: join(dir, 'summary.json') }), dir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 1, skipped: 0, failed: 0, vanished: 0 });
    expect((JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as { counts: unknown }).counts).toEqual({ restored: 1, skipped: 0, failed: 0, vanished: 0, excluded: 0, empty: 7 });
    expect(run.stdout).toMatch(/^7 keys in the file are empty collections, which redis-server drops when it loads the file: left out$/m);
    expect(await target.cmd('KEYS', '*')).toEqual(['plain']);
    const loadDir = runDir();
    writeFileSync(join(loadDir, 'dump.rdb'), file);
    const reference = await startRedis(['--dir', loadDir, '--dbfilename', 'dump.rdb']);
    try {
      expect(await reference.cmd('KEYS', '*')).toEqual(['plain']);
    } finally {
      await reference.stop();
    }
  });

  it("a Redis 8.6 file (RDB 13): its streams (type 26) go to 7.0 by type, each losing its IDMP history is named in the log and counted; exit 0", async () => {
    await target.cmd('FLUSHALL');
    const dir = runDir();
    const [key, entry] = manifestKeys(readManifest('redis-7.4')).find(([k]) => k.toString() === 'stream:a') ?? [];
    const dump = Buffer.from(entry?.dump as string, 'base64');
    expect(dump[0]).toBe(21);
    // Redis 8.6 saves a stream as type 26: type 21's layout, then its IDMP state (here one producer, one ID).
    const idmp = Buffer.concat([rdbLength(100), rdbLength(1000), rdbLength(1), rdbString('p1'), rdbLength(1), rdbString('i1'), rdbLength(1700000000001), rdbLength(0), rdbLength(1), rdbLength(0)]);
    const stream = Buffer.concat([Buffer.from([26]), rdbString('stream:a'), dump.subarray(1, dump.length - 10), idmp]);
    writeFileSync(join(dir, 'v13.rdb'), rdbFile(13, Buffer.from([0xfe, 0x00]), stream, Buffer.from([0]), rdbString('k'), rdbString('v')));
    const run = await runMigrator(settings(join(dir, 'v13.rdb')), dir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 2, skipped: 0, failed: 0, vanished: 0 });
    expect(run.stdout).toContain('Crossing RDB versions: 1 keys restored with the target\'s older version stamp (their encodings are ones it reads), 1 written by type');
    expect(run.stdout).toMatch(/^1 keys were restored without what the target cannot hold .*IDMP/m);
    expect(readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8')).toMatch(/WARNING - Migrated key \|stream:a\| without the IDMP history of 1 idempotent producer \(XADD IDMP; .* reads RDB 10, Redis 8\.6 or later holds it\)/);
    expect(await differenceFromManifest(target, key as Buffer, entry as ManifestEntry)).toBeNull();
  });

  it("a module's auxiliary data, which no command can copy: the keys are copied, the module is named in one line, exit 2", async () => {
    await target.cmd('FLUSHALL');
    const dir = runDir();
    writeFileSync(join(dir, 'aux.rdb'), rdbFile(11, moduleAuxRecord('fixturemo', 3), Buffer.from([0xfe, 0x00, 0]), rdbString('plain'), rdbString('v')));
    const run = await runMigrator(settings(join(dir, 'aux.rdb')), dir);
    expect(run.code, run.stdout + run.stderr).toBe(2);
    expect(parseSummary(run.stdout)).toEqual({ restored: 1, skipped: 0, failed: 0, vanished: 0 });
    expect(await target.cmd('GET', 'plain')).toBe('v');
    expect(run.stdout).toMatch(/^Not copied: the file holds auxiliary data of module fixturemo \(1 record: .*\), which .*: no command can copy it to another server\. .*$/m);
  });

  describe('a key the file holds more than once (redis-server refuses such a file)', () => {
    const str = (key: string, value: string): Buffer => Buffer.concat([Buffer.from([0]), rdbString(key), rdbString(value)]);
    const expiredAt = (ms: number): Buffer => {
      const at = Buffer.alloc(9);
      at[0] = 0xfc;
      at.writeBigInt64LE(BigInt(ms), 1);
      return at;
    };
    const twice = (): Buffer => rdbFile(10, Buffer.from([0xfe, 0]), str('twice', 'first'), str('once', 'v'), str('thrice', 'a'), str('twice', 'second'), str('thrice', 'b'), str('thrice', 'c'));

    it.each([
      ['false', 'first', 'a', /the first value of each was copied and the later ones skipped as existing/, { restored: 3, skipped: 3, failed: 0, vanished: 0 }],
      ['true', 'second', 'c', /the last value of each was written over the ones before it/, { restored: 6, skipped: 0, failed: 0, vanished: 0 }],
    ])('OVERWRITE_EXISTING_KEYS=%s: each such key named in one line and in the error log, the %s value kept; exit 2', async (overwrite, kept, keptThrice, says, summary) => {
      await target.cmd('FLUSHALL');
      const dir = runDir();
      writeFileSync(join(dir, 'twice.rdb'), twice());
      const run = await runMigrator({ ...settings(join(dir, 'twice.rdb')), OVERWRITE_EXISTING_KEYS: overwrite }, dir);
      expect(run.code, run.stdout + run.stderr).toBe(2);
      expect(parseSummary(run.stdout)).toEqual(summary);
      expect([await target.cmd('GET', 'twice'), await target.cmd('GET', 'thrice'), await target.cmd('GET', 'once')]).toEqual([kept, keptThrice, 'v']);
      const line = run.stdout.split('\n').filter((l) => l.startsWith('Not as redis-server loads it'));
      expect(line).toHaveLength(1);
      expect(line[0]).toMatch(/: 2 keys appear more than once in the file, which redis-server refuses \("Duplicated key found in RDB file"\): \|twice\| \(database 0, 2 times\), \|thrice\| \(database 0, 3 times\); /);
      expect(line[0]).toMatch(says);
      expect(run.stdout).toMatch(/^Reading the file's keys again, to count [23] keys it may hold more than once$/m);
      const log = readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8');
      expect(log).toMatch(/Failed to migrate key \|twice\|: the file holds this key 2 times, which redis-server refuses/);
      expect(log).toMatch(/Failed to migrate key \|thrice\|: the file holds this key 3 times/);
    });

    it('the premise: redis-server 7.0 refuses to load that file', async () => {
      const dir = runDir();
      writeFileSync(join(dir, 'twice.rdb'), twice());
      await expect(startRedis(['--dir', dir, '--dbfilename', 'twice.rdb'])).rejects.toThrow(/Duplicated key found in RDB file/);
    });

    it('loaded by redis-server as it is (an expired first copy, the same name in two databases), a key on the target before: no such line, exit 0', async () => {
      await target.cmd('FLUSHALL');
      await target.cmd('SET', 'there', 'before');
      const dir = runDir();
      const file = rdbFile(10, Buffer.from([0xfe, 0]), expiredAt(1000), str('k', 'old'), str('k', 'new'), str('there', 'file'), Buffer.from([0xfe, 1]), str('k', 'other db'));
      writeFileSync(join(dir, 'loads.rdb'), file);
      const run = await runMigrator(settings(join(dir, 'loads.rdb')), dir);
      expect(run.code, run.stdout + run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^Reading the file's keys again, to count 1 key it may hold more than once$/m);
      expect(run.stdout).not.toMatch(/appears? more than once/);
      expect(parseSummary(run.stdout)).toEqual({ restored: 1, skipped: 1, failed: 0, vanished: 1 });
      expect([await target.cmd('GET', 'k'), await target.cmd('GET', 'there')]).toEqual(['new', 'before']);
      const loaded = await startRedis(['--dir', dir, '--dbfilename', 'loads.rdb']);
      try {
        expect(await loaded.cmd('GET', 'k')).toBe('new');
      } finally {
        await loaded.stop();
      }
    });
  });

  // DUMP_MAX_BYTES=1 sends every other value by type: a module's value still goes by RESTORE, its only way.
  it.each(['67108864', '1'])('a module value the target has no module for fails by itself, naming the module; the keys around it are copied (DUMP_MAX_BYTES=%s)', async (dumpMaxBytes) => {
    await target.cmd('FLUSHALL');
    const dir = runDir();
    const file = rdbFile(11, Buffer.from([0xfe, 0x00]), Buffer.from([7]), rdbString('mod'), moduleValueBody('fixturemo', 3), Buffer.from([0]), rdbString('plain'), rdbString('v'));
    writeFileSync(join(dir, 'module.rdb'), file);
    const run = await runMigrator({ ...settings(join(dir, 'module.rdb')), DUMP_MAX_BYTES: dumpMaxBytes }, dir);
    expect(run.code, run.stdout + run.stderr).toBe(2);
    expect(parseSummary(run.stdout)).toEqual({ restored: 1, skipped: 0, failed: 1, vanished: 0 });
    expect(await target.cmd('GET', 'plain')).toBe('v');
    expect(readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8')).toMatch(/Failed to migrate key \|mod\|: a value of module type fixturemo, which .* cannot load \(is the module loaded there\?\): /);
  });

});

describe('which RDB version reads which type byte', () => {
  it.each([
    [15, 9, true], [16, 9, false], [19, 10, true], [20, 10, false], [21, 11, true], [24, 11, false], [25, 12, true], [7, 9, true], [6, 12, false],
    [9, 1, false], [9, 2, true], [13, 2, false], [13, 6, true], [14, 6, false], [5, 7, false], [5, 8, true], [0, 1, true],
  ])('type %i on a server reading RDB %i: %s', (type, version, readable) => {
    expect(typeReadableBy(type, version)).toBe(readable);
  });

  it.each([
    [22, 12, 80, false], [22, 80, 80, true], [24, 80, 12, false], [25, 80, 12, false], [21, 80, 12, true], [20, 12, 80, true], [22, 12, 12, true],
  ])("Valkey 9's formats: type %i on a server reading RDB %i, written in RDB %i: %s", (type, version, writtenIn, readable) => {
    expect(typeReadableBy(type, version, writtenIn)).toBe(readable);
  });

  it.each([[12, 80, 80], [11, 80, 11], [80, 12, 12], [80, 80, 80], [10, 12, 10], [12, 10, 10]])('a payload written in RDB %i is stamped for a target reading %i with %i', (writtenIn, target, stamp) => {
    expect(stampFor(writtenIn, target)).toBe(stamp);
  });

  it.each([[0, 1], [4, 1], [9, 2], [12, 2], [13, 6], [14, 7], [5, 8], [7, 8], [15, 9], [18, 10], [20, 11], [21, 11], [24, 12], [25, 12], [26, 13], [6, 14]])('type %i needs RDB %i', (type, version) => {
    expect(oldestVersionReading(type)).toBe(version);
  });
});

describe('our reader, as SCAN would select', () => {
  let source: LocalServer;
  let target: LocalServer;
  let file: string;
  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await source.cmd('SET', '', 'the empty key');
    await source.cmd('HSET', 'h', 'f', 'v');
    await source.cmd('SET', 'tmp:1', 'x');
    await source.cmd('SELECT', 1);
    await source.cmd('SET', 'tmp:2', 'y');
    await source.cmd('SET', 'kept', 'z');
    await source.cmd('SELECT', 0);
    await source.cmd('SAVE');
    file = join(source.dir, 'dump.rdb');
  });
  afterAll(async () => {
    await Promise.all([source.stop(), target.stop()]);
  });
  const run = (extra: Record<string, string | number>) =>
    runMigrator({ SOURCE_RDB_FILE: file, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0, ...extra }, runDir());

  it('the default pattern copies the empty key too, as SCAN does', async () => {
    await target.cmd('FLUSHALL');
    const done = await run({ SOURCE_REDIS_DB_INDEX: 0 });
    expect(parseSummary(done.stdout).restored).toBe(3);
    expect(await target.cmd('GET', '')).toBe('the empty key');
  });

  it('SCAN_TYPE matches without regard to case, as Redis does', async () => {
    await target.cmd('FLUSHALL');
    const done = await run({ SOURCE_REDIS_DB_INDEX: 0, SCAN_TYPE: 'HASH' });
    expect(parseSummary(done.stdout).restored).toBe(1);
    expect(await target.cmd('TYPE', 'h')).toBe('hash');
  });

  it('excluded keys are counted per database', async () => {
    await target.cmd('FLUSHALL');
    const done = await run({ KEY_EXCLUDE_PATTERN: 'tmp:*' });
    expect(done.stdout.match(/^Number of excluded keys: \d+$/gm)).toEqual(['Number of excluded keys: 1', 'Number of excluded keys: 1']);
  });

  it('a missing file, or COPY_METHOD=type: one line each, exit 1, no stack', async () => {
    const missing = await runMigrator({ SOURCE_RDB_FILE: '/nonexistent/dump.rdb', DESTINATION_REDIS_PORT: target.port }, runDir());
    expect(missing.code).toBe(1);
    expect(missing.stdout.trim()).toBe('Error reading SOURCE_RDB_FILE : SOURCE_RDB_FILE /nonexistent/dump.rdb does not exist or cannot be read');
    expect(missing.stderr).not.toMatch(/\n\s+at /);
    const byType = await run({ COPY_METHOD: 'type' });
    expect(byType.code).toBe(1);
    expect(byType.stdout.trim()).toBe("Error in settings : COPY_METHOD=type with SOURCE_RDB_FILE needs RDB_READER=server: this tool's own reader restores the values as the file holds them (COPY_METHOD=auto or dump)");
  });
});
