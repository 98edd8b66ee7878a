// TLS end to end: real redis-server processes listening on a TLS port only, certificates made with openssl,
// and the real migrator script. Unless a test says otherwise the source is plain and the target speaks TLS only.
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSummary } from './helpers/inspect.js';
import { STACK_FRAME } from './helpers/parity-helpers.js';
import { digest, seedEveryType } from './helpers/sample-data.js';
import { endpoints, runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer, type RunResult } from './helpers/servers.js';
import { makeCertificates, startTlsRedis, type Certificates } from './helpers/tls.js';

const CONNECTED = 'Connected to Redis instances successfully';
const TEST_TIMEOUT_MS = 15_000;
/** Runs are killed after this; failure cases must end well before it anyway. */
const RUN_TIMEOUT_MS = 13_000;
const TOKEN = 'ElastiCache-AUTH-t0ken-4kQz9wPe';
const WRONG_TOKEN = 'ElastiCache-WRONG-t0ken-Xr72mLs';
const DEFAULT_USER_PASSWORD = 'default-user-secret-Jh3s';

let certs: Certificates;
let plainSource: RedisServer;
let plainTarget: RedisServer;
/** TLS only, no client certificate asked for. */
let tlsTarget: RedisServer;
/** TLS only, --tls-auth-clients yes. */
let mtlsTarget: RedisServer;
/** TLS only; the default user has a password, user `app` has TOKEN. */
let aclTarget: RedisServer;
/** TLS only, seeded, for the TLS source case. */
let tlsSource: RedisServer;
let sampleKeys = 0;

// A plain TCP listener that only counts connections: proof that a bad setting stops the run before it connects.
let listener: Server;
let listenerPort = 0;
let listenerConnections = 0;
const listenerSockets = new Set<Socket>();

const runDirs: string[] = [];

interface TimedRun extends RunResult {
  ms: number;
}

async function run(env: Record<string, string | number>): Promise<TimedRun> {
  const cwd = tempDir();
  runDirs.push(cwd);
  const started = Date.now();
  const result = await runMigrator({ PROGRESS: 'off', ...env }, cwd, RUN_TIMEOUT_MS);
  return { ...result, ms: Date.now() - started };
}

