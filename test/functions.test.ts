// Function libraries (Redis 7 FUNCTION) travel with the keys: loaded on the target before them unless it has a
// library of that name, never dropped silently (COPY_FUNCTIONS=false and refusals are said), from a server, an
// .rdb file (either reader) or into a cluster. Every outcome is read back from the target itself.
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from './helpers/cluster.js';
import { runDir, serverPair } from './helpers/fixtures.js';
import { pairs, parseSummary } from './helpers/inspect.js';
import { endpoints, ROOT, runMigrator, startRedis, type LocalServer, type RedisServer, type RunResult } from './helpers/servers.js';
import { fileLibraries, libraryName } from '../lib/sources/libraries.js';

const library = (name: string, fn: string, answer: string): string =>
  `#!lua name=${name}\nredis.register_function('${fn}', function(keys, args) return '${answer}' end)`;
const LIB_A = library('lib_a', 'f_a', 'a from the source');
const LIB_B = library('lib_b', 'f_b', 'b from the source');
const LIB_B_TARGETS = library('lib_b', 'f_b', 'b of the target');

/** The server's libraries, name to code, as FUNCTION LIST WITHCODE tells. */
async function librariesOf(server: RedisServer): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of (await server.cmd('FUNCTION', 'LIST', 'WITHCODE')) as unknown[]) {
    const fields = pairs(entry);
    out[String(fields.library_name)] = String(fields.library_code);
  }
  return out;
}

const functionLines = (run: RunResult): string[] => run.stdout.split('\n').filter((line) => line.startsWith('Functions:'));
const shown = (run: RunResult): string => `exit ${run.code}\n${run.stdout}${run.stderr}`;

