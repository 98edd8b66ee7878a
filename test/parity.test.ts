// End-to-end parity with the Python script's contract (/work/shared/parity.md), against real redis-servers.
// Every test runs the real script; each block has its own servers so no state leaks between them.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seedEveryType } from './helpers/sample-data.js';
import {
  commandCalls, evalInDb, keyspace, STACK_FRAME,
} from './helpers/parity-helpers.js';
import { countOf, parseSummary } from './helpers/inspect.js';
import {
  endpoints, freePort, runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer, type RunResult,
} from './helpers/servers.js';

const CONNECTED = 'Connected to Redis instances successfully';
const RECORD = /^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - ERROR - Failed to migrate key \|(.*)\|: (.+)\]$/;

/** Sets `count` string keys `<prefix><i>` = `v<i>` with one script call. */
async function seedStrings(server: RedisServer, prefix: string, count: number, db = 0): Promise<void> {
  await evalInDb(server, db, `for i = 0, tonumber(ARGV[3]) - 1 do redis.call('SET', ARGV[2] .. i, 'v' .. i) end`, prefix, count);
}

async function keysOf(server: RedisServer, pattern = '*'): Promise<string[]> {
  return ((await server.cmd('KEYS', pattern)) as string[]).sort();
}

/** Error log records as [key as shown, reason]; fails on any line that is not a record. */
function records(path: string): [string, string][] {
  const text = readFileSync(path, 'utf8');
  if (text === '') return [];
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => {
      const match = RECORD.exec(line);
      if (!match) throw new Error(`not an error log record: ${JSON.stringify(line)}`);
      return [match[1] as string, match[2] as string];
    });
}

function expectNoStackTrace(run: { stdout: string; stderr: string }): void {
  expect(run.stdout).not.toMatch(STACK_FRAME);
  expect(run.stderr).not.toMatch(STACK_FRAME);
}

function expectOutputHidesAll(run: RunResult, secrets: string[]): void {
  for (const secret of secrets) {
    expect(run.stdout).not.toContain(secret);
    expect(run.stderr).not.toContain(secret);
  }
}

describe('skip existing keys', () => {
  let source: RedisServer;
  let target: RedisServer;
  const total = 1 + 20 + 17;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await source.cmd('SET', 'shared', 'source-value');
    await seedStrings(source, 'k:', 20);
    expect(await seedEveryType(source, 'every:')).toBe(17);
    await target.cmd('SET', 'shared', 'target-value');
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('leaves a key the target already holds untouched and counts it as skipped', async () => {
    const run = await runMigrator(endpoints(source, target), tempDir());
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(CONNECTED);
    expect(parseSummary(run.stdout)).toEqual({ restored: total - 1, skipped: 1, failed: 0, vanished: 0 });
    expect(await target.cmd('GET', 'shared')).toBe('target-value');
    expect(await target.cmd('DBSIZE')).toBe(total);
    expect(run.stdout).not.toContain('Errors occurred');
  });

  it('skips everything when a completed migration is run again', async () => {
    const before = await target.cmd('DEBUG', 'DIGEST');
    const run = await runMigrator(endpoints(source, target), tempDir());
    expect(run.code).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 0, skipped: total, failed: 0, vanished: 0 });
    expect(await target.cmd('DEBUG', 'DIGEST')).toBe(before);
  });

  it('skips everything on a rerun by type too', async () => {
    const before = await target.cmd('DEBUG', 'DIGEST');
    const run = await runMigrator({ ...endpoints(source, target), COPY_METHOD: 'type' }, tempDir());
    expect(run.code).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 0, skipped: total, failed: 0, vanished: 0 });
    expect(await target.cmd('DEBUG', 'DIGEST')).toBe(before);
  });
});

