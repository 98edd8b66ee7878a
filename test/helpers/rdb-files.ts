// Hand-made .rdb files for the cases no fixture has: lengths, strings, a module value, a whole file with its CRC.
// Built from rdb.h's layout, independently of the reader under test (only its CRC-64 is shared).
import { Crc64 } from '../../lib/rdb/crc64.js';

export function rdbLength(n: number): Buffer {
  if (n < 64) return Buffer.from([n]);
  if (n < 16384) return Buffer.from([0x40 | (n >> 8), n & 0xff]);
  if (n < 2 ** 32) {
    const out = Buffer.alloc(5);
    out[0] = 0x80;
    out.writeUInt32BE(n, 1);
    return out;
  }
  const out = Buffer.alloc(9);
  out[0] = 0x81;
  out.writeBigUInt64BE(BigInt(n), 1);
  return out;
}
export const rdbString = (text: string | Buffer): Buffer => {
  const bytes = Buffer.from(text);
  return Buffer.concat([rdbLength(bytes.length), bytes]);
};

/** A whole file: header (VALKEY and 3 digits from 80), the given body, EOF and a correct CRC (none before RDB 5, as Redis 2.4 and older wrote). */
export function rdbFile(version: number, ...body: Buffer[]): Buffer {
  const header = version >= 80 ? `VALKEY${String(version).padStart(3, '0')}` : `REDIS${String(version).padStart(4, '0')}`;
  const content = Buffer.concat([Buffer.from(header), ...body, Buffer.from([0xff])]);
  return version < 5 ? content : Buffer.concat([content, new Crc64().update(content).digestBytes()]);
}


/** A module value's bytes after its type byte: the id of `name` (9 characters) and `version`, one operand of each kind, EOF. */
export function moduleValueBody(name: string, version: number): Buffer {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  let id = 0n;
  for (const ch of name) id = (id << 6n) | BigInt(chars.indexOf(ch));
  id = (id << 10n) | BigInt(version);
  return Buffer.concat([
    Buffer.from([0x81]), Buffer.from(id.toString(16).padStart(16, '0'), 'hex'),
    Buffer.from([2, 0x80, 0, 1, 0, 0]), // UINT 65536
    Buffer.from([1, 5]), // SINT 5
    Buffer.from([3, 0, 0, 0x80, 0x3f]), // FLOAT 1.0
    Buffer.from([4, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]), // DOUBLE 1.0
    Buffer.from([5]), rdbString('module payload'),
    Buffer.from([0]), // EOF
  ]);
}

/** A MODULE_AUX record (opcode 0xf7) of module `name`: its id, "when" (UINT 1: before the keys), then the operands of moduleValueBody. */
export function moduleAuxRecord(name: string, version: number): Buffer {
  const body = moduleValueBody(name, version);
  return Buffer.concat([Buffer.from([0xf7]), body.subarray(0, 9), Buffer.from([2, 1]), body.subarray(9)]);
}
