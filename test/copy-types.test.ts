import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSummary } from './helpers/inspect.js';
import { digest, seedEveryType, BINARY_KEY } from './helpers/sample-data.js';
import { endpoints, runMigrator, startRedis, tempDir, type RedisServer } from './helpers/servers.js';

let source: RedisServer;
let target: RedisServer;

beforeAll(async () => {
  [source, target] = await Promise.all([startRedis(), startRedis()]);
  await seedEveryType(source);
});
afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
});

describe.each(['dump', 'type', 'auto'])('COPY_METHOD=%s', (method) => {
  it('copies every type, binary keys and TTLs exactly', async () => {
    await target.cmd('FLUSHALL');
    const run = await runMigrator({ ...endpoints(source, target), COPY_METHOD: method }, tempDir());
    expect(run.stdout).toContain('Connected to Redis instances successfully');
    expect(parseSummary(run.stdout).restored).toBe(17);
    expect(run.code).toBe(0);
    expect(await digest(target)).toBe(await digest(source));
    expect(await target.cmd('PEXPIRETIME', 'ttl-string')).toBe(await source.cmd('PEXPIRETIME', 'ttl-string'));
    expect(await target.cmd('PTTL', 'string')).toBe(-1);
    expect((await target.client.sendCommand(['GET', BINARY_KEY])) as Buffer).toEqual(Buffer.from([...BINARY_KEY, ...Buffer.from('-value')]));
    expect(await target.cmd('XPENDING', 'stream', 'workers')).toEqual(await source.cmd('XPENDING', 'stream', 'workers'));
    expect(await target.cmd('XINFO', 'GROUPS', 'stream')).toEqual(await source.cmd('XINFO', 'GROUPS', 'stream'));
  });
});