describe('which keys: SCAN_MATCH_PATTERN and database numbers', () => {
  let source: RedisServer;
  let target: RedisServer;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await seedStrings(source, 'user:', 5);
    await seedStrings(source, 'session:', 3);
    await source.cmd('SET', 'user', 'no colon');
    await seedStrings(source, 'db2:', 7, 2);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  it('SCAN_MATCH_PATTERN limits the keys copied', async () => {
    const run = await runMigrator({ ...endpoints(source, target), SCAN_MATCH_PATTERN: 'user:*' }, tempDir());
    expect(run.code).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 5, skipped: 0, failed: 0, vanished: 0 });
    expect(await keysOf(target)).toEqual(['user:0', 'user:1', 'user:2', 'user:3', 'user:4']);
  });

  it('SOURCE_REDIS_DB_INDEX=2 and DESTINATION_REDIS_DB_INDEX=5 copy db 2 into db 5 and nothing else', async () => {
    const run = await runMigrator(
      { ...endpoints(source, target), SOURCE_REDIS_DB_INDEX: 2, DESTINATION_REDIS_DB_INDEX: 5 },
      tempDir(),
    );
    expect(run.code).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 7, skipped: 0, failed: 0, vanished: 0 });
    expect(await keyspace(target)).toEqual({ 5: 7 });
    expect(await evalInDb(target, 5, `return redis.call('GET', 'db2:6')`)).toBe('v6');
  });
});

