// The one error the RDB reader throws for a file it cannot read: a single readable line naming the byte
// offset and what was found there, so an operator can tell a truncated copy from a foreign file.

export class RdbFormatError extends Error {
  override name = 'RdbFormatError';
}

/** Shows bytes from a file for a message: printable ASCII as is, anything else as \xNN. */
export function showBytes(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `"${out}"`;
}
