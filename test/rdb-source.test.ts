// SOURCE_RDB_FILE with RDB_READER=server end to end: real .rdb files written by a real redis-server (SAVE), loaded
// by the migrator's private redis-server and copied into a real target; the refusals; Ctrl-C while loading and while copying.
// After every run: the user's file is unchanged, no rkm-rdb-* directory and no private redis-server is left.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { digest, seedEveryType } from './helpers/sample-data.js';
import { parseSummary } from './helpers/inspect.js';
import { evalInDb, keyspace, sleep, STACK_FRAME } from './helpers/parity-helpers.js';
import { runMigrator, spawnMigrator, startRedis, tempDir, type RedisServer, type RunningMigrator, type RunResult } from './helpers/servers.js';

const PRIVATE_PREFIX = 'rkm-rdb-';
const CONNECTED = 'Connected to Redis instances successfully';
const BIG_KEYS = 200_000;
const DB3_KEYS = ['db3:a', 'db3:b', 'db3:ttl'];

// ---- Leftover detection: rkm-rdb-* directories and processes whose command line names one ----
// Each run gets its own TMPDIR (os.tmpdir() honours it), so runs of this file elsewhere cannot blur the count.

function privateDirs(tmp: string): string[] {
  return readdirSync(tmp).filter((name) => name.startsWith(PRIVATE_PREFIX)).map((name) => join(tmp, name));
}

function commandLine(pid: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ').trim();
  } catch {
    return undefined;
  }
}

/**
 * Live processes whose command line contains `text` (redis-server's title holds its socket path), or for
 * which `also(pid)` holds.
 */
function processesMentioning(text: string, also: (pid: string) => boolean = () => false): { pid: number; cmdline: string }[] {
  const found: { pid: number; cmdline: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = commandLine(entry);
    if (cmdline !== undefined && cmdline !== '' && (cmdline.includes(text) || also(entry))) found.push({ pid: Number(entry), cmdline });
  }
  return found;
}

/** One run's TMPDIR, watched: which private directories the run made, and what it left. */
class PrivateServerWatch {
  readonly tmp = scratch();
  /** Private directories seen while the run went on. */
  readonly seen = new Set<string>();
  private readonly timer = setInterval(() => this.poll(), 20);

  constructor() {
    watches.push(this);
  }

  /** Settings that put the run's temporary files in this watch's directory. */
  get env(): Record<string, string> {
    return { TMPDIR: this.tmp };
  }

  poll(): void {
    for (const dir of privateDirs(this.tmp)) this.seen.add(dir);
  }

  /** Processes running now whose command line names a private directory of this run. */
  serverProcesses(): { pid: number; cmdline: string }[] {
    this.poll();
    return processesMentioning(join(this.tmp, PRIVATE_PREFIX));
  }

  /**
   * Processes of this run still alive: the private redis-server (its title names its socket here) and any
   * migrator process (they all have TMPDIR set to this directory).
   */
  processes(): { pid: number; cmdline: string }[] {
    const mark = `\0TMPDIR=${this.tmp}\0`;
    return processesMentioning(this.tmp, (pid) => {
      try {
        return `\0${readFileSync(`/proc/${pid}/environ`, 'latin1')}`.includes(mark);
      } catch {
        return false;
      }
    });
  }

  /** rkm-rdb-* directories and processes of this run, after the run. */
  leftovers(): { dirs: string[]; processes: string[] } {
    clearInterval(this.timer);
    this.poll();
    return { dirs: privateDirs(this.tmp), processes: this.processes().map((p) => `${p.pid}: ${p.cmdline}`) };
  }

