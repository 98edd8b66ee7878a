// The hand-written RESP of lib/net/resp.ts: commands encoded byte for byte as Redis reads them, and replies
// parsed whatever the socket's chunk boundaries, checked against a real redis-server as well.
import { ErrorReply } from '@redis/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pipeline } from '../lib/net/pipeline.js';
import { RespParser, RespWriter, type PipeReply } from '../lib/net/resp.js';
import { startRedis, type RedisServer } from './helpers/servers.js';

const encoded = (write: (w: RespWriter) => void, asking = false): string => {
  const writer = new RespWriter(8, asking); // small, so it must grow
  write(writer);
  return writer.bytes.toString('latin1');
};

describe('RespWriter', () => {
  it('encodes strings, Buffers and integers as bulk strings, growing as needed', () => {
    const big = Buffer.alloc(1000, 0x61);
    expect(encoded((w) => w.command(['SET', Buffer.from([0, 13, 10, 255]), '']))).toBe('*3\r\n$3\r\nSET\r\n$4\r\n\x00\r\n\xff\r\n$0\r\n\r\n');
    expect(encoded((w) => w.command(['X', big]))).toBe(`*2\r\n$1\r\nX\r\n$1000\r\n${'a'.repeat(1000)}\r\n`);
    for (const n of [0, 7, 10, 99, 100, 1234567890123, Number.MAX_SAFE_INTEGER]) {
      expect(encoded((w) => {
        w.begin(1);
        w.integer(n);
      })).toBe(`*1\r\n$${String(n).length}\r\n${n}\r\n`);
    }
    expect(() => new RespWriter().integer(-1)).toThrow(RangeError);
    expect(() => new RespWriter().integer(1.5)).toThrow(RangeError);
  });

  it('counts commands, and an ASKING before each one on an asking writer', () => {
    const writer = new RespWriter(64, true);
    writer.command(['GET', 'a']);
    writer.command(['GET', 'b']);
    expect(writer.commands).toBe(4);
    expect(writer.bytes.toString()).toBe('*1\r\n$6\r\nASKING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$6\r\nASKING\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n');
  });
});

describe('RespParser', () => {
  const stream = Buffer.from('+OK\r\n-BUSYKEY Target key name already exists.\r\n:42\r\n$-1\r\n$5\r\nhe\r\no\r\n*3\r\n:1\r\n$0\r\n\r\n*1\r\n-ERR x\r\n*-1\r\n$0\r\n\r\n');
  const expected = (replies: PipeReply[]): void => {
    expect(replies.length).toBe(8);
    expect(replies[0]).toBe('OK');
    expect(replies[1]).toBeInstanceOf(ErrorReply);
    expect((replies[1] as ErrorReply).message).toBe('BUSYKEY Target key name already exists.');
    expect(replies[2]).toBe(42);
    expect(replies[3]).toBeNull();
    expect(replies[4]).toEqual(Buffer.from('he\r\no'));
    expect(replies[5]).toEqual([1, Buffer.alloc(0), [new ErrorReply('ERR x')]]);
    expect(replies[6]).toBeNull();
    expect(replies[7]).toEqual(Buffer.alloc(0));
  };

  it('parses every reply type in one chunk', () => {
    const replies: PipeReply[] = [];
    new RespParser((r) => replies.push(r)).feed(stream);
    expected(replies);
  });

  it('gives the same replies when the stream is cut at every byte, or fed a byte at a time', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const replies: PipeReply[] = [];
      const parser = new RespParser((r) => replies.push(r));
      parser.feed(stream.subarray(0, cut));
      parser.feed(stream.subarray(cut));
      expected(replies);
    }
    const replies: PipeReply[] = [];
    const parser = new RespParser((r) => replies.push(r));
    for (let i = 0; i < stream.length; i++) parser.feed(stream.subarray(i, i + 1));
    expected(replies);
  });

  it('refuses a byte that starts no reply', () => {
    expect(() => new RespParser(() => undefined).feed(Buffer.from('?what\r\n'))).toThrow(/unexpected reply byte 0x3f/);
  });
});

describe('Pipeline, against redis-server', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis(['--requirepass', 'secret']);
  });
  afterAll(async () => server?.stop().catch(() => undefined));

  const endpoint = (password: string | undefined, db = 2) => ({ side: 'destination' as const, host: '127.0.0.1', port: server.port, db, password });

  it('authenticates, selects the database, and answers 10,000 commands in order, errors in their place', async () => {
    const pipeline = await Pipeline.open(endpoint('secret'), () => undefined);
    const writer = new RespWriter();
    for (let i = 0; i < 10_000; i++) writer.command(i % 1000 === 7 ? ['NOSUCHCOMMAND'] : ['SET', `k${i}`, Buffer.alloc(i % 50, i)]);
    writer.command(['DBSIZE']);
    writer.command(['GET', 'k49']);
    const replies = await pipeline.send(writer);
    expect(replies.length).toBe(10_002);
    expect(replies.filter((r) => r instanceof ErrorReply).length).toBe(10);
    expect(replies[7]).toBeInstanceOf(ErrorReply);
    expect(replies[10_000]).toBe(9990);
    expect(replies[10_001]).toEqual(Buffer.alloc(49, 49));
    pipeline.destroy(new Error('done'));
  });

  it('a wrong password rejects the open with the server\'s error', async () => {
    await expect(Pipeline.open(endpoint('wrong'), () => undefined)).rejects.toThrow(/WRONGPASS|invalid password/);
  });

  it('a socket closed by the server rejects what waits on it as a loss', async () => {
    const pipeline = await Pipeline.open(endpoint('secret', 0), () => undefined);
    const writer = new RespWriter();
    writer.command(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'no']);
    writer.command(['PING']);
    await expect(pipeline.send(writer)).rejects.toThrow(/Socket closed unexpectedly|ECONNRESET/);
    expect(pipeline.usable).toBe(false);
  });
});
