// DUMP payloads from RDB value bytes: the type byte and value as saved, then the RDB version (2 bytes,
// little-endian) and the CRC-64 of everything before it (8 bytes, little-endian), as RESTORE checks them.
import { Crc64 } from './crc64.js';
import { copyRange } from './cursor.js';
import { RdbFormatError } from './errors.js';

export const FOOTER_BYTES = 10;

/** The DUMP payload RESTORE takes for a value read from a file of `rdbVersion`. */
export function dumpPayload(valueBytes: Buffer, rdbVersion: number): Buffer {
  const payload = Buffer.allocUnsafe(valueBytes.length + FOOTER_BYTES);
  writeDumpPayload(valueBytes, rdbVersion, payload, 0);
  return payload;
}

/** The same payload written into `target` at `at` (a batch's encoded commands), with no buffer of its own. */
export function writeDumpPayload(valueBytes: Buffer, rdbVersion: number, target: Buffer, at: number): void {
  copyRange(valueBytes, 0, valueBytes.length, target, at);
  const versionAt = at + valueBytes.length;
  target.writeUInt16LE(rdbVersion, versionAt);
  new Crc64().update(target, at, versionAt + 2).writeDigest(target, versionAt + 2);
}

/** The same payload with another RDB version and a CRC to match (for a target that checks the version). */
export function restampPayload(payload: Buffer, version: number): Buffer {
  if (payload.length < FOOTER_BYTES + 1) throw new RdbFormatError(`a DUMP payload of ${payload.length} bytes has no room for its footer`);
  return dumpPayload(payload.subarray(0, payload.length - FOOTER_BYTES), version);
}

/** The RDB value type byte a payload starts with. */
export function payloadTypeByte(payload: Buffer): number {
  const type = payload[0];
  if (type === undefined) throw new RdbFormatError('an empty DUMP payload has no type byte');
  return type;
}

/** The RDB version in a payload's footer. */
export function payloadRdbVersion(payload: Buffer): number {
  if (payload.length < FOOTER_BYTES + 1) throw new RdbFormatError(`a DUMP payload of ${payload.length} bytes has no room for its footer`);
  return payload.readUInt16LE(payload.length - FOOTER_BYTES);
}

/** Whether a payload's CRC matches its content (a CRC of 0 means the server had checksums off). */
export function payloadChecksumOk(payload: Buffer): boolean {
  if (payload.length < FOOTER_BYTES + 1) return false;
  const stored = payload.subarray(payload.length - 8);
  if (stored.every((b) => b === 0)) return true;
  return new Crc64().update(payload, 0, payload.length - 8).digestBytes().equals(stored);
}
