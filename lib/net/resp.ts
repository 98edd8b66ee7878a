// RESP2 by hand for pipelines of many small commands: a growable Buffer the commands are written into, one
// socket write for all of them, and an incremental reply parser. node-redis spends ~80 µs of CPU per command.
import { ErrorReply } from '@redis/client';
import type { Arg, Reply } from './reply.js';

/** One command's reply; an error reply is a value here, not a rejection, so each command answers for itself. */
export type PipeReply = Reply | ErrorReply;

const ASKING = Buffer.from('*1\r\n$6\r\nASKING\r\n', 'latin1');

/** Commands encoded end to end. Callers write whole commands; `commands` counts them for the replies. */
export class RespWriter {
  buf: Buffer;
  at = 0;
  /** Commands written, ASKINGs included: the replies to expect. */
  commands = 0;

  constructor(
    capacity = 64 * 1024,
    /** Each command goes with ASKING before it (a slot being imported): every other reply is ASKING's. */
    readonly asking = false,
    /** A buffer to write into, at least `capacity` long: one an earlier writer is done with. */
    buf?: Buffer,
  ) {
    this.buf = buf && buf.length >= capacity ? buf : Buffer.allocUnsafe(capacity);
  }

  /** Room for `bytes` more; grows by doubling (callers size the writer up front, so this is rare). */
  reserve(bytes: number): void {
    if (this.at + bytes <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + bytes));
    this.buf.copy(grown, 0, 0, this.at);
    this.buf = grown;
  }

  /** A whole command of string and Buffer arguments. */
  command(args: readonly Arg[]): void {
    this.begin(args.length);
    for (const arg of args) {
      if (typeof arg === 'string') this.text(arg);
      else this.bulk(arg);
    }
  }

  /** The start of a command of `count` arguments, which the caller then writes as bulks. */
  begin(count: number): void {
    if (this.asking) {
      this.raw(ASKING);
      this.commands += 1;
    }
    this.reserve(24);
    this.buf[this.at++] = 0x2a; // '*'
    this.number(count);
    this.commands += 1;
  }

  bulk(bytes: Uint8Array): void {
    this.bulkStart(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
    this.bulkEnd();
  }

  /** A bulk string of text (arguments such as RESTORE, ttl figures): latin1, so one byte per char. */
  text(value: string): void {
    this.bulkStart(value.length);
    this.at += this.buf.write(value, this.at, 'latin1');
    this.bulkEnd();
  }

  /** A non-negative integer as a bulk string (a TTL, a count), its digits written directly. */
  integer(value: number): void {
    const digits = digitCount(value);
    this.bulkStart(digits);
    this.digits(value, digits);
    this.bulkEnd();
  }

  /** `$<length>\r\n`, with room after it for the `length` bytes the caller writes itself, and the CRLF. */
  bulkStart(length: number): void {
    this.reserve(24 + length);
    this.buf[this.at++] = 0x24; // '$'
    this.number(length);
  }

  bulkEnd(): void {
    this.buf[this.at] = 0x0d;
    this.buf[this.at + 1] = 0x0a;
    this.at += 2;
  }

  /** Bytes encoded once (a command's name, a fixed tail of arguments), copied as they are. */
  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
  }

  /** The encoded bytes (a view, valid until the writer is written to again). */
  get bytes(): Buffer {
    return this.buf.subarray(0, this.at);
  }

  /** A length or count and its CRLF (Buffer.write of a String costs ~1 µs; this a few ns). */
  private number(value: number): void {
    this.digits(value, digitCount(value));
    this.bulkEnd();
  }

  private digits(value: number, count: number): void {
    const { buf } = this;
    let rest = value;
    for (let i = this.at + count - 1; i >= this.at; i--) {
      buf[i] = 0x30 + (rest % 10);
      rest = Math.floor(rest / 10);
    }
    this.at += count;
  }
}

/** Decimal digits of a non-negative integer (safe integers only: lengths, counts, millisecond times). */
function digitCount(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a length or count: ${value}`);
  let count = 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) count++;
  return count;
}

/** A reply that could not be parsed: the stream is out of step, and the connection must go. */
class ProtocolError extends Error {}

/** Not a whole reply yet at this offset. */
const PARTIAL = Symbol('partial');

/**
 * Parses replies out of socket chunks as they come. Bytes of a reply cut by a chunk boundary wait for the
 * next chunk; a big bulk string is waited for by its announced length, not re-parsed on every chunk.
 */
export class RespParser {
  private pending: Buffer | undefined;
  /** Bytes `pending` must reach before a parse is worth trying again. */
  private needed = 0;

  constructor(private readonly onReply: (reply: PipeReply) => void) {}

  feed(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
      if (buf.length < this.needed) {
        this.pending = buf;
        return;
      }
    }
    let at = 0;
    while (at < buf.length) {
      this.needed = 0;
      const reply = this.parse(buf, at);
      if (reply === PARTIAL) {
        // Copied: the socket may reuse its chunk.
        this.pending = Buffer.from(buf.subarray(at));
        return;
      }
      at = this.next;
      this.onReply(reply);
    }
  }

  /** Where the reply parse() returned last ends: kept here rather than in an object per reply. */
  private next = 0;

  /** The reply starting at `at` (its end in `next`), or PARTIAL. */
  private parse(buf: Buffer, at: number): PipeReply | typeof PARTIAL {
    const line = buf.indexOf(0x0d, at + 1);
    if (line === -1 || line + 1 >= buf.length) return PARTIAL;
    const type = buf[at];
    this.next = line + 2;
    switch (type) {
      case 0x2b: // '+'
        // +OK, the reply to nearly every pipelined write: one shared string, not a new one each.
        if (line === at + 3 && buf[at + 1] === 0x4f && buf[at + 2] === 0x4b) return 'OK';
        return buf.toString('latin1', at + 1, line);
      case 0x2d: // '-'
        return new ErrorReply(buf.toString('utf8', at + 1, line));
      case 0x3a: // ':'
        return this.integer(buf, at + 1, line);
      case 0x24: { // '$'
        const length = this.integer(buf, at + 1, line);
        if (length < 0) return null;
        const end = line + 2 + length;
        if (end + 2 > buf.length) {
          this.needed = end + 2 - at;
          return PARTIAL;
        }
        this.next = end + 2;
        return Buffer.from(buf.subarray(line + 2, end));
      }
      case 0x2a: { // '*'
        const count = this.integer(buf, at + 1, line);
        if (count < 0) return null;
        const items: PipeReply[] = [];
        for (let i = 0; i < count; i++) {
          const item = this.parse(buf, this.next);
          if (item === PARTIAL) return PARTIAL;
          // An error inside an array (EXEC) stays a value, as node-redis gives it.
          items.push(item as Reply);
        }
        return items as Reply[];
      }
      default:
        throw new ProtocolError(`unexpected reply byte 0x${(type ?? 0).toString(16)} at ${buf.toString('latin1', at, Math.min(at + 20, buf.length))}`);
    }
  }

  private integer(buf: Buffer, from: number, to: number): number {
    const value = Number(buf.toString('latin1', from, to));
    if (!Number.isInteger(value)) throw new ProtocolError(`not an integer in a reply: ${buf.toString('latin1', from, to)}`);
    return value;
  }
}