  /** Ends, by pid, whatever a failed run left. Its directory goes with the scratch dirs. */
  cleanUp(): void {
    clearInterval(this.timer);
    for (const p of this.processes()) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
const watches: PrivateServerWatch[] = [];

function parentOf(pid: number | string): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** SIGKILLs `pid` and its descendants. */
function killTree(pid: number): void {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const parent = parentOf(entry);
    if (parent !== undefined) children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i] as number) ?? []));
  for (const member of tree) {
    try {
      process.kill(member, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function expectNothingLeft(watch: PrivateServerWatch): void {
  expect(watch.leftovers()).toEqual({ dirs: [], processes: [] });
}

// ---- Small helpers ----

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/**
 * The contents of database `db` alone (DEBUG DIGEST covers every database and mixes in their numbers): each key,
 * its type, DEBUG DIGEST-VALUE and PEXPIRETIME, in key order. The client goes back to db 0 after.
 */
async function dbContents(server: RedisServer, db: number): Promise<string[]> {
  const send = (...args: (string | Buffer)[]): Promise<unknown> => server.client.sendCommand(args);
  await send('SELECT', String(db));
  try {
    const keys = ((await send('KEYS', '*')) as Buffer[]).sort(Buffer.compare);
    const rows: string[] = [];
    for (const key of keys) {
      const [value] = (await send('DEBUG', 'DIGEST-VALUE', key)) as Buffer[];
      rows.push([key.toString('hex'), String(await send('TYPE', key)), String(value), String(await send('PEXPIRETIME', key))].join(' '));
    }
    return rows;
  } finally {
    await send('SELECT', '0');
  }
}

async function pexpiretime(server: RedisServer, db: number, key: string): Promise<number> {
  return Number(await evalInDb(server, db, `return redis.call('PEXPIRETIME', ARGV[2])`, key));
}

/** The exit status, or a failure with everything printed so far when the run does not end in `timeoutMs`. */
async function exitWithin(run: RunningMigrator, watch: PrivateServerWatch, timeoutMs: number): Promise<number> {
  const timeout = sleep(timeoutMs).then(() => undefined);
  const exited = await Promise.race([run.done, timeout]);
  if (exited === undefined) {
    const alive = watch.processes().map((p) => `${p.pid} (parent ${parentOf(p.pid)}): ${p.cmdline}`).join('\n');
    const tsx = parentOf(run.pid) === undefined ? 'tsx exited' : 'tsx still running';
    throw new Error(`no exit ${timeoutMs} ms after SIGINT (${tsx}); processes of the run:\n${alive}\n${describeRun({ code: -1, stdout: run.stdout(), stderr: run.stderr() })}`);
  }
  return exited.code;
}

/** Ctrl-C: the run must end within 5 s with status 130 and no stack trace. */
async function interrupt(run: RunningMigrator, watch: PrivateServerWatch): Promise<RunResult> {
  const signalled = Date.now();
  // To the script itself: sent to tsx, the signal is passed on with a 30 ms deadline (see signalScript).
  run.signalScript('SIGINT');
  const code = await exitWithin(run, watch, 10_000);
  const result = { code, stdout: run.stdout(), stderr: run.stderr() };
  expect(Date.now() - signalled, describeRun(result)).toBeLessThan(5_000);
  expect(code, describeRun(result)).toBe(130);
  expect(result.stderr).not.toMatch(STACK_FRAME);
  return result;
}

function describeRun(run: { code: number; stdout: string; stderr: string }): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

/** Saves `server` and copies its dump.rdb to `path` (CONFIG SET dir is protected in Redis 7). */
async function saveTo(server: RedisServer, path: string): Promise<void> {
  expect(await server.cmd('SAVE')).toBe('OK');
  copyFileSync(join(server.dir, 'dump.rdb'), path);
}

/**
 * Why redis-server itself refuses `file`, from its own log when it loads a copy: the text after "->" in its
 * "Internal error in RDB reading" line, else its last warning.
 */
function refusalReasonOf(file: string): string {
  const dir = scratch();
  copyFileSync(file, join(dir, 'dump.rdb'));
  // It must listen somewhere (a socket, as the tool's private server does), or it exits before loading.
  const log = join(dir, 'redis.log');
  const run = spawnSync('redis-server', ['--port', '0', '--unixsocket', join(dir, 'redis.sock'), '--dir', dir, '--save', '', '--appendonly', 'no', '--logfile', log], { timeout: 10_000 });
  expect(run.status, 'redis-server itself refuses the file').toBe(1);
  const lines = readFileSync(log, 'utf8').split('\n');
  const reason = lines.map((line) => /-> (.+)$/.exec(line)?.[1]).filter((r) => r !== undefined).pop()
    ?? lines.filter((line) => / # /.test(line)).map((line) => line.replace(/^.* # /, '')).pop();
  if (reason === undefined) throw new Error(`no reason in the log:\n${lines.join('\n')}`);
  return reason.trim();
}

function serverVersion(): string {
  const out = execFileSync('redis-server', ['--version'], { encoding: 'utf8' });
  const match = /v=([0-9.]+)/.exec(out);
  if (!match?.[1]) throw new Error(`cannot read the version from: ${out}`);
  return match[1];
}

/** The target, and the reader this file is about (our own reader is the default: test/rdb-file*.test.ts). */
function targetSettings(target: RedisServer): Record<string, string | number> {
  return { DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0, RDB_READER: 'server' };
}

// ---- Shared fixtures ----

let saved: RedisServer; // every type in db 0, a few keys in db 3; its SAVE made `sampleFile`
let target: RedisServer;
let files: string; // the user's files: sample.rdb, big.rdb, refusals
let sampleFile: string;
let bigFile: string;
let db0Keys: number;
const spawned: RunningMigrator[] = [];
const scratchDirs: string[] = [];

/** A working directory for one run, removed in afterAll. */
function scratch(): string {
  const dir = tempDir();
  scratchDirs.push(dir);
  return dir;
}

beforeAll(async () => {
  const big = await startRedis();
  try {
    [saved, target] = await Promise.all([startRedis(), startRedis()]);
    files = scratch();
    sampleFile = join(files, 'backup.rdb');
    bigFile = join(files, 'big.rdb');

    db0Keys = await seedEveryType(saved);
    await evalInDb(saved, 3, `redis.call('SET', 'db3:a', '1'); redis.call('RPUSH', 'db3:b', 'x', 'y');
      redis.call('HSET', 'db3:ttl', 'f', 'v'); redis.call('PEXPIRE', 'db3:ttl', 5400000)`);
    expect(await keyspace(saved)).toEqual({ 0: db0Keys, 3: DB3_KEYS.length });
    await saveTo(saved, sampleFile);

    await big.cmd('DEBUG', 'POPULATE', BIG_KEYS);
    await saveTo(big, bigFile);
  } finally {
    await big.stop();
  }
});

afterAll(async () => {
  // tsx runs the script in a child of its cli: end the whole tree, by pid.
  for (const run of spawned) killTree(run.pid);
  await Promise.race([Promise.all(spawned.map((run) => run.done)), sleep(5_000)]);
  for (const watch of watches) watch.cleanUp();
  await Promise.all([saved?.stop(), target?.stop()]);
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await target.cmd('FLUSHALL');
});

describe('SOURCE_RDB_FILE: copying from a saved .rdb file', () => {
  it('copies every database to the same number: digests and expiry times equal, the file untouched, nothing left', async () => {
    const before = sha256(sampleFile);
    const watch = new PrivateServerWatch();
    // A relative path, as a user would type it.
    const run = await runMigrator({ ...targetSettings(target), ...watch.env, SOURCE_RDB_FILE: './backup.rdb' }, files, 20_000);
    const out = run.stdout;
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stderr).not.toMatch(STACK_FRAME);

    expect(out).toMatch(/^Loaded \.\/backup\.rdb into a private redis-server \(used_memory_human [0-9.]+[BKMG]; databases with keys: 0, 3\)$/m);
    expect(out).toMatch(/^Private redis-server for SOURCE_RDB_FILE: used_memory_human [0-9.]+[BKMG]$/m);
    // Loaded, then each database's heading and summary, then the private server's memory.
    const at = (text: string): number => out.indexOf(text);
    const restored = out.split(/^Database \d+ -> \d+$/m).slice(1).map((section) => parseSummary(section).restored);
    expect(restored).toEqual([db0Keys, DB3_KEYS.length]);
    expect(at('Loaded ')).toBeGreaterThanOrEqual(0);
    expect(at('Database 0 -> 0\n')).toBeGreaterThan(at('Loaded '));
    expect(at('Number of restored keys')).toBeGreaterThan(at('Database 0 -> 0\n'));
    expect(at('Database 3 -> 3\n')).toBeGreaterThan(at('Number of restored keys'));
    expect(out.lastIndexOf('Number of restored keys')).toBeGreaterThan(at('Database 3 -> 3\n'));
    expect(at('Private redis-server for SOURCE_RDB_FILE')).toBeGreaterThan(out.lastIndexOf('Number of failed keys'));

    expect(await keyspace(target)).toEqual(await keyspace(saved));
    // The whole dataset (database numbers included), then each database key by key.
    expect(await digest(target)).toBe(await digest(saved));
    for (const db of [0, 3]) expect(await dbContents(target, db), `db ${db}`).toEqual(await dbContents(saved, db));
    for (const [db, key] of [[0, 'ttl-string'], [0, 'ttl-hash'], [3, 'db3:ttl']] as const) {
      const expected = await pexpiretime(saved, db, key);
      expect(expected, `${key} has an expiry on the saved server`).toBeGreaterThan(Date.now());
      expect(await pexpiretime(target, db, key), `PEXPIRETIME of ${key} in db ${db}`).toBe(expected);
    }
    expect(await pexpiretime(target, 0, 'string')).toBe(-1);

    expect(sha256(sampleFile)).toBe(before);
    expect(watch.seen.size, 'one rkm-rdb-* directory under os.tmpdir() while running').toBe(1);
    expectNothingLeft(watch);
  });

  it('SOURCE_REDIS_DB_INDEX=3 copies only db 3, into DESTINATION_REDIS_DB_INDEX', async () => {
    const watch = new PrivateServerWatch();
    const run = await runMigrator(
      { ...targetSettings(target), ...watch.env, SOURCE_RDB_FILE: sampleFile, SOURCE_REDIS_DB_INDEX: 3, DESTINATION_REDIS_DB_INDEX: 5 },
      scratch(),
      20_000,
    );
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stdout).not.toMatch(/^Database /m);
    expect(parseSummary(run.stdout)).toEqual({ restored: DB3_KEYS.length, skipped: 0, failed: 0, vanished: 0 });
    expect(await keyspace(target)).toEqual({ 5: DB3_KEYS.length });
    const db3 = await dbContents(saved, 3);
    expect(db3).toHaveLength(DB3_KEYS.length);
    expect(await dbContents(target, 5)).toEqual(db3);
    expect(await pexpiretime(target, 5, 'db3:ttl')).toBe(await pexpiretime(saved, 3, 'db3:ttl'));
    expectNothingLeft(watch);
  });
});

describe('SOURCE_RDB_FILE: refusals, each in one line with exit status 1', () => {
  /** Runs with `file` (and extra settings); checks the one-line refusal, an untouched target, nothing left. */
  async function expectRefusal(file: string, reason: RegExp, extra: Record<string, string> = {}): Promise<RunResult> {
    const watch = new PrivateServerWatch();
    const run = await runMigrator({ ...targetSettings(target), ...watch.env, SOURCE_RDB_FILE: file, ...extra }, scratch(), 20_000);
    expect(run.code, describeRun(run)).toBe(1);
    expect(run.stdout.split('\n'), describeRun(run)).toEqual([expect.stringMatching(/^Error loading SOURCE_RDB_FILE : \S/), '']);
    expect(run.stdout).toMatch(reason);
    expect(run.stderr).not.toMatch(STACK_FRAME);
    expect(run.stderr).not.toMatch(/Error\b/);
    expect(Number(await target.cmd('DBSIZE'))).toBe(0);
    expectNothingLeft(watch);
    return run;
  }

  it('a truncated file (the first half of a real one): the server\'s own reason', async () => {
    const truncated = join(files, 'truncated.rdb');
    const whole = readFileSync(sampleFile);
    writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length / 2)));
    const before = sha256(truncated);
    const reason = refusalReasonOf(truncated);
    const run = await expectRefusal(truncated, /truncated\.rdb/);
    expect(run.stdout).toContain(reason);
    expect(sha256(truncated)).toBe(before);
  });

  it('a text file: not an RDB file', async () => {
    const text = join(files, 'notes.txt');
    writeFileSync(text, 'these are not the keys you are looking for\n');
    await expectRefusal(text, /notes\.txt is not an RDB file/);
  });

  it('a missing path', async () => {
    await expectRefusal(join(files, 'no-such-backup.rdb'), /no-such-backup\.rdb does not exist/);
  });

  it('an RDB version newer than redis-server reads: names both versions', async () => {
    const tooNew = join(files, 'too-new.rdb');
    writeFileSync(tooNew, Buffer.concat([Buffer.from('REDIS0099'), Buffer.alloc(64, 0xff)]));
    // The newest version this redis-server reads is the one its own SAVE writes.
    const readable = Number(readFileSync(sampleFile).subarray(5, 9).toString('latin1'));
    expect(readable).toBeGreaterThan(0);
    const run = await expectRefusal(tooNew, /\b99\b/);
    expect(run.stdout).toContain(serverVersion());
    expect(run.stdout).toMatch(new RegExp(`\\b${readable}\\b`));
  });

  it('a Valkey 9 file (VALKEY080): names its version and the default reader, which reads it', async () => {
    const valkey = join(files, 'valkey9.rdb');
    writeFileSync(valkey, Buffer.concat([Buffer.from('VALKEY080'), Buffer.alloc(64, 0xff)]));
    const run = await expectRefusal(valkey, /RDB version 80, newer than redis-server .*; a Valkey 9 file: the default RDB_READER=native reads it/);
    expect(run.stdout).toContain(serverVersion());
  });

  it('REDIS_SERVER_PATH=/nonexistent: says how to install redis-server or set REDIS_SERVER_PATH', async () => {
    await expectRefusal(sampleFile, /install.*REDIS_SERVER_PATH|REDIS_SERVER_PATH.*install/i, { REDIS_SERVER_PATH: '/nonexistent' });
  });
});

