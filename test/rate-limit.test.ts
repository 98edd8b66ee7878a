// MAX_KEYS_PER_SECOND and MAX_BYTES_PER_SECOND: the schedule on its own against a fake clock (steady, no burst after
// a pause, no slower than the limit), batches cut into pieces, and real runs measured second by second on the
// target's own clock (a Lua call reads TIME and the count at one instant).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { piecesOf, RateLimiter, SteadyRate } from '../lib/copy/rate-limit.js';
import type { StoredValue } from '../lib/records.js';
import { parseSettings, SettingsError } from '../lib/settings.js';
import { parseSummary } from './helpers/inspect.js';
import { endpoints, runMigrator, spawnMigrator, startRedis, tempDir, type RedisServer } from './helpers/servers.js';

/** A clock the test moves. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/**
 * A consumer that takes a piece whenever the schedule allows, for `ms` of fake time, with an optional pause:
 * the start time of every unit taken.
 */
function drive(rate: SteadyRate, clock: ReturnType<typeof fakeClock>, ms: number, pause?: { at: number; for: number }): number[] {
  const starts: number[] = [];
  const begin = clock.now();
  let paused = false;
  while (clock.now() - begin < ms) {
    if (pause && !paused && clock.now() - begin >= pause.at) {
      clock.advance(pause.for);
      paused = true;
    }
    const wait = rate.waitMs;
    if (wait > 0) {
      clock.advance(wait);
      continue;
    }
    for (let i = 0; i < rate.piece; i++) starts.push(clock.now());
    rate.take(rate.piece);
  }
  return starts;
}

/** The most units started in any window of one second. */
function busiestSecond(starts: readonly number[]): number {
  let most = 0;
  for (let i = 0, j = 0; i < starts.length; i++) {
    while ((starts[i] as number) - (starts[j] as number) >= 1000) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

describe('SteadyRate', () => {
  it('holds a ready consumer to the rate: every second at most the limit and a piece, and the limit on average', () => {
    const clock = fakeClock();
    const rate = new SteadyRate(1000, clock.now);
    const starts = drive(rate, clock, 10_000);
    expect(rate.piece).toBe(25);
    expect(busiestSecond(starts)).toBeLessThanOrEqual(1000 + rate.piece);
    // No slower than the limit: 10 s at 1000 a second.
    expect(starts.length).toBeGreaterThanOrEqual(10_000 - rate.piece);
    expect(starts.length).toBeLessThanOrEqual(10_000 + 2 * rate.piece);
  });

  it('saves no time up during a pause: the second after it carries no more than any other', () => {
    const clock = fakeClock();
    const rate = new SteadyRate(1000, clock.now);
    const starts = drive(rate, clock, 10_000, { at: 2000, for: 5000 });
    expect(busiestSecond(starts)).toBeLessThanOrEqual(1000 + 2 * rate.piece);
  });

  it('a limit below the piece count still goes one at a time', () => {
    const clock = fakeClock();
    const rate = new SteadyRate(3, clock.now);
    const starts = drive(rate, clock, 5_000);
    expect(rate.piece).toBe(1);
    expect(busiestSecond(starts)).toBeLessThanOrEqual(4);
    expect(starts.length).toBeGreaterThanOrEqual(14);
  });
});

describe('RateLimiter', () => {
  it('bytes sent make the next piece wait, and pieces shrink to a share of the bytes limit at the bytes per key seen', () => {
    const clock = fakeClock();
    let sent = 0;
    const limiter = new RateLimiter({ keysPerSecond: 0, bytesPerSecond: 40_000 }, () => sent, clock.now);
    expect(limiter.limited).toBe(true);
    expect(limiter.pieceKeys, 'nothing known yet: one key').toBe(1);
    expect(limiter.pieceKeys, 'not twice').toBe(1);
    expect(limiter.waitMs()).toBe(0);
    limiter.start(1);
    sent += 10_000; // that key was 10,000 bytes: a quarter of a second's worth
    expect(limiter.waitMs()).toBeGreaterThanOrEqual(200);
    clock.advance(limiter.waitMs());
    expect(limiter.waitMs()).toBe(0);
    limiter.start(2);
    sent += 2 * 100; // smaller keys since: 3400 bytes a key on average
    expect(limiter.pieceKeys, 'keys of 3,400 bytes on average, pieces of 1,000 bytes: one key').toBe(1);
    limiter.start(97);
    sent += 97 * 10; // 100 keys, 11,170 bytes: 111.7 a key; a piece is 1,000 bytes
    expect(limiter.pieceKeys).toBe(Math.floor(1000 / 111.7));
    // A big key's chunks wait for the same bytes.
    sent += 40_000;
    expect(limiter.chunkWaitMs()).toBeGreaterThan(900);
  });

  it('keys and bytes together: the stricter one decides', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ keysPerSecond: 400, bytesPerSecond: 1_000_000 }, () => 0, clock.now);
    const pieces: number[] = [];
    for (let i = 0; i < 6; i++) {
      pieces.push(limiter.pieceKeys);
      limiter.start(limiter.pieceKeys);
      clock.advance(limiter.waitMs());
    }
    // Doubling from one key while bytes are unknown, up to the keys limit's piece (400 / 40).
    expect(pieces).toEqual([1, 2, 4, 8, 10, 10]);
    expect(limiter.waitMs()).toBe(0);
    limiter.start(10);
    expect(limiter.waitMs(), 'the keys limit').toBeGreaterThan(0);
  });

  it('no limit set: nothing waits and batches are not cut', () => {
    const limiter = new RateLimiter({ keysPerSecond: 0, bytesPerSecond: 0 }, () => 1e12);
    expect(limiter.limited).toBe(false);
    expect(limiter.waitMs()).toBe(0);
  });
});

