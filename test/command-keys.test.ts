// CommandKeys (lib/live/command-keys.ts), which finds a replicated command's keys, against a real redis-server: keys by
// the command table, movable ones asked of the source (COMMAND GETKEYS), and an ask whose connection is cut (a fault
// proxy) waited out from its first loss, so RECONNECT_TIMEOUT bounds it.
import { describe, expect, it } from 'vitest';
import { Connection } from '../lib/net/connections.js';
import { CommandKeys } from '../lib/live/command-keys.js';
import { serverWithConnection } from './helpers/fixtures.js';
import { startProxy } from './helpers/proxy.js';

const open = serverWithConnection('source');

/** Waits, a turn of the event loop at a time, until the clock reads past `at`. */
async function untilClockPasses(at: number): Promise<void> {
  while (Date.now() <= at) await new Promise<void>((resolve) => setImmediate(resolve));
}

const args = (...words: string[]): Buffer[] => words.map((word) => Buffer.from(word));

describe('CommandKeys', () => {
  it("finds a command's keys by the table, and asks the source where they move", async () => {
    const keys = await CommandKeys.learn(() => open.connection, () => Promise.reject(new Error('no loss expected')));
    expect(keys.positions(args('SET', 'k', 'v'))).toEqual([1]);
    const zunion = args('ZUNIONSTORE', 'out', '2', 'a', 'b');
    expect(keys.positions(zunion)).toBe('ask');
    expect(await keys.ask(zunion)).toEqual([1, 3, 4]);
  });

  it('waits out an ask whose connection is cut from its first loss, then gives up with the loss', async () => {
    const proxy = await startProxy(open.server.port);
    const cut = await Connection.open({ side: 'source', host: '127.0.0.1', port: proxy.port, db: 0 });
    try {
      const asked: number[] = [];
      const keys = await CommandKeys.learn(() => cut, async (_label, _err, lostSince) => {
        asked.push(lostSince);
        // As Recovery does once RECONNECT_TIMEOUT has passed since lostSince: the third loss is past it.
        if (asked.length === 3) throw new Error('still failing (RECONNECT_TIMEOUT)');
        // The clock moves on before the next try, so each loss has a time of its own to tell apart.
        await untilClockPasses(Date.now() + 2);
      });
      const started = Date.now();
      await proxy.close();
      await expect(keys.ask(args('ZUNIONSTORE', 'out', '2', 'a', 'b'))).rejects.toThrow('RECONNECT_TIMEOUT');
      expect(asked).toHaveLength(3);
      expect(new Set(asked).size).toBe(1);
      expect(asked[0]).toBeGreaterThanOrEqual(started);
    } finally {
      await cut.close();
    }
  });
});
