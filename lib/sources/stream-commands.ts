// The replication stream after a snapshot is the master's writes as RESP commands: arrays of bulk strings,
// written canonically, so each command's size in bytes (what the replication offset counts) is known exactly.

export interface ParsedCommands {
  /** Whole commands found, their arguments as views of the buffer (no copy). */
  commands: Buffer[][];
  /** Each command's size in bytes. */
  sizes: number[];
  /** Bytes of the buffer the commands take. */
  used: number;
  /** With no whole command found: the bytes the buffer must hold for the next one (a lower bound if unknown yet). */
  need: number;
}

const CR = 0x0d;

/** The whole commands at the front of `buf`, at most `max`. A byte that cannot start one is a broken link. */
export function parseCommands(buf: Buffer, max: number): ParsedCommands {
  const commands: Buffer[][] = [];
  const sizes: number[] = [];
  let at = 0;
  let need = 0;
  while (commands.length < max && at < buf.length) {
    const parsed = parseOne(buf, at);
    if (typeof parsed === 'number') {
      need = parsed - at;
      break;
    }
    commands.push(parsed.args);
    sizes.push(parsed.end - at);
    at = parsed.end;
  }
  return { commands, sizes, used: at, need: commands.length > 0 ? 0 : Math.max(need, buf.length + 1) };
}

/** One command at `at`: its arguments and where it ends, or (a number) how far the buffer must reach for it. */
function parseOne(buf: Buffer, at: number): { args: Buffer[]; end: number } | number {
  if (buf[at] !== 0x2a) throw new StreamError(`expected a command ('*') at stream byte ${at}, found 0x${(buf[at] ?? 0).toString(16)}`);
  const header = lineAt(buf, at + 1);
  if (header === undefined) return buf.length + 1;
  const count = header.value;
  const args: Buffer[] = [];
  let next = header.end;
  for (let i = 0; i < count; i++) {
    if (next >= buf.length) return next + 1;
    if (buf[next] !== 0x24) throw new StreamError(`expected a bulk string ('$') at stream byte ${next}, found 0x${(buf[next] ?? 0).toString(16)}`);
    const length = lineAt(buf, next + 1);
    if (length === undefined) return buf.length + 1;
    const end = length.end + length.value;
    if (end + 2 > buf.length) return end + 2;
    args.push(buf.subarray(length.end, end));
    next = end + 2;
  }
  return { args, end: next };
}

/** The decimal number from `from` to its CRLF, and the offset after the CRLF; undefined while incomplete. */
function lineAt(buf: Buffer, from: number): { value: number; end: number } | undefined {
  let value = 0;
  for (let i = from; i < buf.length; i++) {
    const byte = buf[i] as number;
    if (byte === CR) return i + 1 < buf.length ? { value, end: i + 2 } : undefined;
    if (byte < 0x30 || byte > 0x39 || i - from > 15) throw new StreamError(`not a length at stream byte ${from}`);
    value = value * 10 + (byte - 0x30);
  }
  return undefined;
}

/** The stream holds something no master writes: the link is not to be trusted past it. */
export class StreamError extends Error {}
