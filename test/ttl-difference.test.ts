// Expiry and payload comparison rules of the verifier (lib/verify/compare-key.ts), on their own: when two
// expire-at times count as the same, and when two DUMP payloads hold the same value. No server is started.
import { describe, expect, it } from 'vitest';
import { samePayload, ttlDifference } from '../lib/verify/compare-key.js';
import { dumpPayload, restampPayload } from '../lib/rdb/payload.js';

const AT = 2_000_000_000_123;

describe('ttlDifference (expire-at times in ms, -1 for none)', () => {
  it('finds no difference between two keys without an expiry', () => {
    expect(ttlDifference(-1, -1, 0)).toBeNull();
    expect(ttlDifference(-1, -1, 100)).toBeNull();
  });

  it('finds no difference between equal expiries, even with no tolerance', () => {
    expect(ttlDifference(AT, AT, 0)).toBeNull();
  });

  it('accepts a difference up to the tolerance, in either direction, and refuses one more millisecond', () => {
    expect(ttlDifference(AT, AT + 100, 100)).toBeNull();
    expect(ttlDifference(AT, AT - 100, 100)).toBeNull();
    expect(ttlDifference(AT, AT + 101, 100)).toBe('expiry differs by 101 ms');
    expect(ttlDifference(AT, AT - 101, 100)).toBe('expiry differs by -101 ms');
    expect(ttlDifference(AT, AT + 1, 0)).toBe('expiry differs by 1 ms');
  });

  it('gives the difference as target minus source', () => {
    expect(ttlDifference(AT, AT + 60_000, 100)).toBe('expiry differs by 60000 ms');
    expect(ttlDifference(AT + 60_000, AT, 100)).toBe('expiry differs by -60000 ms');
  });

  it('reports a key persistent on one side and expiring on the other, however close the tolerance', () => {
    expect(ttlDifference(-1, AT, 0)).toBe(`no expiry on the source, expires at ${AT} on the target`);
    expect(ttlDifference(AT, -1, 0)).toBe(`expires at ${AT} on the source, no expiry on the target`);
    expect(ttlDifference(-1, AT, Number.MAX_SAFE_INTEGER), 'no tolerance turns an expiry into none').not.toBeNull();
    expect(ttlDifference(AT, -1, Number.MAX_SAFE_INTEGER)).not.toBeNull();
  });

  it('reads any negative value as no expiry: -2 (a missing key or hash field) is compared as none', () => {
    expect(ttlDifference(-2, -1, 0)).toBeNull();
    expect(ttlDifference(-1, -2, 0)).toBeNull();
    expect(ttlDifference(-2, AT, 0)).toBe(`no expiry on the source, expires at ${AT} on the target`);
    expect(ttlDifference(AT, -2, 0)).toBe(`expires at ${AT} on the source, no expiry on the target`);
  });

  it('compares an expiry at 0 ms (the epoch) as an expiry, not as none', () => {
    expect(ttlDifference(0, -1, 1_000)).toBe('expires at 0 on the source, no expiry on the target');
    expect(ttlDifference(0, 50, 100)).toBeNull();
  });
});

describe('samePayload', () => {
  const value = Buffer.from([0x00, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f]); // a string "hello"
  const record = (payload: Buffer, expireAt = -1) => ({ expireAt, payload });

  it('holds for the same value bytes under another RDB version and CRC (a payload restamped for an older target)', () => {
    const v12 = dumpPayload(value, 12);
    expect(samePayload(record(v12), record(restampPayload(v12, 9)))).toBe(true);
    expect(samePayload(record(v12), record(Buffer.from(v12)))).toBe(true);
  });

  it('ignores the expiries: those are compared apart', () => {
    const p = dumpPayload(value, 11);
    expect(samePayload(record(p, -1), record(p, AT))).toBe(true);
  });

  it('fails for one value byte changed, or a value of another length', () => {
    const p = dumpPayload(value, 11);
    const changed = Buffer.from(value);
    changed[6] = 0x70;
    expect(samePayload(record(p), record(dumpPayload(changed, 11)))).toBe(false);
    expect(samePayload(record(p), record(dumpPayload(Buffer.concat([value, Buffer.from('!')]), 11)))).toBe(false);
    expect(samePayload(record(dumpPayload(Buffer.concat([value, Buffer.from('!')]), 11)), record(p))).toBe(false);
  });

  it('fails for payloads with no value bytes (a key too big to dump, or gone: an empty payload)', () => {
    const empty = Buffer.alloc(0);
    expect(samePayload(record(empty, -2), record(empty, -2))).toBe(false);
    const footerOnly = Buffer.alloc(10);
    expect(samePayload(record(footerOnly), record(footerOnly))).toBe(false);
  });
});
