// The replication stream's commands cut from its bytes: whole ones with their exact sizes (the offset counts them),
// a partial one waiting with the bytes it needs, and a byte no master writes refused.
import { describe, expect, it } from 'vitest';
import { parseCommands, StreamError } from '../lib/sources/stream-commands.js';

const encode = (...args: string[]): Buffer => Buffer.from(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`, 'latin1');

describe('parseCommands', () => {
  it('cuts whole commands, each with its size in bytes, and leaves a partial one for later', () => {
    const select = encode('SELECT', '0');
    const set = encode('SET', 'k', 'v\r\n');
    const partial = encode('RPUSH', 'list', 'x'.repeat(100)).subarray(0, 30);
    const parsed = parseCommands(Buffer.concat([select, set, partial]), 100);
    expect(parsed.commands.map((c) => c.map((a) => a.toString('latin1')))).toEqual([['SELECT', '0'], ['SET', 'k', 'v\r\n']]);
    expect(parsed.sizes).toEqual([select.length, set.length]);
    expect(parsed.used).toBe(select.length + set.length);
  });

  it('at most `max` commands at a time', () => {
    const parsed = parseCommands(Buffer.concat([encode('PING'), encode('PING'), encode('PING')]), 2);
    expect(parsed.commands).toHaveLength(2);
  });

  it('with no whole command, says how many bytes the next one needs (all of a big value at once)', () => {
    const whole = encode('SET', 'big', 'v'.repeat(10_000));
    const parsed = parseCommands(whole.subarray(0, 40), 10);
    expect(parsed.commands).toHaveLength(0);
    expect(parsed.need).toBe(whole.length);
    expect(parseCommands(whole.subarray(0, 5), 10).need).toBeGreaterThan(5);
  });

  it('a byte that cannot start a command is an error, not a wait', () => {
    expect(() => parseCommands(Buffer.from('+OK\r\n'), 10)).toThrow(StreamError);
    expect(() => parseCommands(Buffer.from('*1\r\n:5\r\n'), 10)).toThrow(StreamError);
  });
});
