// CommandKeys (lib/live/command-keys.ts), which finds a replicated command's keys, against a real redis-server: keys by
// the command table, movable ones asked of the source (COMMAND GETKEYS), and a source that keeps failing the ask
// with a loss reply waited out from its first loss, so RECONNECT_TIMEOUT bounds it.
import { ErrorReply } from '@redis/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Connection } from '../lib/net/connections.js';
import { CommandKeys } from '../lib/live/command-keys.js';
import { startRedis, type LocalServer } from './helpers/servers.js';

let server: LocalServer;
let connection: Connection;

beforeAll(async () => {
  server = await startRedis();
  connection = await Connection.open({ side: 'source', host: '127.0.0.1', port: server.port, db: 0 });
});

afterAll(async () => {
  await connection?.close();
  await server?.stop();
});

const args = (...words: string[]): Buffer[] => words.map((word) => Buffer.from(word));

/** A source node that answers every command with a loss reply, as one still loading its data does. */
const loading = { label: 'a loading source', send: async (): Promise<never> => Promise.reject(new ErrorReply('LOADING Redis is loading the dataset in memory')) } as unknown as Connection;

describe('CommandKeys', () => {
  it("finds a command's keys by the table, and asks the source where they move", async () => {
    const keys = await CommandKeys.learn(() => connection, () => Promise.reject(new Error('no loss expected')));
    expect(keys.positions(args('SET', 'k', 'v'))).toEqual([1]);
    const zunion = args('ZUNIONSTORE', 'out', '2', 'a', 'b');
    expect(keys.positions(zunion)).toBe('ask');
    expect(await keys.ask(zunion)).toEqual([1, 3, 4]);
  });

  it('waits out a source that keeps losing the ask from its first loss, then gives up with the loss', async () => {
    const asked: number[] = [];
    let source = connection;
    const keys = await CommandKeys.learn(() => source, async (_label, _err, lostSince) => {
      asked.push(lostSince);
      // As Recovery does once RECONNECT_TIMEOUT has passed since lostSince: the third loss is past it.
      if (asked.length === 3) throw new Error('still failing (RECONNECT_TIMEOUT)');
    });
    source = loading;
    const started = Date.now();
    await expect(keys.ask(args('ZUNIONSTORE', 'out', '2', 'a', 'b'))).rejects.toThrow('RECONNECT_TIMEOUT');
    expect(asked).toHaveLength(3);
    expect(new Set(asked).size).toBe(1);
    expect(asked[0]).toBeGreaterThanOrEqual(started);
  });
});
