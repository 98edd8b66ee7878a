import { describe, expect, it } from 'vitest';
import { parseSettings, SettingsError, SETTINGS } from '../lib/settings.js';

/** The SettingsError parseSettings throws for `env`; fails the test when it throws nothing or something else. */
function settingsError(env: Record<string, string>): SettingsError {
  try {
    parseSettings(env);
  } catch (err) {
    expect(err).toBeInstanceOf(SettingsError);
    return err as SettingsError;
  }
  throw new Error(`parseSettings accepted ${JSON.stringify(env)}`);
}

describe('defaults', () => {
  it("equal the Python script's", () => {
    const s = parseSettings({});
    expect(s.target).toMatchObject({ host: 'localhost', port: 6380, db: 0 });
    expect(s.source).toMatchObject({ host: 'localhost', port: 6381, db: 0 });
    expect(s.source.username).toBeUndefined();
    expect(s.source.password).toBeUndefined();
    expect(s.target.username).toBeUndefined();
    expect(s.target.password).toBeUndefined();
    expect(s.matchPattern).toBe('*');
    expect(s.scanBatchSize).toBe(1000);
    expect(s.pipelineBatchSize).toBe(1000);
    expect(s.existingKeysPauseEvery).toBe(1000);
    expect(s.sleepSeconds).toBe(1);
    expect(s.errorLogFile).toBe('redis-keys-migrator-error.log');
    expect(s.errorLogMode).toBe('w');
    expect(s.maxErroredKeys).toBe(1000);
    expect(s.overwrite).toBe(false);
    expect(s.copyMethod).toBe('auto');
  });

  it('treat an empty variable as unset', () => {
    const s = parseSettings({ SOURCE_REDIS_PORT: '', SLEEP_TIME: '', FILEMOD: '', SCAN_MATCH_PATTERN: '' });
    expect(s.source.port).toBe(6381);
    expect(s.sleepSeconds).toBe(1);
    expect(s.errorLogMode).toBe('w');
    expect(s.matchPattern).toBe('*');
  });

  it('are listed in the SETTINGS table with the same values', () => {
    const table = Object.fromEntries(SETTINGS.map((s) => [s.name, s.default]));
    expect(table).toMatchObject({
      DESTINATION_REDIS_PORT: '6380',
      SOURCE_REDIS_PORT: '6381',
      SCAN_BATCH_SIZE: '1000',
      PIPELINE_BATCH_SIZE: '1000',
      MAX_PROCESSED_EXISTING_KEYS_LIMIT: '1000',
      SLEEP_TIME: '1',
      ERROR_LOG_FILENAME: 'redis-keys-migrator-error.log',
      FILEMOD: 'w',
      MAX_ERRORED_KEYS_LIMIT: '1000',
      SCAN_MATCH_PATTERN: '*',
    });
  });
});

describe('values', () => {
  it('are read from their variables', () => {
    const s = parseSettings({
      SOURCE_REDIS_HOST: 'src.example',
      SOURCE_REDIS_PORT: '7001',
      SOURCE_REDIS_DB_INDEX: '2',
      SOURCE_REDIS_USERNAME: 'reader',
      SOURCE_REDIS_PASSWORD: 'readpw',
      DESTINATION_REDIS_HOST: 'dst.example',
      DESTINATION_REDIS_PORT: '7002',
      DESTINATION_REDIS_DB_INDEX: '5',
      SCAN_MATCH_PATTERN: 'user:*',
      SCAN_BATCH_SIZE: '50',
      PIPELINE_BATCH_SIZE: '7',
      MAX_PROCESSED_EXISTING_KEYS_LIMIT: '3',
      ERROR_LOG_FILENAME: 'errors.log',
      FILEMOD: 'a',
      MAX_ERRORED_KEYS_LIMIT: '0',
      COPY_METHOD: 'type',
      OVERWRITE_EXISTING_KEYS: 'true',
      COLLECTION_CHUNK_SIZE: '10',
    });
    expect(s.source).toEqual({ side: 'source', host: 'src.example', port: 7001, db: 2, username: 'reader', password: 'readpw', replyTimeoutMs: 10_000, readFrom: 'master' });
    expect(s.target).toMatchObject({ host: 'dst.example', port: 7002, db: 5 });
    expect(s).toMatchObject({
      matchPattern: 'user:*',
      scanBatchSize: 50,
      pipelineBatchSize: 7,
      existingKeysPauseEvery: 3,
      errorLogFile: 'errors.log',
      errorLogMode: 'a',
      maxErroredKeys: 0,
      copyMethod: 'type',
      overwrite: true,
      chunkSize: 10,
    });
  });

  it.each([
    ['0.5', 0.5],
    ['0.25', 0.25],
    ['1.5', 1.5],
    ['0', 0],
    ['.1', 0.1],
  ])('SLEEP_TIME=%s is %d seconds (fractions allowed)', (value, seconds) => {
    expect(parseSettings({ SLEEP_TIME: value }).sleepSeconds).toBe(seconds);
  });

  it('RECONNECT_TIMEOUT and REPLY_TIMEOUT default to 60 s and 10 s, and take fractions', () => {
    expect(parseSettings({}).reconnectTimeoutMs).toBe(60_000);
    expect(parseSettings({ RECONNECT_TIMEOUT: '2.5' }).reconnectTimeoutMs).toBe(2500);
    const s = parseSettings({ REPLY_TIMEOUT: '0.5' });
    expect([s.source.replyTimeoutMs, s.target.replyTimeoutMs]).toEqual([500, 500]);
  });
});

