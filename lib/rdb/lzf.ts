// LZF decompression as in Redis's lzf_d.c: literal runs and back references, nothing else.
// RDB strings saved with rdbcompression on (and compressed quicklist nodes) use it.

/** Expands `input` into exactly `outputLength` bytes; throws an Error with the reason if the data does not fit. */
export function lzfDecompress(input: Uint8Array, outputLength: number): Buffer {
  const out = Buffer.allocUnsafe(outputLength);
  let ip = 0;
  let op = 0;
  while (ip < input.length) {
    const ctrl = input[ip++]!;
    if (ctrl < 32) {
      // A literal run of ctrl + 1 bytes.
      const run = ctrl + 1;
      if (op + run > outputLength) throw new Error('LZF data expands past its stated length');
      if (ip + run > input.length) throw new Error('LZF literal run goes past the compressed data');
      out.set(input.subarray(ip, ip + run), op);
      ip += run;
      op += run;
      continue;
    }
    let length = ctrl >> 5;
    if (length === 7) {
      if (ip >= input.length) throw new Error('LZF back reference cut short');
      length += input[ip++]!;
    }
    if (ip >= input.length) throw new Error('LZF back reference cut short');
    const ref = op - ((ctrl & 0x1f) << 8) - 1 - input[ip++]!;
    length += 2;
    if (ref < 0) throw new Error('LZF back reference points before the start');
    if (op + length > outputLength) throw new Error('LZF data expands past its stated length');
    // Byte by byte: a reference may overlap the bytes it produces (a run of one repeated byte).
    for (let k = 0; k < length; k++) out[op + k] = out[ref + k]!;
    op += length;
  }
  if (op !== outputLength) throw new Error(`LZF data expands to ${op} bytes, not the stated ${outputLength}`);
  return out;
}