describe('server to server', () => {
  const pair = serverPair();
  beforeEach(async () => {
    await Promise.all([pair.source, pair.target].map(async (s) => {
      await s.cmd('FUNCTION', 'FLUSH');
      await s.cmd('FLUSHALL');
      await s.cmd('ACL', 'DELUSER', 'nofunction');
    }));
    await pair.source.cmd('FUNCTION', 'LOAD', LIB_A);
    await pair.source.cmd('FUNCTION', 'LOAD', LIB_B);
    await pair.source.cmd('SET', 'k', 'v');
    await pair.target.cmd('FUNCTION', 'LOAD', LIB_B_TARGETS);
  });
  const settings = (extra: Record<string, string | number> = {}): Record<string, string | number> => ({ ...endpoints(pair.source, pair.target), ...extra });

  it('a library is loaded, one of the same name on the target is skipped and left as it was; FCALL works on the target', async () => {
    const run = await runMigrator(settings(), runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual(['Functions: 1 library loaded, 1 skipped (already on the target), 0 failed']);
    // Before the keys: the line comes before the summary.
    expect(run.stdout.indexOf('Functions:')).toBeLessThan(run.stdout.indexOf('Number of restored keys'));
    expect(await librariesOf(pair.target)).toEqual({ lib_a: LIB_A, lib_b: LIB_B_TARGETS });
    expect(await pair.target.cmd('FCALL', 'f_a', 0)).toBe('a from the source');
    expect(await pair.target.cmd('FCALL', 'f_b', 0)).toBe('b of the target');
    expect(await pair.target.cmd('GET', 'k')).toBe('v');

    // A second run finds both there.
    const again = await runMigrator(settings(), runDir());
    expect(functionLines(again)).toEqual(['Functions: 0 libraries loaded, 2 skipped (already on the target), 0 failed']);
  });

  it('OVERWRITE_EXISTING_KEYS=true replaces a library of the same name with the source\'s code', async () => {
    const run = await runMigrator(settings({ OVERWRITE_EXISTING_KEYS: 'true' }), runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual(["Functions: 2 libraries loaded (1 replacing the target's library of that name, OVERWRITE_EXISTING_KEYS=true), 0 skipped (already on the target), 0 failed"]);
    expect(await librariesOf(pair.target)).toEqual({ lib_a: LIB_A, lib_b: LIB_B });
    expect(await pair.target.cmd('FCALL', 'f_b', 0)).toBe('b from the source');
  });

  it('COPY_FUNCTIONS=false: nothing loaded, and one line says so', async () => {
    const run = await runMigrator(settings({ COPY_FUNCTIONS: 'false' }), runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual([expect.stringMatching(/^Functions: the source holds 2 libraries \((lib_a, lib_b|lib_b, lib_a)\), not copied \(COPY_FUNCTIONS=false\)$/)]);
    expect(await librariesOf(pair.target)).toEqual({ lib_b: LIB_B_TARGETS });
    expect(await pair.target.cmd('GET', 'k')).toBe('v');
  });

  it('a target user without FUNCTION: one line naming NOPERM, each library in the error log, the keys still copied; exit 2', async () => {
    await pair.target.cmd('ACL', 'SETUSER', 'nofunction', 'on', '>secret', '~*', '&*', '+@all', '-function');
    const dir = runDir();
    const run = await runMigrator(settings({ DESTINATION_REDIS_USERNAME: 'nofunction', DESTINATION_REDIS_PASSWORD: 'secret' }), dir);
    expect(run.code, shown(run)).toBe(2);
    const lines = functionLines(run);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^Functions: 2 libraries of the source not loaded: .*NOPERM .*'function\|list'.*see \|redis-keys-migrator-error\.log\|/);
    expect(parseSummary(run.stdout)).toEqual({ restored: 1, skipped: 0, failed: 0, vanished: 0 });
    expect(await librariesOf(pair.target)).toEqual({ lib_b: LIB_B_TARGETS });
    const log = readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8');
    expect(log).toMatch(/Failed to load function library \|lib_a\|: .*NOPERM/);
    expect(log).toMatch(/Failed to load function library \|lib_b\|: .*NOPERM/);
  });

  it('a source user without FUNCTION: one line, the keys copied; it cannot know of libraries to count as failed', async () => {
    await pair.source.cmd('ACL', 'SETUSER', 'nofunction', 'on', '>secret', '~*', '&*', '+@all', '-function');
    const run = await runMigrator(settings({ SOURCE_REDIS_USERNAME: 'nofunction', SOURCE_REDIS_PASSWORD: 'secret' }), runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual([expect.stringMatching(/^Functions: could not read the source's function libraries, so none was copied: .*NOPERM/)]);
    expect(await librariesOf(pair.target)).toEqual({ lib_b: LIB_B_TARGETS });
  });

  it('a source without libraries: no line at all', async () => {
    await pair.source.cmd('FUNCTION', 'FLUSH');
    const run = await runMigrator(settings(), runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual([]);
  });

  it('a library whose function name the target already has in another library fails with the reason; exit 2', async () => {
    await pair.target.cmd('FUNCTION', 'LOAD', library('other', 'f_a', 'taken'));
    const dir = runDir();
    const run = await runMigrator(settings(), dir);
    expect(run.code, shown(run)).toBe(2);
    expect(functionLines(run)).toEqual(['Functions: 0 libraries loaded, 1 skipped (already on the target), 1 failed (see |redis-keys-migrator-error.log|)']);
    expect(readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8')).toMatch(/Failed to load function library \|lib_a\|: ERR Function f_a already exists/);
    expect(await pair.target.cmd('FCALL', 'f_a', 0)).toBe('taken');
  });

  it('dry run says what would be loaded and loads nothing; compare counts missing and other code as differences (exit 4)', async () => {
    const dry = await runMigrator(settings({ DRY_RUN: 'true' }), runDir());
    expect(dry.code, shown(dry)).toBe(0);
    expect(functionLines(dry)).toEqual(['Functions: would load 1 library, 1 skipped (already on the target)']);
    expect(await librariesOf(pair.target)).toEqual({ lib_b: LIB_B_TARGETS });

    await pair.target.cmd('SET', 'k', 'v');
    const compare = await runMigrator(settings({ MIGRATION_MODE: 'compare' }), runDir());
    expect(compare.code, shown(compare)).toBe(4);
    expect(functionLines(compare)).toEqual(["Functions: 1 library missing on the target (lib_a), 1 with other code than the source's (lib_b), 0 identical"]);

    await pair.target.cmd('FUNCTION', 'LOAD', 'REPLACE', LIB_B);
    await pair.target.cmd('FUNCTION', 'LOAD', LIB_A);
    const same = await runMigrator(settings({ MIGRATION_MODE: 'compare' }), runDir());
    expect(same.code, shown(same)).toBe(0);
    expect(functionLines(same)).toEqual(["Functions: 0 libraries missing on the target, 0 with other code than the source's, 2 identical"]);
  });
});

describe('servers without FUNCTION (Redis 6.x, or a service that disabled it)', () => {
  let withFunctions: LocalServer;
  let without: LocalServer;
  beforeAll(async () => {
    [withFunctions, without] = await Promise.all([startRedis(), startRedis(['--rename-command', 'FUNCTION', '""'])]);
    await withFunctions.cmd('FUNCTION', 'LOAD', LIB_A);
  });
  afterAll(async () => {
    await Promise.all([withFunctions?.stop(), without?.stop()]);
  });

  it('such a source simply has none: no line, exit 0', async () => {
    await without.cmd('SET', 'k', 'v');
    const run = await runMigrator(endpoints(without, withFunctions), runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual([]);
  });

  it('such a target fails each library, saying why; exit 2', async () => {
    const dir = runDir();
    const run = await runMigrator(endpoints(withFunctions, without), dir);
    expect(run.code, shown(run)).toBe(2);
    expect(functionLines(run)).toEqual(['Functions: 0 libraries loaded, 0 skipped (already on the target), 1 failed (see |redis-keys-migrator-error.log|)']);
    expect(readFileSync(join(dir, 'redis-keys-migrator-error.log'), 'utf8')).toMatch(/Failed to load function library \|lib_a\|: ERR unknown command/);
  });
});

describe('an .rdb file with a library', () => {
  let target: LocalServer;
  let file: string;
  beforeAll(async () => {
    // A file written by the local server: FUNCTION LOAD, a key, SAVE.
    const writer = await startRedis();
    try {
      await writer.cmd('FUNCTION', 'LOAD', LIB_A);
      await writer.cmd('SET', 'k', 'v');
      await writer.cmd('SAVE');
      file = join(runDir(), 'with-library.rdb');
      copyFileSync(join(writer.dir, 'dump.rdb'), file);
    } finally {
      await writer.stop();
    }
    target = await startRedis();
  });
  afterAll(async () => {
    await target?.stop();
  });
  beforeEach(async () => {
    await target.cmd('FUNCTION', 'FLUSH');
    await target.cmd('FLUSHALL');
  });
  const settings = (extra: Record<string, string>): Record<string, string | number> => ({
    SOURCE_RDB_FILE: file, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0, ...extra,
  });

  it.each(['native', 'server'])('RDB_READER=%s: the library is loaded before the keys, and a second run skips it', async (reader) => {
    const run = await runMigrator(settings({ RDB_READER: reader }), runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual(['Functions: 1 library loaded, 0 skipped (already on the target), 0 failed']);
    expect(await librariesOf(target)).toEqual({ lib_a: LIB_A });
    expect(await target.cmd('FCALL', 'f_a', 0)).toBe('a from the source');
    expect(await target.cmd('GET', 'k')).toBe('v');
    const again = await runMigrator(settings({ RDB_READER: reader }), runDir());
    expect(functionLines(again)).toEqual(['Functions: 0 libraries loaded, 1 skipped (already on the target), 0 failed']);
  });

  it('COPY_FUNCTIONS=false: the file\'s library is named, not loaded', async () => {
    const run = await runMigrator(settings({ RDB_READER: 'native', COPY_FUNCTIONS: 'false' }), runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual(['Functions: the file holds 1 library (lib_a), not copied (COPY_FUNCTIONS=false)']);
    expect(await librariesOf(target)).toEqual({});
    expect(await target.cmd('GET', 'k')).toBe('v');
  });

  it('the reader holds at most the cap of library code: past it, none, and each counts as not held', async () => {
    const fixture = join(ROOT, 'test', 'fixtures', 'rdb', 'valkey-8.0.rdb');
    const whole = await fileLibraries(fixture);
    expect(whole.found.map((l) => l.name)).toEqual(['fixturelib']);
    const capped = await fileLibraries(fixture, 10);
    expect(capped).toMatchObject({ found: [], notHeld: 1, unreadable: expect.stringMatching(/more than the 0\.0 MB .*RDB_READER=server/) });
    expect(libraryName(Buffer.from('#!lua  name=x1 flags=no-writes\nreturn 1'))).toBe('x1');
    expect(libraryName(Buffer.from('return 1'))).toBe('');
  });
});

describe('into a cluster', () => {
  let source: LocalServer;
  let cluster: TestCluster;
  beforeAll(async () => {
    [source, cluster] = await Promise.all([startRedis(), startCluster()]);
    await source.cmd('FUNCTION', 'LOAD', LIB_A);
    await source.cmd('SET', 'k', 'v');
  }, 60_000);
  afterAll(async () => {
    await Promise.all([source?.stop(), cluster?.stop()]);
  });

  it('the library goes to every master, also when one of them has it already', async () => {
    const [first, ...others] = cluster.masters;
    await first?.cmd('FUNCTION', 'LOAD', LIB_A);
    const run = await runMigrator({ SOURCE_REDIS_HOST: '127.0.0.1', SOURCE_REDIS_PORT: source.port, ...cluster.settings('DESTINATION'), SLEEP_TIME: 0 }, runDir());
    expect(run.code, shown(run)).toBe(0);
    expect(functionLines(run)).toEqual(['Functions: 1 library loaded, 0 skipped (already on the target), 0 failed']);
    expect(others).toHaveLength(2);
    for (const master of cluster.masters) {
      expect(await librariesOf(master), `master ${master.port}`).toEqual({ lib_a: LIB_A });
      expect(await master.cmd('FCALL', 'f_a', 0)).toBe('a from the source');
    }
  });
});