describe('errors name the variable', () => {
  it.each([
    ['SCAN_BATCH_SIZE', 'abc'],
    ['SCAN_BATCH_SIZE', '-5'],
    ['SCAN_BATCH_SIZE', '1.5'],
    ['SCAN_BATCH_SIZE', '0'],
    ['PIPELINE_BATCH_SIZE', 'ten'],
    ['PIPELINE_BATCH_SIZE', '-1'],
    ['MAX_PROCESSED_EXISTING_KEYS_LIMIT', 'x'],
    ['MAX_ERRORED_KEYS_LIMIT', '-1'],
    ['MAX_ERRORED_KEYS_LIMIT', 'lots'],
    ['SOURCE_REDIS_PORT', 'abc'],
    ['SOURCE_REDIS_PORT', '-6379'],
    ['SOURCE_REDIS_PORT', '70000'],
    ['DESTINATION_REDIS_PORT', 'six'],
    ['SOURCE_REDIS_DB_INDEX', '-1'],
    ['DESTINATION_REDIS_DB_INDEX', 'one'],
    ['COLLECTION_CHUNK_SIZE', 'big'],
    ['SLEEP_TIME', 'abc'],
    ['SLEEP_TIME', '-1'],
    ['SLEEP_TIME', '-0.5'],
    ['SLEEP_TIME', 'Infinity'],
    ['SLEEP_TIME', '1s'],
    ['FILEMOD', 'x'],
    ['FILEMOD', 'r'],
    ['COPY_METHOD', 'rsync'],
    ['OVERWRITE_EXISTING_KEYS', 'maybe'],
    ['RECONNECT_TIMEOUT', 'forever'],
    ['RECONNECT_TIMEOUT', '-1'],
    ['REPLY_TIMEOUT', '10s'],
  ])('%s=%s', (name, value) => {
    const err = settingsError({ [name]: value });
    expect(err.message).toContain(name);
  });

  it('CHECKPOINT_FILE with SOURCE_RDB_FILE is refused, naming both', () => {
    const err = settingsError({ CHECKPOINT_FILE: 'run.checkpoint', SOURCE_RDB_FILE: 'dump.rdb' });
    expect(err.message).toMatch(/CHECKPOINT_FILE.*SOURCE_RDB_FILE/);
  });

  it('FILEMOD=x says which values are allowed', () => {
    const err = settingsError({ FILEMOD: 'x' });
    expect(err.message).toMatch(/^FILEMOD\b/);
    expect(err.message).toMatch(/\bw\b/);
    expect(err.message).toMatch(/\ba\b/);
  });

  it.each([
    ['SOURCE_REDIS_URL', 'not a url'],
    ['SOURCE_REDIS_URL', 'http://localhost:6379/0'],
    ['SOURCE_REDIS_URL', 'redis://localhost:6379/abc'],
    ['DESTINATION_REDIS_URL', 'redis://localhost:99999/0'],
    ['DESTINATION_REDIS_URL', 'localhost:6379'],
  ])('%s=%s', (name, value) => {
    expect(settingsError({ [name]: value }).message).toContain(name);
  });
});

