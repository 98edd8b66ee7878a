// The bytes of a replication link the run has not read yet, in order: in memory up to a cap, then appended to a
// spool file in the temporary directory (unlinked as soon as it is open, so it goes with the process whatever
// happens), read back as the reader catches up. The link reads as fast as the source sends, so a slow target
// never leaves the source holding our writes in its replica output buffer; past the spool's cap it waits.
import { closeSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What a run's replication links did with their spools, added up over every link: the summary says it. */
export class SpoolUse {
  /** The most bytes one link's spool held at once. */
  peakBytes = 0;
  /** Bytes written to spools, in all. */
  spooledBytes = 0;
  /** How long links stopped reading with memory and spool full: the source held what it had to send meanwhile. */
  fullMs = 0;
}

interface Spool {
  fd: number;
  /** File offsets: bytes [readAt, writeAt) wait to be read. */
  writeAt: number;
  readAt: number;
}

export class ByteQueue {
  private readonly chunks: Buffer[] = [];
  private inMemory = 0;
  private spool: Spool | undefined;
  /** Set when the spool could not be written (the disk full): from then on the queue holds what memory holds. */
  private spoolProblem: string | undefined;

  constructor(
    private readonly memoryCap: number,
    /** Bytes the spool may hold (0: none; the producer waits once memory is full). */
    private readonly spoolCap: number,
    /** Where this queue's spooling is added up with the run's other links'. */
    private readonly use = new SpoolUse(),
  ) {}

  get size(): number {
    return this.inMemory + this.onDisk;
  }

  private get onDisk(): number {
    return this.spool ? this.spool.writeAt - this.spool.readAt : 0;
  }

  /** Whether the producer may go on adding: false once memory, and the spool if any, are full. */
  get hasRoom(): boolean {
    if (this.onDisk > 0 || this.inMemory >= this.memoryCap) return this.canSpool && this.onDisk < this.spoolCap;
    return true;
  }

  /** Whether a producer told to wait may go on: the queue is down to half of what stopped it. */
  get drained(): boolean {
    return this.onDisk > 0 ? this.onDisk < this.spoolCap / 2 : this.inMemory < this.memoryCap / 2;
  }

  private get canSpool(): boolean {
    return this.spoolCap > 0 && this.spoolProblem === undefined;
  }

  /** Adds bytes at the end: to memory while it has room and nothing waits on disk, else to the spool. */
  push(chunk: Buffer): void {
    const toDisk = this.onDisk > 0 || (this.inMemory + chunk.length > this.memoryCap && this.canSpool);
    if (toDisk && this.spill(chunk)) return;
    // Bytes already on disk come before this chunk: it cannot go to memory ahead of them.
    if (this.onDisk > 0) throw new Error(`the spool in ${tmpdir()} could not be written (${this.spoolProblem ?? 'unknown'})`);
    this.chunks.push(chunk);
    this.inMemory += chunk.length;
  }

  /** Copies the first `count` bytes into `target` at `offset` and drops them; `count` must not exceed `size`. */
  take(target: Buffer, offset: number, count: number): void {
    const fromMemory = this.copyFromMemory(target, offset, count, true);
    if (fromMemory < count) this.readSpool(target, offset + fromMemory, count - fromMemory, true);
  }

  /** The first `count` bytes (at most `size`), left in place. */
  peek(count: number): Buffer {
    const out = Buffer.allocUnsafe(count);
    const fromMemory = this.copyFromMemory(out, 0, count, false);
    if (fromMemory < count) this.readSpool(out, fromMemory, count - fromMemory, false);
    return out;
  }

  close(): void {
    if (this.spool) closeSync(this.spool.fd);
    this.spool = undefined;
  }

  private copyFromMemory(target: Buffer, offset: number, count: number, consume: boolean): number {
    let done = 0;
    for (let i = 0; done < count && i < this.chunks.length; ) {
      const head = this.chunks[i] as Buffer;
      const part = Math.min(head.length, count - done);
      head.copy(target, offset + done, 0, part);
      done += part;
      if (!consume) i += 1;
      else if (part === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(part);
    }
    if (consume) this.inMemory -= done;
    return done;
  }

  private readSpool(target: Buffer, offset: number, count: number, consume: boolean): void {
    const spool = this.spool as Spool;
    for (let done = 0; done < count; ) done += readSync(spool.fd, target, offset + done, count - done, spool.readAt + done);
    if (!consume) return;
    spool.readAt += count;
    // Emptied: the file starts over, so it never grows past what waited at once.
    if (spool.readAt === spool.writeAt) {
      ftruncateSync(spool.fd, 0);
      spool.readAt = spool.writeAt = 0;
    }
  }

  /** Appends to the spool, opening it on first use; false (and the spool given up) when the disk refuses. */
  private spill(chunk: Buffer): boolean {
    try {
      this.spool ??= openSpool();
      for (let done = 0; done < chunk.length; ) done += writeSync(this.spool.fd, chunk, done, chunk.length - done, this.spool.writeAt + done);
      this.spool.writeAt += chunk.length;
      this.use.peakBytes = Math.max(this.use.peakBytes, this.onDisk);
      this.use.spooledBytes += chunk.length;
      return true;
    } catch (err) {
      this.spoolProblem = err instanceof Error ? err.message : String(err);
      return false;
    }
  }
}

function openSpool(): Spool {
  const dir = mkdtempSync(join(tmpdir(), 'rkm-spool-'));
  try {
    return { fd: openSync(join(dir, 'link'), 'w+', 0o600), writeAt: 0, readAt: 0 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
