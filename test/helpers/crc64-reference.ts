// CRC-64 as Redis defines it, one bit at a time on bigint: the reference the table-driven code must match.

/** Reflected Jones polynomial 0xad93d23594c935a9, init 0, no final xor. */
export function slowCrc64(data: Uint8Array): bigint {
  const poly = 0x95ac9329ac4bc9b5n; // 0xad93d23594c935a9 bit-reversed
  let crc = 0n;
  for (const byte of data) {
    crc ^= BigInt(byte);
    for (let bit = 0; bit < 8; bit++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
  }
  return crc;
}
