// The whole file's CRC-64, checked before anything is copied (the reader's own check comes only at the end, when a
// value corrupted mid-file would have been restored under a fresh payload CRC); the reader then skips its own.
import { statSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { Crc64, crcHex } from './crc64.js';
import { RdbFormatError } from './errors.js';
import { endsWithChecksum, HEADER_BYTES, rdbVersionOf } from './header.js';

const CHUNK_BYTES = 1 << 20;

/** Files whose CRC matched, as they were then: the reader need not compute it again for the same file. */
const verified = new Map<string, string>();
const identity = (stats: Stats): string => `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}`;

/** Whether verifyFileChecksum passed for `path` and the file is still the same (inode, size, mtime). */
export function checksumVerified(path: string): boolean {
  try {
    return verified.get(path) === identity(statSync(path));
  } catch {
    return false;
  }
}

/**
 * Throws RdbFormatError unless the file's trailing CRC-64 (its last 8 bytes, after the EOF opcode) matches its
 * content; a CRC of 0 means checksums were off, and files before RDB 5 have none. A header the reader does not
 * know is refused first, and `stopped()` (Ctrl-C) ends the check at the next chunk.
 */
export async function verifyFileChecksum(path: string, stopped: () => boolean = () => false): Promise<void> {
  const file = await open(path, 'r');
  try {
    const stats = await file.stat();
    const { size } = stats;
    const header = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await file.read(header, 0, HEADER_BYTES, 0);
    if (!endsWithChecksum(rdbVersionOf(header.subarray(0, bytesRead)))) return; // older files have no CRC to check
    if (size < 9 + 8) throw new RdbFormatError(`file ends at byte ${size}, before its checksum (truncated?)`);
    const crc = new Crc64();
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let at = 0; at < size - 8; ) {
      if (stopped()) throw new RdbFormatError('stopped while the checksum was checked; nothing was copied');
      const { bytesRead } = await file.read(chunk, 0, Math.min(CHUNK_BYTES, size - 8 - at), at);
      if (bytesRead === 0) throw new RdbFormatError(`file ends at byte ${at} while its checksum was read (truncated?)`);
      crc.update(chunk, 0, bytesRead);
      at += bytesRead;
    }
    const stored = Buffer.alloc(8);
    await file.read(stored, 0, 8, size - 8);
    if (stored.every((byte) => byte === 0)) return;
    const says = stored.readBigUInt64LE(0);
    if (says !== crc.digest()) {
      throw new RdbFormatError(`CRC64 mismatch at byte ${size - 8}: file says ${crcHex(says)}, content gives ${crcHex(crc.digest())} (the file is corrupt or truncated); nothing was copied`);
    }
    verified.set(path, identity(stats));
  } finally {
    await file.close();
  }
}