describe('piecesOf', () => {
  const key = (i: number): Buffer => Buffer.from(`k${i}`);
  const stored = (i: number): StoredValue => ({ expireAt: -1, type: 0, value: Buffer.from(`v${i}`), rdbVersion: 9 });

  it('keeps keys with their values, in order, every key once', () => {
    const keys = Array.from({ length: 10 }, (_, i) => key(i));
    const pieces = [...piecesOf({ keys, stored: keys.map((_, i) => stored(i)) }, () => 4)];
    expect(pieces.map((p) => p.keys.length)).toEqual([4, 4, 2]);
    expect(pieces.flatMap((p) => p.keys.map(String))).toEqual(keys.map(String));
    expect(pieces.flatMap((p) => (p.stored ?? []).map((s) => String(s.value)))).toEqual(keys.map((_, i) => `v${i}`));
  });

  it('asks the size before each piece (bytes per key learnt as the copy goes)', () => {
    const sizes = [1, 3, 100];
    const pieces = [...piecesOf({ keys: Array.from({ length: 7 }, (_, i) => key(i)) }, () => sizes.shift() ?? 100)];
    expect(pieces.map((p) => p.keys.length)).toEqual([1, 3, 3]);
  });

  it('an empty batch (a scan\'s end) is one empty piece, so its place in the scan is still confirmed', () => {
    expect([...piecesOf({ keys: [] }, () => 5)]).toEqual([{ keys: [] }]);
  });
});

describe('the settings', () => {
  it('a limit that is not a whole number fails before connecting, naming the variable', () => {
    for (const [name, value] of [['MAX_KEYS_PER_SECOND', '-5'], ['MAX_BYTES_PER_SECOND', '10MB']]) {
      expect(() => parseSettings({ [name as string]: value as string })).toThrow(SettingsError);
      expect(() => parseSettings({ [name as string]: value as string })).toThrow(new RegExp(`^${name} must be a whole number 0 or more`));
    }
    expect(parseSettings({}).rateLimits).toEqual({ keysPerSecond: 0, bytesPerSecond: 0 });
    // A key over one second's worth of the bytes limit goes in chunks, not in one RESTORE.
    expect(parseSettings({ MAX_BYTES_PER_SECOND: '100000' }).dumpMaxBytes).toBe(100_000);
    expect(parseSettings({ MAX_BYTES_PER_SECOND: '100000', DUMP_MAX_BYTES: '5000' }).dumpMaxBytes).toBe(5000);
  });
});

/** The target's clock and a measure of what it holds, read in one Lua call, every ~50 ms until the run ends. */
async function sampleDuring(target: RedisServer, measure: string, running: Promise<unknown>): Promise<{ at: number; value: number }[]> {
  const script = `local t = redis.call('TIME') ${measure}`;
  const samples: { at: number; value: number }[] = [];
  let ended = false;
  void running.finally(() => (ended = true));
  while (!ended) {
    const [seconds, micros, value] = (await target.cmd('EVAL', script, 0)) as [string, string, number];
    samples.push({ at: Number(seconds) * 1000 + Number(micros) / 1000, value: Number(value) });
    await new Promise((r) => setTimeout(r, 50));
  }
  return samples;
}

