// An RDB file's first bytes: "REDIS" and a 4-digit version, as every Redis since 1.0 writes it, or "VALKEY" and
// 3 digits (Valkey 9 and later). The one place that decides which versions this reader takes and whether a file of
// that version ends with a CRC-64.
import { RdbFormatError, showBytes } from './errors.js';
import { FIRST_CHECKSUMMED_VERSION, NEWEST_RDB_VERSION, OLDEST_RDB_VERSION, VALKEY_RDB_VERSION } from './types.js';

export const HEADER_BYTES = 9;

/** The RDB version a file's first HEADER_BYTES bytes declare; a file that is not one this reader knows is refused, naming what it found. */
export function rdbVersionOf(bytes: Buffer): number {
  const text = bytes.toString('latin1');
  if (/^VALKEY[0-9]{3}$/.test(text)) {
    const version = Number(text.slice(6));
    if (version === VALKEY_RDB_VERSION) return version;
    throw new RdbFormatError(`RDB version ${version} of Valkey (header ${showBytes(bytes)} at byte 0) is not one this reader knows (REDIS0001 to REDIS00${NEWEST_RDB_VERSION}, VALKEY0${VALKEY_RDB_VERSION})${version > VALKEY_RDB_VERSION ? ': try RDB_READER=server' : ''}`);
  }
  if (bytes.length < HEADER_BYTES || !/^REDIS[0-9]{4}$/.test(text)) {
    const short = bytes.length < HEADER_BYTES ? ` (the file has only ${bytes.length} bytes)` : '';
    throw new RdbFormatError(`not an RDB file: header ${showBytes(bytes)} at byte 0${short}`);
  }
  const version = Number(text.slice(5));
  if (version > NEWEST_RDB_VERSION) throw new RdbFormatError(`RDB version ${version} is newer than this reader knows (${OLDEST_RDB_VERSION} to ${NEWEST_RDB_VERSION}): try RDB_READER=server`);
  if (version < OLDEST_RDB_VERSION) throw new RdbFormatError(`RDB version ${version} is not a version any Redis wrote (${OLDEST_RDB_VERSION} to ${NEWEST_RDB_VERSION})`);
  return version;
}

/** Whether a file of this version ends with a CRC-64 after its EOF opcode (Redis 2.6 and later; 0 when saved with checksums off). */
export const endsWithChecksum = (version: number): boolean => version >= FIRST_CHECKSUMMED_VERSION;