describe('per-key errors (target ACL user limited to ~ok:*)', () => {
  let source: RedisServer;
  let target: RedisServer;
  const BINARY = Buffer.concat([Buffer.from([0xff, 0x00, 0x0a]), Buffer.from('bin|x\\y')]);
  const BINARY_SHOWN = '\\xff\\x00\\x0abin\\x7cx\\\\y';
  const badKeys = Array.from({ length: 50 }, (_, i) => `bad:${i}`);
  let limited: Record<string, string | number>;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await seedStrings(source, 'ok:', 10);
    await seedStrings(source, 'bad:', 50);
    await source.cmd('SET', BINARY, 'binary key');
    await target.cmd('ACL', 'SETUSER', 'limited', 'on', '>limitedpw', '~ok:*', '+@all');
    limited = {
      ...endpoints(source, target),
      DESTINATION_REDIS_USERNAME: 'limited',
      DESTINATION_REDIS_PASSWORD: 'limitedpw',
      ERROR_LOG_FILENAME: 'errors.log',
    };
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  for (const method of ['dump', 'type']) {
    it(`COPY_METHOD=${method}: forbidden keys are failed and logged, the rest copied, exit 2`, async () => {
      const cwd = tempDir();
      const run = await runMigrator({ ...limited, COPY_METHOD: method }, cwd);
      expectNoStackTrace(run);
      expect(run.code).toBe(2);
      const counts = parseSummary(run.stdout);
      expect(counts).toMatchObject({ failed: 51, vanished: 0 });
      // Exactly restored 10 / skipped 0 is checked deterministically in 'a forbidden key after allowed ones
      // in the same batch'; here SCAN's random order decides whether ok keys come before a forbidden one.
      expect(counts.restored + counts.skipped).toBe(10);
      if (method !== 'type') expect(counts.restored).toBe(10);
      expect(run.stdout).toContain('Errors occurred during the execution. Check |errors.log| for details');
      expect(await keysOf(target)).toEqual(Array.from({ length: 10 }, (_, i) => `ok:${i}`).sort());
      const logged = records(join(cwd, 'errors.log'));
      expect(logged.map(([key]) => key).sort()).toEqual([...badKeys, BINARY_SHOWN].sort());
      for (const [, reason] of logged) expect(reason).toMatch(/NOPERM|can't access/);
    });
  }

  it('a failing binary key is logged escaped as \\xNN, on one line', async () => {
    const cwd = tempDir();
    const run = await runMigrator({ ...limited, SCAN_MATCH_PATTERN: '*bin*' }, cwd);
    expect(run.code).toBe(2);
    expect(parseSummary(run.stdout)).toMatchObject({ restored: 0, failed: 1 });
    const text = readFileSync(join(cwd, 'errors.log'), 'utf8');
    expect(text.split('\n')).toHaveLength(2);
    expect(text).toContain(`Failed to migrate key |${BINARY_SHOWN}|: `);
    expect(text).toContain('\\xff');
    expect(text).not.toContain('\u00ff');
    expect(text).not.toContain('\ufffd');
  });

  for (const method of ['dump', 'type']) {
    it(`COPY_METHOD=${method}: MAX_ERRORED_KEYS_LIMIT=5 stops the run early with exit 3`, async () => {
      const cwd = tempDir();
      const run = await runMigrator(
        { ...limited, COPY_METHOD: method, SCAN_MATCH_PATTERN: 'bad:*', MAX_ERRORED_KEYS_LIMIT: 5, PIPELINE_BATCH_SIZE: 1 },
        cwd,
      );
      expectNoStackTrace(run);
      expect(run.code).toBe(3);
      expect(run.stdout).toMatch(/^Max errored keys limit of 5 reached$/m);
      expect(run.stdout).toMatch(/^The last failure, key \|bad:[^|]+\|: \S/m);
      const counts = parseSummary(run.stdout);
      expect(counts.failed).toBeGreaterThanOrEqual(5);
      expect(counts.restored + counts.skipped + counts.failed + counts.vanished).toBeLessThan(badKeys.length);
      expect(records(join(cwd, 'errors.log'))).toHaveLength(counts.failed);
    });
  }

  it('FILEMOD=a appends across runs', async () => {
    const cwd = tempDir();
    const settings = { ...limited, SCAN_MATCH_PATTERN: 'bad:1*', FILEMOD: 'a' }; // bad:1, bad:10..19
    const first = await runMigrator(settings, cwd);
    expect(first.code).toBe(2);
    const afterFirst = readFileSync(join(cwd, 'errors.log'), 'utf8');
    expect(records(join(cwd, 'errors.log'))).toHaveLength(11);
    const second = await runMigrator(settings, cwd);
    expect(second.code).toBe(2);
    const afterSecond = readFileSync(join(cwd, 'errors.log'), 'utf8');
    expect(afterSecond.startsWith(afterFirst)).toBe(true);
    expect(records(join(cwd, 'errors.log'))).toHaveLength(22);
  });

  it('FILEMOD=w (the default) truncates redis-keys-migrator-error.log at start, even when the run has no error', async () => {
    const cwd = tempDir();
    const path = join(cwd, 'redis-keys-migrator-error.log');
    writeFileSync(path, 'left over from an earlier run\n');
    const { ERROR_LOG_FILENAME: _default, ...settings } = limited;
    const first = await runMigrator({ ...settings, SCAN_MATCH_PATTERN: 'bad:1*' }, cwd);
    expect(first.code).toBe(2);
    expect(first.stdout).toContain('Errors occurred during the execution. Check |redis-keys-migrator-error.log| for details');
    expect(readFileSync(path, 'utf8')).not.toContain('left over');
    expect(records(path)).toHaveLength(11);
    const second = await runMigrator({ ...settings, SCAN_MATCH_PATTERN: 'ok:*', FILEMOD: 'w' }, cwd);
    expect(second.code).toBe(0);
    expect(parseSummary(second.stdout)).toEqual({ restored: 10, skipped: 0, failed: 0, vanished: 0 });
    expect(second.stdout).not.toContain('Errors occurred');
    expect(existsSync(path)).toBe(true);
    expect(statSync(path).size).toBe(0);
  });
});

describe('a forbidden key after allowed ones in the same batch', () => {
  let source: RedisServer;
  let target: RedisServer;
  let allowed: string[];
  let forbidden: string;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await seedStrings(source, 'mix:', 20);
    // The migrator's SCAN sees the keys in this same order; forbid the last one, so every other key of
    // the batch comes before it.
    const [cursor, keys] = (await source.cmd('SCAN', 0, 'MATCH', '*', 'COUNT', 1000)) as [string, string[]];
    expect(cursor).toBe('0');
    expect(keys).toHaveLength(20);
    allowed = keys.slice(0, -1);
    forbidden = keys[keys.length - 1] as string;
    await target.cmd('ACL', 'SETUSER', 'picky', 'on', '>pickypw', 'resetkeys', ...allowed.map((k) => `~${k}`), '+@all');
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  for (const method of ['type', 'dump']) {
    it(`COPY_METHOD=${method}: the allowed keys are counted as restored, not skipped`, async () => {
      const cwd = tempDir();
      const run = await runMigrator(
        {
          ...endpoints(source, target),
          DESTINATION_REDIS_USERNAME: 'picky',
          DESTINATION_REDIS_PASSWORD: 'pickypw',
          COPY_METHOD: method,
          PIPELINE_BATCH_SIZE: 1000,
        },
        cwd,
      );
      expect(run.code).toBe(2);
      expect(await keysOf(target)).toEqual([...allowed].sort());
      expect(parseSummary(run.stdout)).toEqual({ restored: 19, skipped: 0, failed: 1, vanished: 0 });
      expect(records(join(cwd, 'redis-keys-migrator-error.log')).map(([key]) => key)).toEqual([forbidden]);
    });
  }
});

describe('bad settings and failed connections', () => {
  let listener: Server;
  let listenerPort: number;
  let connections = 0;
  const sockets = new Set<Socket>();
  let server: RedisServer;
  let locked: RedisServer;
  const SERVER_PASSWORD = 'srvPw-Q8z1';
  const WRONG_PASSWORD = 'notTheOne-K3x9';

  beforeAll(async () => {
    // A plain TCP listener that only counts connections: proof that a bad setting stops before connecting.
    listener = createServer((socket) => {
      connections += 1;
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((done) => listener.listen(0, '127.0.0.1', done));
    const address = listener.address();
    listenerPort = typeof address === 'object' && address ? address.port : 0;
    [server, locked] = await Promise.all([startRedis(), startRedis(['--requirepass', SERVER_PASSWORD])]);
    await locked.cmd('AUTH', SERVER_PASSWORD);
    await seedStrings(server, 'k:', 3);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((done) => (listener ? listener.close(() => done()) : done()));
    await Promise.all([server?.stop(), locked?.stop()]);
  });

  it.each([
    ['SCAN_BATCH_SIZE', 'abc'],
    ['SOURCE_REDIS_URL', 'redis://user:pw%E0%A4%A@127.0.0.1:PORT/0'],
  ])('bad setting %s=%s: exit 1, one line naming it, no stack trace, no connection', async (name, value) => {
    connections = 0;
    // Both servers point at a listener that only counts connections: a run that connected anyway
    // would show up there (and, getting no PING reply, would not print the settings error).
    const cwd = tempDir();
    const run = await runMigrator(
      {
        SOURCE_REDIS_HOST: '127.0.0.1',
        SOURCE_REDIS_PORT: listenerPort,
        DESTINATION_REDIS_HOST: '127.0.0.1',
        DESTINATION_REDIS_PORT: listenerPort,
        [name]: value.replace('PORT', String(listenerPort)),
      },
      cwd,
      20_000,
    );
    expectNoStackTrace(run);
    expect(run.code).toBe(1);
    const lines = run.stdout.split('\n').filter((line) => line !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^Error in settings : .*${name}`));
    expect(run.stderr).toBe('');
    expect(connections).toBe(0);
  });

  it('an unreachable server: "Error connecting to Redis :", exit 1, within 10 s, no stack trace', async () => {
    const deadPort = await freePort();
    const started = Date.now();
    const run = await runMigrator(
      { ...endpoints(server, server), DESTINATION_REDIS_PORT: deadPort },
      tempDir(),
      20_000,
    );
    expect(Date.now() - started).toBeLessThan(10_000);
    expectNoStackTrace(run);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^Error connecting to Redis : .+$/m);
    expect(run.stdout).not.toContain(CONNECTED);
    expect(run.stdout).not.toContain('Number of restored keys');
  });

  it('a wrong password: "Error connecting to Redis :", exit 1, and no password printed', async () => {
    const run = await runMigrator(
      { ...endpoints(server, locked), DESTINATION_REDIS_PASSWORD: WRONG_PASSWORD },
      tempDir(),
      20_000,
    );
    expectNoStackTrace(run);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^Error connecting to Redis : .+$/m);
    expect(run.stdout).not.toContain(CONNECTED);
    expectOutputHidesAll(run, [SERVER_PASSWORD, WRONG_PASSWORD]);
    expect(await locked.cmd('DBSIZE')).toBe(0);
  });
});

describe('SOURCE_REDIS_URL / DESTINATION_REDIS_URL with ACL users', () => {
  let source: RedisServer;
  let target: RedisServer;
  const PASSWORD = 'p@ss:w/rd%Q7';
  const ENCODED = encodeURIComponent(PASSWORD);
  const DEFAULT_PASSWORD = 'defaultPw-7Hq';
  const url = (server: RedisServer, password: string, db: number): string =>
    `redis://mover:${encodeURIComponent(password)}@127.0.0.1:${server.port}/${db}`;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    for (const server of [source, target]) {
      await server.cmd('ACL', 'SETUSER', 'mover', 'on', `>${PASSWORD}`, '~*', '&*', '+@all');
      // The default user now needs a password too, so only the URL's credentials can get in.
      // (Our own test connections are already authenticated and stay so.)
      await server.cmd('ACL', 'SETUSER', 'default', 'resetpass', `>${DEFAULT_PASSWORD}`);
    }
    await seedStrings(source, 'u:', 6, 1);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('user:password URLs connect, db comes from the path, and the password is never printed', async () => {
    const run = await runMigrator(
      { SOURCE_REDIS_URL: url(source, PASSWORD, 1), DESTINATION_REDIS_URL: url(target, PASSWORD, 4), SLEEP_TIME: 0 },
      tempDir(),
    );
    expectNoStackTrace(run);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(CONNECTED);
    expect(parseSummary(run.stdout)).toEqual({ restored: 6, skipped: 0, failed: 0, vanished: 0 });
    expect(await keyspace(target)).toEqual({ 4: 6 });
    expectOutputHidesAll(run, [PASSWORD, ENCODED, DEFAULT_PASSWORD]);
  });

  it('a URL with a wrong password: "Error connecting to Redis :", exit 1, and no password printed', async () => {
    const wrong = 'wr0ng:P@ss%';
    const run = await runMigrator(
      { SOURCE_REDIS_URL: url(source, PASSWORD, 1), DESTINATION_REDIS_URL: url(target, wrong, 4), SLEEP_TIME: 0 },
      tempDir(),
      20_000,
    );
    expectNoStackTrace(run);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^Error connecting to Redis : .+$/m);
    expectOutputHidesAll(run, [PASSWORD, ENCODED, wrong, encodeURIComponent(wrong), DEFAULT_PASSWORD]);
  });
});

describe('.env file in the working directory', () => {
  let source: RedisServer;
  let target: RedisServer;
  let cwd: string;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await seedStrings(source, 'envfile:', 3);
    await seedStrings(source, 'real:', 2);
    cwd = tempDir();
    writeFileSync(
      join(cwd, '.env'),
      [
        'SOURCE_REDIS_HOST=127.0.0.1',
        `SOURCE_REDIS_PORT=${source.port}`,
        'DESTINATION_REDIS_HOST=127.0.0.1',
        `DESTINATION_REDIS_PORT=${target.port}`,
        'SLEEP_TIME=0',
        'SCAN_MATCH_PATTERN=envfile:*',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  it('is read', async () => {
    const run = await runMigrator({}, cwd);
    expect(run.code).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 3, skipped: 0, failed: 0, vanished: 0 });
    expect(await keysOf(target)).toEqual(['envfile:0', 'envfile:1', 'envfile:2']);
  });

  it('loses to a real environment variable', async () => {
    const run = await runMigrator({ SCAN_MATCH_PATTERN: 'real:*' }, cwd);
    expect(run.code).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 2, skipped: 0, failed: 0, vanished: 0 });
    expect(await keysOf(target)).toEqual(['real:0', 'real:1']);
  });
});

// The three blocks below mostly wait (paced runs) or keep one server busy, so they run side by side,
// each on its own servers; the tests inside each block still run one after another.
describe.concurrent('interrupted by a signal', () => {
  let source: RedisServer;
  let target: RedisServer;
  const TOTAL = 200_000;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await source.cmd('DEBUG', 'POPULATE', TOTAL);
    expect(await source.cmd('DBSIZE')).toBe(TOTAL);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it.sequential(`${signal}: finishes the batch in flight, prints the summary and exits 130`, async () => {
      const run = spawnMigrator({ ...endpoints(source, target), SLEEP_TIME: 0.5, PIPELINE_BATCH_SIZE: 100 }, tempDir());
      try {
        await run.waitFor(CONNECTED);
        await waitUntil(async () => Number(await target.cmd('DBSIZE')) > 0, 'the first keys on the target', 20_000, 20);
        const signalled = Date.now();
        // To the script itself: sent to tsx, the signal is passed on with a 30 ms deadline (see signalScript).
        run.signalScript(signal);
        const { code } = await run.done;
        expect(Date.now() - signalled).toBeLessThan(5_000);
        const out = run.stdout();
        expect(run.stderr()).not.toMatch(STACK_FRAME);
        expect(code).toBe(130);
        const counts = parseSummary(out);
        expect(counts.restored).toBeGreaterThan(0);
        expect(counts.restored).toBeLessThan(TOTAL);
        expect(counts.failed).toBe(0);
        expect(Number(await target.cmd('DBSIZE'))).toBe(counts.restored);
      } finally {
        run.signalAll('SIGKILL');
      }
    });
  }
});

describe.concurrent('keys that vanish after SCAN', () => {
  let source: RedisServer;
  let target: RedisServer;
  const TOTAL = 20_000;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  for (const method of ['dump', 'type']) {
    it.sequential(`COPY_METHOD=${method}: are counted as vanished, not failed, and no copy loses its TTL`, async () => {
      await Promise.all([source.cmd('FLUSHALL'), target.cmd('FLUSHALL')]);
      await source.cmd(
        'EVAL',
        `for i = 0, tonumber(ARGV[1]) - 1 do redis.call('SET', 'tmp:' .. i, 'v' .. i, 'PX', 600000) end`,
        0,
        TOTAL,
      );
      // One SCAN call returns every key at once (COUNT above the key count), then the copy goes slowly,
      // batch by batch; once the first batch has landed, every key on the source expires.
      const run = spawnMigrator(
        // By SCAN: keys that go between the scan and their read (a snapshot has no such gap).
        { ...endpoints(source, target), COPY_METHOD: method, SCAN_BATCH_SIZE: 100_000, PIPELINE_BATCH_SIZE: 1000, SLEEP_TIME: 0.3, SOURCE_READER: 'scan' },
        tempDir(),
      );
      try {
        await run.waitFor(CONNECTED);
        await waitUntil(async () => Number(await target.cmd('DBSIZE')) > 0, 'the first batch on the target', 20_000, 10);
        await source.cmd('EVAL', `for _, k in ipairs(redis.call('KEYS', 'tmp:*')) do redis.call('PEXPIRE', k, 1) end`, 0);
        const { code } = await run.done;
        const out = run.stdout();
        expect(code).toBe(0);
        const counts = parseSummary(out);
        expect(counts.failed).toBe(0);
        expect(counts.skipped).toBe(0);
        expect(counts.vanished).toBeGreaterThan(0);
        expect(counts.restored).toBeGreaterThan(0);
        expect(counts.restored + counts.vanished).toBe(TOTAL);
        const persistent = await target.cmd(
          'EVAL',
          `local n = 0 for _, k in ipairs(redis.call('KEYS', '*')) do if redis.call('PTTL', k) < 0 then n = n + 1 end end return n`,
          0,
        );
        expect(persistent).toBe(0);
        expect(Number(await target.cmd('DBSIZE'))).toBeLessThanOrEqual(counts.restored);
      } finally {
        run.signalAll('SIGKILL');
      }
    });
  }
});

describe.concurrent('big collections are copied in chunks', () => {
  let source: RedisServer;
  let target: RedisServer;
  const N = 50_000;
  const KEYS = ['big:list', 'big:hash', 'big:set', 'big:zset'];

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await source.cmd(
      'EVAL',
      `for i = 1, tonumber(ARGV[1]) do
         redis.call('RPUSH', 'big:list', 'item-' .. (i % 977))
         redis.call('HSET', 'big:hash', 'field-' .. i, 'value-' .. i)
         redis.call('SADD', 'big:set', 'member-' .. i)
         redis.call('ZADD', 'big:zset', i / 7, 'member-' .. i)
       end`,
      0,
      N,
    );
    await source.cmd('PEXPIRE', 'big:hash', 3_600_000);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
    await target.cmd('CONFIG', 'RESETSTAT');
  });

  async function expectSameContent(): Promise<void> {
    for (const key of KEYS) {
      expect(await target.cmd('DEBUG', 'DIGEST-VALUE', key)).toEqual(await source.cmd('DEBUG', 'DIGEST-VALUE', key));
    }
    expect(await target.cmd('LLEN', 'big:list')).toBe(N);
    expect(await target.cmd('HLEN', 'big:hash')).toBe(N);
    expect(await target.cmd('SCARD', 'big:set')).toBe(N);
    expect(await target.cmd('ZCARD', 'big:zset')).toBe(N);
    expect(await target.cmd('PEXPIRETIME', 'big:hash')).toBe(await source.cmd('PEXPIRETIME', 'big:hash'));
    expect(await target.cmd('PTTL', 'big:list')).toBe(-1);
  }

  async function expectChunkedWrites(): Promise<void> {
    const calls = await commandCalls(target);
    for (const command of ['rpush', 'hset', 'sadd', 'zadd']) {
      expect(calls[command] ?? 0, command).toBeGreaterThanOrEqual(N / 1000);
    }
  }

  it.sequential('COPY_METHOD=type, COLLECTION_CHUNK_SIZE=1000: equal content, at least 50 writes per key', async () => {
    const run = await runMigrator({ ...endpoints(source, target), COPY_METHOD: 'type', COLLECTION_CHUNK_SIZE: 1000 }, tempDir());
    expect(run.code).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 4, skipped: 0, failed: 0, vanished: 0 });
    await expectSameContent();
    await expectChunkedWrites();
  });

  it.sequential('COPY_METHOD=dump with keys over DUMP_MAX_BYTES: equal content, copied in chunks', async () => {
    const run = await runMigrator(
      { ...endpoints(source, target), COPY_METHOD: 'dump', DUMP_MAX_BYTES: 4096, COLLECTION_CHUNK_SIZE: 1000 },
      tempDir(),
    );
    expect(run.code).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: 4, skipped: 0, failed: 0, vanished: 0 });
    await expectSameContent();
    await expectChunkedWrites();
    expect((await commandCalls(target)).restore ?? 0).toBe(0);
  });
});