describe('SOURCE_RDB_FILE: Ctrl-C', () => {
  it('while loading: exits 130 within seconds, the private server and its directory gone', async () => {
    // A redis-server that sleeps 50 µs per key while loading (a hidden Redis 7 setting), and answers INFO
    // every 1 KB read instead of every 2 MB, so the load lasts long enough to interrupt.
    const wrapperDir = scratch();
    const wrapper = join(wrapperDir, 'slow-redis-server');
    const realServer = execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim();
    writeFileSync(wrapper, `#!/bin/sh\nexec '${realServer}' "$@" --key-load-delay 50 --loading-process-events-interval-bytes 1024\n`);
    chmodSync(wrapper, 0o755);
    const before = sha256(bigFile);
    const watch = new PrivateServerWatch();
    const run = spawnMigrator({ ...targetSettings(target), ...watch.env, SOURCE_RDB_FILE: bigFile, REDIS_SERVER_PATH: wrapper }, scratch());
    spawned.push(run);
    try {
      await until('the private redis-server', () => watch.serverProcesses().length > 0, 10_000);
      await until('a Loading line', () => run.stderr().includes('Loading'), 10_000);
      expect(run.stdout(), 'still loading when interrupted').not.toContain('Loaded ');
      const result = await interrupt(run, watch);
      expect(result.stdout).not.toContain('Loaded ');
      expect(result.stdout).not.toContain(CONNECTED);
      expectNothingLeft(watch);
      expect(sha256(bigFile)).toBe(before);
      expect(Number(await target.cmd('DBSIZE'))).toBe(0);
      // Progress while loading, on stderr.
      expect(result.stderr).toMatch(/^Loading big\.rdb: [0-9]+\.[0-9]%$/m);
    } finally {
      killTree(run.pid);
      watch.cleanUp();
      rmSync(wrapperDir, { recursive: true, force: true });
    }
  });

  it('while copying: finishes the batch in flight, prints the summary, exits 130, nothing left', async () => {
    const watch = new PrivateServerWatch();
    const run = spawnMigrator({ ...targetSettings(target), ...watch.env, SOURCE_RDB_FILE: bigFile, SLEEP_TIME: 0.5, PIPELINE_BATCH_SIZE: 200 }, scratch());
    spawned.push(run);
    try {
      await run.waitFor(CONNECTED);
      expect(watch.serverProcesses().length, 'the private redis-server runs').toBeGreaterThan(0);
      await until('the first keys on the target', async () => Number(await target.cmd('DBSIZE')) > 0, 10_000);
      const result = await interrupt(run, watch);
      const counts = parseSummary(result.stdout);
      expect(counts.restored).toBeGreaterThan(0);
      expect(counts.restored).toBeLessThan(BIG_KEYS);
      expect(counts.failed).toBe(0);
      expect(Number(await target.cmd('DBSIZE'))).toBe(counts.restored);
      expectNothingLeft(watch);
      expect(existsSync(bigFile)).toBe(true);
    } finally {
      killTree(run.pid);
      watch.cleanUp();
    }
  });
});
