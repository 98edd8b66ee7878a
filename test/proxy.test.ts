// The fault-injection proxy itself, against real redis-server processes: plain forwarding, resets, stalls,
// refused connections and retargeting. Clients are raw sockets speaking RESP, so no client library retries hide a fault.
import { connect, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startProxy, type FaultProxy } from './helpers/proxy.js';
import { startRedis, type RedisServer } from './helpers/servers.js';

let first: RedisServer;
let second: RedisServer;
let proxy: FaultProxy;
const sockets: Socket[] = [];

beforeAll(async () => {
  [first, second] = await Promise.all([startRedis(), startRedis()]);
});
afterAll(async () => {
  await Promise.all([first?.stop(), second?.stop()]);
});
beforeEach(async () => {
  proxy = await startProxy(first.port);
});
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await proxy.close();
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface RawClient {
  /** Sends one command; resolves with the reply (simple, error, integer or bulk string; null for a nil bulk),
   * rejects when the socket closes or errors before the reply. One request at a time. */
  request(...args: string[]): Promise<string | null>;
}

/** A raw RESP connection to the proxy; resolves once TCP connects, rejects if it is reset first. */
function rawClient(port: number): Promise<RawClient> {
  return new Promise((resolveClient, rejectClient) => {
    const socket = connect({ port, host: '127.0.0.1' });
    sockets.push(socket);
    let buffered = '';
    let waiter: { resolve: (reply: string | null) => void; reject: (err: Error) => void } | undefined;
    let gone: Error | undefined;
    const settle = (): void => {
      if (!waiter) return;
      const lineEnd = buffered.indexOf('\r\n');
      if (lineEnd < 0) return;
      const line = buffered.slice(0, lineEnd);
      let reply: string | null = line.slice(1);
      let used = lineEnd + 2;
      if (line.startsWith('$')) {
        const length = Number(line.slice(1));
        if (length < 0) reply = null;
        else {
          if (buffered.length < used + length + 2) return;
          reply = buffered.slice(used, used + length);
          used += length + 2;
        }
      }
      buffered = buffered.slice(used);
      const current = waiter;
      waiter = undefined;
      current.resolve(reply);
    };
    const fail = (err: Error): void => {
      gone ??= err;
      waiter?.reject(gone);
      waiter = undefined;
    };
    socket.on('data', (data: Buffer) => {
      buffered += data.toString();
      settle();
    });
    // Errors (ECONNRESET after a cut) are expected here and must not crash the run.
    socket.on('error', (err) => {
      fail(err);
      rejectClient(err);
    });
    socket.on('close', () => fail(new Error('socket closed')));
    socket.once('connect', () =>
      resolveClient({
        request: (...args) =>
          new Promise((resolve, reject) => {
            if (gone) return reject(gone);
            waiter = { resolve, reject };
            socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
          }),
      }),
    );
  });
}

/** Resolves with `fallback` if `promise` has not settled within `ms`. */
function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  return Promise.race([promise, sleep(ms).then(() => fallback)]);
}

describe('fault proxy', () => {
  it('forwards a PING to redis and the PONG back', async () => {
    const client = await rawClient(proxy.port);
    expect(await client.request('PING')).toBe('PONG');
    expect(proxy.accepted).toBe(1);
  });

  it('cutAll() breaks an open connection, and a new connection works afterwards', async () => {
    const open = await rawClient(proxy.port);
    expect(await open.request('PING')).toBe('PONG');
    proxy.cutAll();
    await expect(open.request('PING')).rejects.toThrow();
    const fresh = await rawClient(proxy.port);
    expect(await fresh.request('PING')).toBe('PONG');
  });

  it('stall(800) holds a PING past 300 ms and delivers the PONG once the stall ends', async () => {
    const client = await rawClient(proxy.port);
    expect(await client.request('PING')).toBe('PONG');
    const started = Date.now();
    const stalled = proxy.stall(800);
    const reply = client.request('PING');
    expect(await within(reply, 300, 'no reply yet')).toBe('no reply yet');
    await stalled;
    expect(await reply).toBe('PONG');
    expect(Date.now() - started).toBeGreaterThanOrEqual(750);
  });

  it('a connection opened during a stall is held, not refused, and works once the stall ends', async () => {
    const stalled = proxy.stall(500);
    const client = await rawClient(proxy.port);
    const reply = client.request('PING');
    expect(await within(reply, 200, 'no reply yet')).toBe('no reply yet');
    await stalled;
    expect(await reply).toBe('PONG');
  });

  it('refuse(500) fails new connections for its duration, then lets them through', async () => {
    const refused = proxy.refuse(500);
    // The reset can land before or after the client sees its connect: either way there is no PONG.
    await expect(rawClient(proxy.port).then((during) => during.request('PING'))).rejects.toThrow();
    await refused;
    const after = await rawClient(proxy.port);
    expect(await after.request('PING')).toBe('PONG');
    expect(proxy.accepted).toBe(2);
  });

  it('retarget() sends new connections to the other server', async () => {
    await second.cmd('SET', 'proxy:which', 'second');
    try {
      const before = await rawClient(proxy.port);
      expect(await before.request('GET', 'proxy:which')).toBeNull();
      proxy.retarget(second.port);
      const after = await rawClient(proxy.port);
      expect(await after.request('GET', 'proxy:which')).toBe('second');
    } finally {
      await second.cmd('DEL', 'proxy:which');
    }
  });
});
