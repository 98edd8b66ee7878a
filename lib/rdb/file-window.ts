// The part of an RDB file the reader is looking at: one reused buffer filled by fixed-size chunk reads, in
// file order, never the whole file. Every byte passes through the running CRC-64 exactly once, as it leaves
// (unless the CRC is not wanted: the run checked the whole file first).
import { ByteCursor, copyRange, type ShortHandler } from './cursor.js';
import { Crc64 } from './crc64.js';

/**
 * Where the RDB's bytes come from: a file (a FileHandle fits), or a stream such as a replication link, which
 * can give each byte once only, in order.
 */
export interface RdbInput {
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`; 0 bytes at the end. */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  /** How many bytes the input holds, when known before the end (Infinity otherwise). */
  size: number;
  /** False for a stream: a byte the window let go cannot be read again, so a value is kept whole as it is read. */
  rereadable: boolean;
  close(): Promise<void>;
}

export class FileWindow {
  private buf: Buffer;
  /** File offset of buf[0]. Bytes before it have been fed to the CRC and dropped. */
  private start = 0;
  /** File offset just past the last byte read. */
  private end = 0;
  private readonly crc: Crc64 | undefined;

  constructor(
    private readonly file: RdbInput,
    readonly chunkBytes: number,
    checksum = true,
  ) {
    this.crc = checksum ? new Crc64() : undefined;
    // Room for a record that straddles chunks plus the next chunk, without growing.
    this.buf = Buffer.allocUnsafe(4 * chunkBytes);
  }

  /** How many bytes the input holds (Infinity for a stream of unknown length). */
  get fileSize(): number {
    return this.file.size;
  }

  /** Whether a byte already let go can be read again (readAt): true for a file, not for a stream. */
  get rereadable(): boolean {
    return this.file.rereadable;
  }

  /** Bytes the window can hold without growing. */
  get capacity(): number {
    return this.buf.length;
  }

  get firstOffset(): number {
    return this.start;
  }

  get endOffset(): number {
    return this.end;
  }

  /** A cursor at file offset `at` over the bytes in the window. */
  cursor(at: number, onShort: ShortHandler): ByteCursor {
    return new ByteCursor(this.buf, at - this.start, this.start, this.end - this.start, onShort);
  }

  private readonly shared = new ByteCursor(Buffer.alloc(0), 0, 0, 0, () => {
    throw new Error('unused');
  });

  /** The same, as one cursor reused by every call: for a parse that is done before anything can await. */
  sharedCursor(at: number, onShort: ShortHandler): ByteCursor {
    return this.shared.reset(this.buf, at - this.start, this.start, this.end - this.start, onShort);
  }

  /** Whether [from, to) is all in the window now. */
  holds(from: number, to: number): boolean {
    return from >= this.start && to <= this.end;
  }

  /** Copies [from, to) out of the window into `target` at `targetStart`; the range must be held. */
  copyOut(from: number, to: number, target: Buffer, targetStart: number): void {
    copyRange(this.buf, from - this.start, to - this.start, target, targetStart);
  }

  /**
   * Makes the window hold [keepFrom, need): drops what comes before keepFrom, reads through anything between
   * the window's end and keepFrom, then reads chunks until `need`. False if the file ends first.
   */
  async fill(need: number, keepFrom: number): Promise<boolean> {
    this.dropBefore(Math.min(Math.max(keepFrom, this.start), this.end));
    while (this.end < keepFrom) {
      // Skipping a big string body: read it chunk by chunk for the CRC, keep only what lies past keepFrom.
      const read = await this.readChunk();
      if (read === 0) return false;
      this.dropBefore(Math.min(keepFrom, this.end));
    }
    this.makeRoom(need - this.start + this.chunkBytes);
    while (this.end < need) {
      if ((await this.readChunk()) === 0) return false;
    }
    return true;
  }

  /** Reads the rest of `target` from the file at `offset`, outside the window; false if the file is shorter. */
  async readAt(offset: number, target: Buffer, targetStart: number): Promise<boolean> {
    let done = targetStart;
    while (done < target.length) {
      const { bytesRead } = await this.file.read(target, done, target.length - done, offset + done - targetStart);
      if (bytesRead === 0) return false;
      done += bytesRead;
    }
    return true;
  }

  /** The CRC-64 of the file from its first byte up to `offset`, which must be in the window. */
  checksumUpTo(offset: number): bigint {
    this.dropBefore(offset);
    if (!this.crc) throw new Error('the CRC was not asked for');
    return this.crc.digest();
  }

  private dropBefore(offset: number): void {
    const count = offset - this.start;
    if (count <= 0) return;
    this.crc?.update(this.buf, 0, count);
    this.buf.copyWithin(0, count, this.end - this.start);
    this.start = offset;
  }

  private makeRoom(bytes: number): void {
    if (bytes <= this.buf.length) return;
    // Only a key, an AUX field or a function library larger than the window gets here: grow to fit it.
    const grown = Buffer.allocUnsafe(Math.ceil(bytes / this.chunkBytes) * this.chunkBytes);
    this.buf.copy(grown, 0, 0, this.end - this.start);
    this.buf = grown;
  }

  private async readChunk(): Promise<number> {
    this.makeRoom(this.end - this.start + this.chunkBytes);
    const { bytesRead } = await this.file.read(this.buf, this.end - this.start, this.chunkBytes, this.end);
    this.end += bytesRead;
    return bytesRead;
  }
}
