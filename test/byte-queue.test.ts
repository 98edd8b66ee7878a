// The replication link's queue of unread bytes (lib/sources/byte-queue.ts): one order across memory and the
// spool file, whatever the chunk sizes, and room reported as the caps say. Small caps, real files.
import { describe, expect, it } from 'vitest';
import { ByteQueue, SpoolUse } from '../lib/sources/byte-queue.js';

/** Pushes `text` in chunks of `size` bytes. */
function pushAll(queue: ByteQueue, text: string, size: number): void {
  for (let at = 0; at < text.length; at += size) queue.push(Buffer.from(text.slice(at, at + size)));
}

function takeText(queue: ByteQueue, count: number): string {
  const out = Buffer.alloc(count);
  queue.take(out, 0, count);
  return out.toString();
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

describe('ByteQueue', () => {
  it('keeps the order when bytes spill to the spool and are read back across the boundary', () => {
    const use = new SpoolUse();
    const queue = new ByteQueue(10, 1000, use);
    pushAll(queue, ALPHABET, 4);
    expect(queue.size).toBe(ALPHABET.length);
    expect(use.peakBytes).toBeGreaterThan(0);
    expect(queue.peek(14).toString()).toBe(ALPHABET.slice(0, 14));
    expect(takeText(queue, 7)).toBe(ALPHABET.slice(0, 7));
    expect(takeText(queue, 20)).toBe(ALPHABET.slice(7, 27));
    pushAll(queue, 'XYZ', 2); // still behind what waits on disk
    expect(takeText(queue, queue.size)).toBe(`${ALPHABET.slice(27)}XYZ`);
    queue.close();
  });

  it('goes back to memory once the spool is read out, and spills again after', () => {
    const queue = new ByteQueue(8, 1000);
    pushAll(queue, ALPHABET.slice(0, 20), 5);
    expect(takeText(queue, 20)).toBe(ALPHABET.slice(0, 20));
    expect(queue.size).toBe(0);
    pushAll(queue, ALPHABET.slice(20), 3);
    expect(takeText(queue, 16)).toBe(ALPHABET.slice(20));
    queue.close();
  });

  it('has no room past the spool cap, and room again once half of it is read', () => {
    const queue = new ByteQueue(4, 10);
    pushAll(queue, ALPHABET.slice(0, 4), 4);
    expect(queue.hasRoom).toBe(true); // memory full: the next chunk goes to disk, which has room
    queue.push(Buffer.from('efghijklmn'));
    expect(queue.hasRoom).toBe(false);
    takeText(queue, 4);
    expect(queue.drained).toBe(false);
    takeText(queue, 6);
    expect(queue.drained).toBe(true);
    queue.close();
  });

  it('without a spool (0): everything stays in memory, and memory over its cap means no room', () => {
    const use = new SpoolUse();
    const queue = new ByteQueue(4, 0, use);
    pushAll(queue, ALPHABET.slice(0, 12), 3);
    expect(use.peakBytes).toBe(0);
    expect(queue.hasRoom).toBe(false);
    expect(takeText(queue, 12)).toBe(ALPHABET.slice(0, 12));
    expect(queue.drained).toBe(true);
  });
});
