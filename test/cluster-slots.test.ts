// Hash slots as the cluster spec defines them (CRC16/XMODEM, hash tags), checked against a real node.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keySlot } from '../lib/net/cluster.js';
import { startRedis, type RedisServer } from './helpers/servers.js';

let node: RedisServer;

beforeAll(async () => {
  node = await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']);
});
afterAll(async () => {
  await node?.stop();
});

const slot = (key: string): number => keySlot(Buffer.from(key));

describe('keySlot', () => {
  it('is CRC16/XMODEM mod 16384: the check value of "123456789" is 0x31C3', () => {
    expect(slot('123456789')).toBe(0x31c3);
    expect(slot('foo')).toBe(12182);
    expect(slot('')).toBe(0);
  });

  it('hashes only a non-empty {tag}: the first { and the next } (the spec\'s examples)', async () => {
    expect(slot('{user1000}.following')).toBe(slot('user1000'));
    expect(slot('{user1000}.followers')).toBe(slot('user1000'));
    expect(slot('foo{{bar}}zap')).toBe(slot('{bar'));
    expect(slot('foo{bar}{zap}')).toBe(slot('bar'));
    // An empty first tag, or no closing brace: the whole key is hashed.
    for (const key of ['foo{}{bar}', 'no-close{tag', '{}', '}{']) {
      expect(slot(key), key).toBe(Number(await node.cmd('CLUSTER', 'KEYSLOT', key)));
    }
    expect(slot('foo{}{bar}')).not.toBe(slot('bar'));
  });

  it('agrees with CLUSTER KEYSLOT for 500 random binary keys, with and without braces', async () => {
    const keys = Array.from({ length: 500 }, (_, i) => {
      const bytes = randomBytes(1 + (i % 40));
      if (i % 3 === 0) bytes[i % bytes.length] = 0x7b; // '{'
      if (i % 3 === 0 && bytes.length > 4) bytes[bytes.length - 2] = 0x7d; // '}'
      return bytes;
    });
    const theirs = await Promise.all(keys.map((key) => node.client.sendCommand(['CLUSTER', 'KEYSLOT', key])));
    expect(keys.map(keySlot)).toEqual(theirs.map(Number));
  });
});