/** Everything shown to the user, for failure messages. */
function shown(r: RunResult): string {
  return `exit ${r.code}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;
}

/** The plain source copied to a TLS target: the default settings, TLS on, the test CA trusted. */
function toTls(target: RedisServer, extra: Record<string, string | number> = {}): Record<string, string | number> {
  return { ...endpoints(plainSource, target), DESTINATION_REDIS_TLS: 'true', DESTINATION_REDIS_TLS_CA_FILE: certs.ca, ...extra };
}

/** Both sides pointed at the counting listener, so any connection attempt shows. */
function toListener(extra: Record<string, string | number>): Record<string, string | number> {
  return {
    SOURCE_REDIS_HOST: '127.0.0.1',
    SOURCE_REDIS_PORT: listenerPort,
    DESTINATION_REDIS_HOST: '127.0.0.1',
    DESTINATION_REDIS_PORT: listenerPort,
    SLEEP_TIME: 0,
    ...extra,
  };
}

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '');
}

function expectNoStackTrace(r: RunResult): void {
  expect(r.stdout, shown(r)).not.toMatch(STACK_FRAME);
  expect(r.stderr, shown(r)).not.toMatch(STACK_FRAME);
}

/** Exit 0, every sample key restored, and the target's content equal to the source's. */
async function expectCopied(r: RunResult, source: RedisServer, target: RedisServer): Promise<void> {
  expectNoStackTrace(r);
  expect(r.code, shown(r)).toBe(0);
  expect(r.stdout, shown(r)).toContain(CONNECTED);
  expect(parseSummary(r.stdout).restored, shown(r)).toBe(sampleKeys);
  expect(await target.cmd('DBSIZE')).toBe(sampleKeys);
  expect(await digest(target)).toBe(await digest(source));
}

/**
 * Exit 1 with one line only, `Error connecting to Redis : <side> ...`, and no stack trace. Returns that line.
 * (A run that connected would print more lines: the "Connected" line and the summary.)
 */
function expectConnectionError(r: RunResult, side: 'source' | 'destination'): string {
  expectNoStackTrace(r);
  expect(r.code, shown(r)).toBe(1);
  const out = lines(r.stdout);
  expect(out, shown(r)).toHaveLength(1);
  const line = out[0] ?? '';
  expect(line, shown(r)).toMatch(new RegExp(`^Error connecting to Redis : ${side} `));
  return line;
}

/** Exit 1 with one `Error in settings :` line, nothing on stderr, and no connection to either side. */
function expectSettingsError(r: RunResult, connectionsBefore: number): string {
  expectNoStackTrace(r);
  expect(r.code, shown(r)).toBe(1);
  const out = lines(r.stdout);
  expect(out, shown(r)).toHaveLength(1);
  const line = out[0] ?? '';
  expect(line, shown(r)).toMatch(/^Error in settings : /);
  expect(r.stderr, shown(r)).toBe('');
  expect(listenerConnections).toBe(connectionsBefore);
  return line;
}

function expectHidden(r: RunResult, secrets: string[]): void {
  for (const secret of secrets) {
    expect(r.stdout).not.toContain(secret);
    expect(r.stderr).not.toContain(secret);
  }
}

beforeAll(async () => {
  certs = makeCertificates();
  listener = createServer((socket) => {
    listenerConnections += 1;
    listenerSockets.add(socket);
    socket.on('close', () => listenerSockets.delete(socket));
  });
  await new Promise<void>((done) => listener.listen(0, '127.0.0.1', done));
  const address = listener.address();
  listenerPort = typeof address === 'object' && address ? address.port : 0;

  [plainSource, plainTarget, tlsTarget, mtlsTarget, aclTarget, tlsSource] = await Promise.all([
    startRedis(),
    startRedis(),
    startTlsRedis(certs),
    startTlsRedis(certs, { authClients: true }),
    startTlsRedis(certs),
    startTlsRedis(certs),
  ]);
  sampleKeys = await seedEveryType(plainSource);
  expect(await seedEveryType(tlsSource)).toBe(sampleKeys);
  // As with an ElastiCache AUTH token: a user with a password, and no way in without it.
  // (Our own connection is already authenticated as the default user and stays so.)
  await aclTarget.cmd('ACL', 'SETUSER', 'app', 'on', `>${TOKEN}`, '~*', '+@all');
  await aclTarget.cmd('ACL', 'SETUSER', 'default', 'resetpass', `>${DEFAULT_USER_PASSWORD}`);
});

afterAll(async () => {
  for (const socket of listenerSockets) socket.destroy();
  await new Promise<void>((done) => (listener ? listener.close(() => done()) : done()));
  await Promise.all([plainSource, plainTarget, tlsTarget, mtlsTarget, aclTarget, tlsSource].map((s) => s?.stop()));
  certs?.remove();
  for (const dir of runDirs) rmSync(dir, { recursive: true, force: true });
});

describe('TLS target verified against a CA file', () => {
  it.each(['127.0.0.1', 'localhost'])(
    'DESTINATION_REDIS_HOST=%s: copies every type, exit 0, same content',
    async (host) => {
      await tlsTarget.cmd('FLUSHALL');
      const r = await run(toTls(tlsTarget, { DESTINATION_REDIS_HOST: host }));
      await expectCopied(r, plainSource, tlsTarget);
      expect(r.stderr, shown(r)).not.toContain('TLS_VERIFY=none');
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a rediss:// URL turns TLS on by itself',
    async () => {
      await tlsTarget.cmd('FLUSHALL');
      const { DESTINATION_REDIS_HOST: _host, DESTINATION_REDIS_PORT: _port, ...rest } = endpoints(plainSource, tlsTarget);
      const r = await run({ ...rest, DESTINATION_REDIS_URL: `rediss://localhost:${tlsTarget.port}/0`, DESTINATION_REDIS_TLS_CA_FILE: certs.ca });
      await expectCopied(r, plainSource, tlsTarget);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a CA that did not sign the server certificate: exit 1, one line naming the destination and the certificate, within 10 s',
    async () => {
      await tlsTarget.cmd('FLUSHALL');
      const r = await run(toTls(tlsTarget, { DESTINATION_REDIS_TLS_CA_FILE: certs.otherCa }));
      const line = expectConnectionError(r, 'destination');
      expect(line).toContain(`127.0.0.1:${tlsTarget.port}`);
      expect(line).toMatch(/certificate/i);
      expect(r.ms).toBeLessThan(10_000);
      expect(await tlsTarget.cmd('DBSIZE')).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'no CA file with TLS_VERIFY=full: the system CAs do not trust the test CA, exit 1',
    async () => {
      const r = await run(toTls(tlsTarget, { DESTINATION_REDIS_TLS_CA_FILE: '' }));
      expect(expectConnectionError(r, 'destination')).toMatch(/certificate/i);
    },
    TEST_TIMEOUT_MS,
  );

  it.each(['', 'full'])(
    'DESTINATION_REDIS_TLS_SERVERNAME=wrong.example, TLS_VERIFY=%s (full): exit 1 naming the host name mismatch',
    async (verify) => {
      const r = await run(toTls(tlsTarget, { DESTINATION_REDIS_TLS_SERVERNAME: 'wrong.example', DESTINATION_REDIS_TLS_VERIFY: verify }));
      const line = expectConnectionError(r, 'destination');
      expect(line).toContain('wrong.example');
      expect(line).toMatch(/host ?name|altnames/i);
      expect(r.ms).toBeLessThan(10_000);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'DESTINATION_REDIS_TLS_SERVERNAME=wrong.example with TLS_VERIFY=ca: the chain is enough, the copy works',
    async () => {
      await tlsTarget.cmd('FLUSHALL');
      const r = await run(toTls(tlsTarget, { DESTINATION_REDIS_TLS_SERVERNAME: 'wrong.example', DESTINATION_REDIS_TLS_VERIFY: 'ca' }));
      await expectCopied(r, plainSource, tlsTarget);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'TLS_VERIFY=none without a CA file: the copy works, with a warning on stderr',
    async () => {
      await tlsTarget.cmd('FLUSHALL');
      const r = await run(toTls(tlsTarget, { DESTINATION_REDIS_TLS_CA_FILE: '', DESTINATION_REDIS_TLS_VERIFY: 'none' }));
      await expectCopied(r, plainSource, tlsTarget);
      expect(r.stderr, shown(r)).toContain('TLS_VERIFY=none');
      expect(r.stderr, shown(r)).toMatch(/^Warning: .*destination.*TLS_VERIFY=none/m);
    },
    TEST_TIMEOUT_MS,
  );
});

describe('mutual TLS (--tls-auth-clients yes)', () => {
  it(
    'without a client certificate: exit 1, "Error connecting to Redis :" naming the destination',
    async () => {
      const r = await run(toTls(mtlsTarget));
      const line = expectConnectionError(r, 'destination');
      expect(line).toContain(`127.0.0.1:${mtlsTarget.port}`);
      expect(line).toMatch(/certificate/i); // OpenSSL's "tlsv13 alert certificate required" today
      expect(r.ms).toBeLessThan(10_000);
      expect(await mtlsTarget.cmd('DBSIZE')).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'with DESTINATION_REDIS_TLS_CERT_FILE and _KEY_FILE: copies every type',
    async () => {
      await mtlsTarget.cmd('FLUSHALL');
      const r = await run(toTls(mtlsTarget, { DESTINATION_REDIS_TLS_CERT_FILE: certs.clientCert, DESTINATION_REDIS_TLS_KEY_FILE: certs.clientKey }));
      await expectCopied(r, plainSource, mtlsTarget);
    },
    TEST_TIMEOUT_MS,
  );

  it.each([
    ['DESTINATION_REDIS_TLS_CERT_FILE', 'clientCert'],
    ['DESTINATION_REDIS_TLS_KEY_FILE', 'clientKey'],
  ] as const)(
    'only %s: a settings error naming both variables, before any connection',
    async (name, file) => {
      const before = listenerConnections;
      const r = await run(toListener({ DESTINATION_REDIS_TLS: 'true', DESTINATION_REDIS_TLS_CA_FILE: certs.ca, [name]: certs[file] }));
      const line = expectSettingsError(r, before);
      expect(line).toContain('DESTINATION_REDIS_TLS_CERT_FILE');
      expect(line).toContain('DESTINATION_REDIS_TLS_KEY_FILE');
    },
    TEST_TIMEOUT_MS,
  );
});

describe('TLS mix-ups get a hint', () => {
  it(
    'a plain-text client to a TLS-only server: exit 1, hint "set DESTINATION_REDIS_TLS=true"',
    async () => {
      const r = await run(endpoints(plainSource, tlsTarget));
      const line = expectConnectionError(r, 'destination');
      expect(line).toContain('set DESTINATION_REDIS_TLS=true');
      expect(r.ms).toBeLessThan(10_000);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a TLS client to a plain-text server: exit 1, hint "no TLS handshake", within 10 s',
    async () => {
      await plainTarget.cmd('FLUSHALL');
      const r = await run(toTls(plainTarget));
      const line = expectConnectionError(r, 'destination');
      expect(line).toContain('no TLS handshake');
      expect(line).toContain('DESTINATION_REDIS_TLS is on');
      expect(r.ms).toBeLessThan(10_000);
      expect(await plainTarget.cmd('DBSIZE')).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});

describe('an ACL user with a password over TLS (an ElastiCache AUTH token)', () => {
  it(
    'DESTINATION_REDIS_USERNAME=app, DESTINATION_REDIS_PASSWORD=<token>: copies every type, the token never printed',
    async () => {
      await aclTarget.cmd('FLUSHALL');
      const r = await run(toTls(aclTarget, { DESTINATION_REDIS_USERNAME: 'app', DESTINATION_REDIS_PASSWORD: TOKEN }));
      await expectCopied(r, plainSource, aclTarget);
      expectHidden(r, [TOKEN, DEFAULT_USER_PASSWORD]);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a wrong token: exit 1, "Error connecting to Redis :", neither token printed',
    async () => {
      await aclTarget.cmd('FLUSHALL');
      const r = await run(toTls(aclTarget, { DESTINATION_REDIS_USERNAME: 'app', DESTINATION_REDIS_PASSWORD: WRONG_TOKEN }));
      expectConnectionError(r, 'destination');
      expectHidden(r, [TOKEN, WRONG_TOKEN, DEFAULT_USER_PASSWORD]);
      expect(await aclTarget.cmd('DBSIZE')).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});

describe('a TLS source', () => {
  it(
    'SOURCE_REDIS_TLS=true with SOURCE_REDIS_TLS_CA_FILE, to a plain target: copies every type',
    async () => {
      await plainTarget.cmd('FLUSHALL');
      const r = await run({ ...endpoints(tlsSource, plainTarget), SOURCE_REDIS_TLS: 'true', SOURCE_REDIS_TLS_CA_FILE: certs.ca });
      await expectCopied(r, tlsSource, plainTarget);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'live mode reads it as its replica over TLS: the snapshot, then writes made meanwhile, converge; the cutover exits 0',
    async () => {
      await plainTarget.cmd('FLUSHALL');
      const cwd = tempDir();
      runDirs.push(cwd);
      const env = { ...endpoints(tlsSource, plainTarget), SOURCE_REDIS_TLS: 'true', SOURCE_REDIS_TLS_CA_FILE: certs.ca, MIGRATION_MODE: 'live', SLEEP_TIME: 0, PROGRESS: 'off' };
      const live = spawnMigrator(env, cwd);
      const applying = 'Live: applying the replication stream of ';
      await waitUntil(async () => live.output().includes(applying) || /^(Error|Cannot|Stopped)/m.test(live.output()), 'the live phase', TEST_TIMEOUT_MS, 50);
      expect(live.output()).toContain(applying);
      await tlsSource.cmd('RPUSH', 'tls:live:list', 'a', 'b');
      await tlsSource.cmd('SET', 'tls:live:string', 'written while live');
      await waitUntil(async () => (await digest(plainTarget)) === (await digest(tlsSource)), 'the target to equal the source', TEST_TIMEOUT_MS, 50);
      live.signalScript('SIGTERM');
      const r = await live.done;
      await tlsSource.cmd('DEL', 'tls:live:list', 'tls:live:string');
      expectNoStackTrace(r);
      expect(r.code, shown(r)).toBe(0);
      expect(r.stdout, shown(r)).toMatch(/^Reading the source as its replica: one snapshot by PSYNC from source 127\.0\.0\.1:\d+ \(TLS\)$/m);
      expect(r.stdout, shown(r)).toMatch(/^Live: 2 commands applied from the replication stream .*, 0 failed,/m);
      expect(await plainTarget.cmd('DBSIZE')).toBe(sampleKeys + 2);
    },
    TEST_TIMEOUT_MS * 2,
  );

  it(
    'the same without SOURCE_REDIS_TLS: exit 1 naming the source, hint "set SOURCE_REDIS_TLS=true"',
    async () => {
      const r = await run(endpoints(tlsSource, plainTarget));
      expect(expectConnectionError(r, 'source')).toContain('set SOURCE_REDIS_TLS=true');
    },
    TEST_TIMEOUT_MS,
  );
});

describe('TLS settings are checked before connecting', () => {
  it(
    'a CA file that does not exist: a settings error naming DESTINATION_REDIS_TLS_CA_FILE, exit 1, no connection',
    async () => {
      const before = listenerConnections;
      const missing = `${certs.dir}/no-such-ca.crt`;
      const r = await run(toListener({ DESTINATION_REDIS_TLS: 'true', DESTINATION_REDIS_TLS_CA_FILE: missing }));
      const line = expectSettingsError(r, before);
      expect(line).toContain('DESTINATION_REDIS_TLS_CA_FILE');
    },
    TEST_TIMEOUT_MS,
  );
});