/** The most the measure grew within any one second of the target's clock. */
function mostInOneSecond(samples: readonly { at: number; value: number }[]): number {
  let most = 0;
  for (let i = 0; i < samples.length; i++) {
    for (let j = i + 1; j < samples.length && (samples[j]?.at ?? 0) - (samples[i]?.at ?? 0) <= 1000; j++) {
      most = Math.max(most, (samples[j]?.value ?? 0) - (samples[i]?.value ?? 0));
    }
  }
  return most;
}

describe('a rate-limited run, measured second by second on the target', () => {
  let source: RedisServer;
  let target: RedisServer;
  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });
  beforeEach(async () => {
    await Promise.all([source.cmd('FLUSHALL'), target.cmd('FLUSHALL')]);
  });

  it('MAX_KEYS_PER_SECOND=200: no second on the target gains more than the limit (and the slack of a piece in flight); every key copied', async () => {
    await source.cmd('EVAL', "for i = 1, 600 do redis.call('SET', 'key:' .. i, i) end return 1", 0);
    const run = spawnMigrator({ ...endpoints(source, target), MAX_KEYS_PER_SECOND: 200 }, tempDir());
    const samples = await sampleDuring(target, "return {t[1], t[2], redis.call('DBSIZE')}", run.done);
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(parseSummary(result.stdout).restored).toBe(600);
    expect(Number(await target.cmd('DBSIZE'))).toBe(600);
    // 600 keys at 200 a second take three seconds; an unlimited run lands them all within one.
    expect(mostInOneSecond(samples), JSON.stringify(samples)).toBeLessThanOrEqual(200 * 1.25);
  }, 60_000);

  it('with CHECKPOINT_FILE: a batch cut into pieces is counted whole, once all its pieces are copied; a rerun finds every key done', async () => {
    await source.cmd('EVAL', "for i = 1, 600 do redis.call('SET', 'key:' .. i, i) end return 1", 0);
    const dir = tempDir();
    const settings = { ...endpoints(source, target), MAX_KEYS_PER_SECOND: 1000, SOURCE_READER: 'scan', CHECKPOINT_FILE: 'run.checkpoint' };
    const first = await runMigrator(settings, dir);
    expect(first.code, first.stderr).toBe(0);
    expect(parseSummary(first.stdout).restored).toBe(600);
    const again = await runMigrator(settings, dir);
    expect(again.code, again.stdout).toBe(0);
    expect(again.stdout).toMatch(/^Nothing left to do: run\.checkpoint records a migration completed at .* \(600 keys\)/m);
  }, 60_000);

  it('MAX_BYTES_PER_SECOND=160000: small keys and a big hash copied in chunks both held to it; every byte copied', async () => {
    // Values that do not compress: the bytes sent are the bytes the target holds.
    for (let i = 1; i <= 40; i++) await source.cmd('SET', `key:${i}`, randomBytes(8000));
    for (let i = 1; i <= 200; i++) await source.cmd('HSET', 'big', `f${i}`, randomBytes(1000));
    const env = { ...endpoints(source, target), MAX_BYTES_PER_SECOND: 160_000, DUMP_MAX_BYTES: 65_536, COLLECTION_CHUNK_SIZE: 20 };
    const run = spawnMigrator(env, tempDir());
    // Value bytes on the target, the big hash's build (under its temporary name) included.
    const measure = `local n = 0
      for _, k in ipairs(redis.call('KEYS', '*')) do
        local kind = redis.call('TYPE', k).ok
        if kind == 'string' then n = n + redis.call('STRLEN', k) elseif kind == 'hash' then n = n + 1000 * redis.call('HLEN', k) end
      end
      return {t[1], t[2], n}`;
    const samples = await sampleDuring(target, measure, run.done);
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(parseSummary(result.stdout).restored).toBe(41);
    expect(Number(await target.cmd('HLEN', 'big'))).toBe(200);
    // 520,000 bytes at 160,000 a second take over three seconds; unlimited, they land at once.
    expect(mostInOneSecond(samples), JSON.stringify(samples)).toBeLessThanOrEqual(160_000 * 1.25);
  }, 60_000);
});
