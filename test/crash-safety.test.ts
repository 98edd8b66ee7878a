// A run killed with `kill -9` in the middle of a big key: the target never holds a partial key under the
// real name, only a self-expiring build key, and a rerun copies the key whole. Real servers, the real script.
import { beforeAll, describe, expect, it } from 'vitest';
import { runDir, serverPair } from './helpers/fixtures.js';
import { buildKeysOf, parseSummary } from './helpers/inspect.js';
import { endpoints, runMigrator, spawnMigrator, waitUntil } from './helpers/servers.js';

const BIG = 'big:list';
const ELEMENTS = 300_000;
const SEED = `
for first = 1, tonumber(ARGV[1]), 1000 do
  local args = {}
  for i = first, first + 999 do args[#args + 1] = 'element-' .. i end
  redis.call('RPUSH', KEYS[1], unpack(args))
end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return redis.call('LLEN', KEYS[1])
`;
/** 2100-01-01: an expiry that must come across exactly, and must not be the build key's safety expiry. */
const FAR_AT = 4_102_444_800_123;

describe('kill -9 during a big key', () => {
  const pair = serverPair();
  /** Elements in the build key of BIG on the target so far (0 before it exists). */
  const builtSoFar = async (): Promise<number> => {
    const [building] = await buildKeysOf(pair.target, BIG);
    return building ? Number(await pair.target.cmd('LLEN', building)) : 0;
  };
  beforeAll(async () => {
    expect(await pair.source.cmd('EVAL', SEED, 1, BIG, ELEMENTS, FAR_AT)).toBe(ELEMENTS);
    for (let i = 0; i < 50; i++) await pair.source.cmd('SET', `small:${i}`, `value ${i}`);
  });

  it.each([
    ['type', {}],
    ['dump', { DUMP_MAX_BYTES: 1_048_576 }],
  ])('COPY_METHOD=%s: no partial key under the real name; the rerun copies it whole', async (method, extra) => {
    await pair.target.cmd('FLUSHALL');
    const settings = { ...endpoints(pair.source, pair.target), COPY_METHOD: method, COLLECTION_CHUNK_SIZE: 100, ...extra };
    const run = spawnMigrator(settings, runDir());
    await waitUntil(async () => (await builtSoFar()) >= 20_000, 'the build key to hold part of the list', 20_000, 20);
    run.signalAll('SIGKILL');
    await run.done;

    const [building, ...others] = await buildKeysOf(pair.target, BIG);
    expect(others, 'one build at a time').toEqual([]);
    const left = Number(await pair.target.cmd('LLEN', building as Buffer));
    expect(left, 'the kill came after the copy finished; the test proves nothing').toBeLessThan(ELEMENTS);
    expect(await pair.target.cmd('EXISTS', BIG), 'a partial key is visible under the real name').toBe(0);
    const safety = Number(await pair.target.cmd('PTTL', building as Buffer));
    expect(safety, 'the build key must expire by itself').toBeGreaterThan(0);
    expect(safety).toBeLessThanOrEqual(3_600_000);

    const again = await runMigrator(settings, runDir());
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(parseSummary(again.stdout).failed).toBe(0);
    expect(Number(await pair.target.cmd('LLEN', BIG))).toBe(ELEMENTS);
    expect(await pair.target.cmd('DEBUG', 'DIGEST-VALUE', BIG)).toEqual(await pair.source.cmd('DEBUG', 'DIGEST-VALUE', BIG));
    expect(Number(await pair.target.cmd('PEXPIRETIME', BIG))).toBe(FAR_AT);
    // The rerun builds under a name of its own; the killed run's build is left to its expiry.
    expect(await buildKeysOf(pair.target, BIG), 'the rerun left its build key').toEqual([building]);
    expect(Number(await pair.target.cmd('DBSIZE')) - 1, 'other than the abandoned build').toBe(Number(await pair.source.cmd('DBSIZE')));
  });

  it('with OVERWRITE_EXISTING_KEYS=true an existing key stays whole until the new copy replaces it', async () => {
    await pair.target.cmd('FLUSHALL');
    await pair.target.cmd('RPUSH', BIG, 'old');
    const settings = { ...endpoints(pair.source, pair.target), COPY_METHOD: 'type', COLLECTION_CHUNK_SIZE: 100, OVERWRITE_EXISTING_KEYS: 'true' };
    const run = spawnMigrator(settings, runDir());
    await waitUntil(async () => (await builtSoFar()) >= 20_000, 'the build key to hold part of the list', 20_000, 20);
    run.signalAll('SIGKILL');
    await run.done;
    expect(await pair.target.cmd('LRANGE', BIG, 0, -1), 'the old value was touched before the new one was complete').toEqual(['old']);

    const again = await runMigrator(settings, runDir());
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(await pair.target.cmd('DEBUG', 'DIGEST-VALUE', BIG)).toEqual(await pair.source.cmd('DEBUG', 'DIGEST-VALUE', BIG));
  });
});
