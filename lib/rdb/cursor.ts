// A position in a Buffer that reads RDB's fixed-size fields (little-endian integers, doubles, raw bytes).
// Running past the end is the owner's call: the file reader fetches more bytes, a value decoder reports corruption.

/** Called with the absolute offset that would have to be available; must throw. */
export type ShortHandler = (neededEnd: number) => never;

/** Ranges up to this many bytes are copied by a loop: Buffer.copy makes a view of its source for a partial range, an allocation per key. */
const LOOP_COPY_BYTES = 128;

/** Copies `source[from, to)` into `target` at `at`: the same as Buffer.copy, without a view per call for short ranges. */
export function copyRange(source: Uint8Array, from: number, to: number, target: Uint8Array, at: number): void {
  if (to - from > LOOP_COPY_BYTES) {
    target.set(source.subarray(from, to), at);
    return;
  }
  for (let i = from; i < to; i++) target[at++] = source[i]!;
}

export class ByteCursor {
  constructor(
    public buf: Buffer,
    /** Index into buf of the next byte. */
    public pos: number,
    /** File offset of buf[0], so messages and the caller speak in file offsets. */
    public base: number,
    /** Index into buf just past the last usable byte. */
    public end: number,
    private onShort: ShortHandler,
    /** How an offset is named in messages: "at byte 12" or "at byte 12 of the value". */
    private readonly offsetSuffix = '',
  ) {}

  /** The absolute offset of the next byte. */
  get offset(): number {
    return this.base + this.pos;
  }

  /** "at byte N", for error messages about what starts at `offset` (default: here). */
  at(offset = this.offset): string {
    return `at byte ${offset}${this.offsetSuffix}`;
  }

  available(): number {
    return this.end - this.pos;
  }

  require(count: number): void {
    if (this.pos + count > this.end) this.onShort(this.base + this.pos + count);
  }

  u8(): number {
    if (this.pos >= this.end) this.onShort(this.base + this.pos + 1);
    return this.buf[this.pos++]!;
  }

  u16le(): number {
    this.require(2);
    const value = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return value;
  }

  u32le(): number {
    this.require(4);
    const value = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return value;
  }

  i32le(): number {
    this.require(4);
    const value = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return value;
  }

  u32be(): number {
    this.require(4);
    const value = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return value;
  }

  u64be(): bigint {
    this.require(8);
    const value = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return value;
  }

  /** A signed 64-bit little-endian integer as a number (millisecond times fit comfortably). */
  i64le(): number {
    this.require(8);
    const value = Number(this.buf.readBigInt64LE(this.pos));
    this.pos += 8;
    return value;
  }

  f64le(): number {
    this.require(8);
    const value = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return value;
  }

  f32le(): number {
    this.require(4);
    const value = this.buf.readFloatLE(this.pos);
    this.pos += 4;
    return value;
  }

  /** The cursor moved over other bytes, for a reader that reuses one cursor instead of allocating one per field. */
  reset(buf: Buffer, pos: number, base: number, end: number, onShort: ShortHandler): this {
    this.buf = buf;
    this.pos = pos;
    this.base = base;
    this.end = end;
    this.onShort = onShort;
    return this;
  }

  /** `count` bytes as a Buffer of their own. */
  copyOf(count: number): Buffer {
    this.require(count);
    const out = Buffer.allocUnsafe(count);
    copyRange(this.buf, this.pos, this.pos + count, out, 0);
    this.pos += count;
    return out;
  }

  /** `count` bytes as a view into the buffer (no copy). */
  bytes(count: number): Buffer {
    this.require(count);
    const view = this.buf.subarray(this.pos, this.pos + count);
    this.pos += count;
    return view;
  }

  skip(count: number): void {
    this.require(count);
    this.pos += count;
  }
}

/** A cursor over a whole value held in memory: running out means the value is cut short. */
export function valueCursor(value: Buffer, start: number, onShort: ShortHandler): ByteCursor {
  return new ByteCursor(value, start, 0, value.length, onShort, ' of the value');
}