describe('skip existing never merges into a key the target holds', () => {
  let source: RedisServer;
  let target: RedisServer;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await source.cmd('RPUSH', 'shared:list', 's1', 's2', 's3', 's4', 's5');
    await source.cmd('SADD', 'shared:set', 's1', 's2', 's3');
    await source.cmd('HSET', 'shared:hash', 'sf', 'sv');
    await source.cmd('EVAL', `for i = 1, 5000 do redis.call('RPUSH', 'shared:biglist', i) end`, 0);
    await source.cmd('SET', 'fresh', 'copied');
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await target.cmd('FLUSHALL');
    await target.cmd('RPUSH', 'shared:list', 't1', 't2', 't3');
    await target.cmd('SADD', 'shared:set', 't1');
    await target.cmd('HSET', 'shared:hash', 'tf', 'tv');
    await target.cmd('RPUSH', 'shared:biglist', 't1', 't2');
  });

  for (const method of ['type', 'dump']) {
    it(`COPY_METHOD=${method}: a pre-existing list, set, hash and big list are left exactly as they were`, async () => {
      const run = await runMigrator({ ...endpoints(source, target), COPY_METHOD: method, COLLECTION_CHUNK_SIZE: 1000 }, tempDir());
      expect(run.code).toBe(0);
      expect(parseSummary(run.stdout)).toEqual({ restored: 1, skipped: 4, failed: 0, vanished: 0 });
      expect(await target.cmd('LLEN', 'shared:list')).toBe(3);
      expect(await target.cmd('LRANGE', 'shared:list', 0, -1)).toEqual(['t1', 't2', 't3']);
      expect(await target.cmd('SMEMBERS', 'shared:set')).toEqual(['t1']);
      expect(await target.cmd('HGETALL', 'shared:hash')).toEqual(['tf', 'tv']);
      expect(await target.cmd('LLEN', 'shared:biglist')).toBe(2);
      expect(await target.cmd('GET', 'fresh')).toBe('copied');
    });
  }
});

// Guards against a helper silently matching nothing.
describe('summary lines', () => {
  it('are parsed strictly', () => {
    expect(countOf('Number of restored keys: 12\n', 'restored')).toBe(12);
    expect(() => countOf('Number of restored keys: x\n', 'restored')).toThrow();
  });
});