describe('URLs', () => {
  it('give host, port, user, percent-decoded password and db from the path', () => {
    const s = parseSettings({
      SOURCE_REDIS_URL: 'redis://mover:p%40ss%3Aw%2Frd%25@src.example:7001/3',
      DESTINATION_REDIS_URL: 'redis://dst.example:7002/9',
    });
    expect(s.source).toEqual({ side: 'source', host: 'src.example', port: 7001, db: 3, username: 'mover', password: 'p@ss:w/rd%', replyTimeoutMs: 10_000, readFrom: 'master' });
    expect(s.target).toMatchObject({ host: 'dst.example', port: 7002, db: 9 });
    expect(s.target.username).toBeUndefined();
    expect(s.target.password).toBeUndefined();
  });

  it('percent-decode the user name too', () => {
    const s = parseSettings({ SOURCE_REDIS_URL: 'redis://us%40er:pw@h:1/0' });
    expect(s.source.username).toBe('us@er');
    expect(s.source.password).toBe('pw');
  });

  it('default to port 6379 and db 0', () => {
    expect(parseSettings({ SOURCE_REDIS_URL: 'redis://h' }).source).toMatchObject({ host: 'h', port: 6379, db: 0 });
    expect(parseSettings({ SOURCE_REDIS_URL: 'redis://h:1234/' }).source).toMatchObject({ host: 'h', port: 1234, db: 0 });
  });

  it('take a password without a user name', () => {
    const s = parseSettings({ DESTINATION_REDIS_URL: 'redis://:onlypw@h:1/2' });
    expect(s.target.username).toBeUndefined();
    expect(s.target.password).toBe('onlypw');
    expect(s.target.db).toBe(2);
  });

  it('replace host, port and db settings', () => {
    const s = parseSettings({ SOURCE_REDIS_URL: 'redis://h:1/4', SOURCE_REDIS_HOST: 'other', SOURCE_REDIS_PORT: '2', SOURCE_REDIS_DB_INDEX: '7' });
    expect(s.source).toMatchObject({ host: 'h', port: 1, db: 4 });
  });

  it('accept IPv6 hosts without brackets in the result', () => {
    expect(parseSettings({ SOURCE_REDIS_URL: 'redis://[::1]:7000/1' }).source).toMatchObject({ host: '::1', port: 7000, db: 1 });
  });
});

describe("a URL's password never appears in the error message", () => {
  const password = 'Hunter2Secret';
  it.each([
    ['wrong scheme', `http://user:${password}@host:6379/0`],
    ['bad db path', `redis://user:${password}@host:6379/zero`],
    ['port out of range', `redis://user:${password}@host:99999/0`],
    ['bad port', `redis://user:${password}@host:port/0`],
    // new URL() accepts these; decoding them must give a SettingsError, not an uncaught URIError.
    ['malformed percent-encoding in the password', `redis://user:${password}%E0%A4%A@host:6379/0`],
    ['malformed percent-encoding in the user name', `redis://us%E0er:${password}@host:6379/0`],
  ])('%s', (_what, url) => {
    for (const name of ['SOURCE_REDIS_URL', 'DESTINATION_REDIS_URL']) {
      const err = settingsError({ [name]: url });
      expect(err.message).toContain(name);
      expect(err.message).not.toContain(password);
      expect(err.message).not.toContain(url);
    }
  });
});

describe('cluster settings', () => {
  it('are off by default and read per side', () => {
    expect(parseSettings({}).source.cluster).toBeUndefined();
    const s = parseSettings({ SOURCE_REDIS_CLUSTER: 'true', DESTINATION_REDIS_CLUSTER: 'false' });
    expect(s.source.cluster).toBe(true);
    expect(s.target.cluster).toBeUndefined();
  });

  it.each([
    [{ DESTINATION_REDIS_CLUSTER: 'true', DESTINATION_REDIS_DB_INDEX: '1' }, 'DESTINATION_REDIS_DB_INDEX must select database 0 with DESTINATION_REDIS_CLUSTER=true (a cluster has no other), got 1'],
    [{ SOURCE_REDIS_CLUSTER: 'true', SOURCE_REDIS_URL: 'redis://h:7000/3' }, 'SOURCE_REDIS_URL must select database 0 with SOURCE_REDIS_CLUSTER=true (a cluster has no other), got 3'],
    [{ SOURCE_REDIS_CLUSTER: 'yes please' }, 'SOURCE_REDIS_CLUSTER must be true or false, got "yes please"'],
    [{ SOURCE_REDIS_CLUSTER: 'true', SOURCE_RDB_FILE: 'backup.rdb' }, 'SOURCE_RDB_FILE and SOURCE_REDIS_CLUSTER=true do not go together: an .rdb file is loaded into one private server'],
  ])('reject %j', (env, message) => {
    expect(settingsError(env).message).toBe(message);
  });
});
