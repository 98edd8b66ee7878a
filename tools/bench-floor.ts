// The least CPU a Node.js client spends here to copy an .rdb file by RESTORE, for scale beside (f): our reader
// alone, warm (the file's CRC-64 included, as the tool checks it), then encoding each record as the tool does (a DUMP
// payload with its CRC-64, `RESTORE key at payload ABSTTL`), then only sending those commands on one socket and
// counting the replies, with no bookkeeping of any kind. Run by the bench as a process of its own:
// `tsx tools/bench-floor.ts <file> <target port>`; prints one JSON line of µs per key for each part.
import { connect, type Socket } from 'node:net';
import { COMMAND_OVERHEAD, writeStoredRestore } from '../lib/copy/restore.js';
import { RespWriter } from '../lib/net/resp.js';
import { readRdbBatches, type RdbKey } from '../lib/rdb/reader.js';

/** Keys sent and not yet answered, at most: as the tool's batches in flight. */
const UNANSWERED_KEYS = 4096;

export interface ClientFloor {
  keys: number;
  /** CPU µs per key of each part; their sum is the floor. */
  readerMicros: number;
  encodeMicros: number;
  socketMicros: number;
}

const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6;
};

/** Reads the file, each batch encoded and dropped when `encoding`: the reader's cost, or the reader's and the encoder's. */
async function readThrough(file: string, encoding: boolean): Promise<number> {
  let keys = 0;
  for await (const batch of readRdbBatches(file)) {
    if (encoding) encode(batch);
    keys += batch.length;
  }
  return keys;
}

/** The file's records as RESTORE commands, one buffer per reader batch, held to send afterwards (not timed). */
async function encodeAll(file: string): Promise<{ buffers: Buffer[]; counts: number[] }> {
  const buffers: Buffer[] = [];
  const counts: number[] = [];
  for await (const batch of readRdbBatches(file)) {
    buffers.push(encode(batch));
    counts.push(batch.length);
  }
  return { buffers, counts };
}

/** The batch's records as the tool encodes them (writeStoredRestore), each payload stamped with the file's version. */
function encode(batch: readonly RdbKey[]): Buffer {
  let bytes = 0;
  for (const record of batch) bytes += record.key.length + record.value.length + COMMAND_OVERHEAD;
  const writer = new RespWriter(bytes);
  for (const record of batch) writeStoredRestore(writer, record.key, record, record.rdbVersion, false);
  return writer.buf.subarray(0, writer.at);
}

/** Sends every buffer, at most UNANSWERED_KEYS unanswered; resolves once every reply came, failing on any but +OK. */
async function sendAll(socket: Socket, buffers: readonly Buffer[], counts: readonly number[]): Promise<void> {
  let sent = 0;
  let answered = 0;
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  socket.on('data', (chunk: Buffer) => {
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) answered += 1;
    // "+OK\r\n" has no '-': one in the stream starts an error reply.
    if (chunk.includes(0x2d)) failure ??= new Error(`an error reply: ${chunk.subarray(chunk.indexOf(0x2d), chunk.indexOf(0x2d) + 80).toString()}`);
    if (wake && sent - answered <= UNANSWERED_KEYS / 2) {
      const resume = wake;
      wake = undefined;
      resume();
    }
  });
  const until = (): Promise<void> => new Promise((resolve) => (wake = resolve));
  for (let i = 0; i < buffers.length; i++) {
    socket.write(buffers[i] as Buffer);
    sent += counts[i] as number;
    if (sent - answered > UNANSWERED_KEYS) await until();
  }
  while (answered < sent) await until();
  if (failure) throw failure;
}

async function measure(file: string, port: number): Promise<ClientFloor> {
  // Once untimed, so that both timed reads run compiled code: a floor, not a cold start.
  await readThrough(file, true);
  let since = process.cpuUsage();
  const keys = await readThrough(file, false);
  const reader = cpuSeconds(since);
  since = process.cpuUsage();
  await readThrough(file, true);
  const encode = cpuSeconds(since) - reader;
  const { buffers, counts } = await encodeAll(file);
  const socket = connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  since = process.cpuUsage();
  await sendAll(socket, buffers, counts);
  const send = cpuSeconds(since);
  socket.end();
  const micros = (seconds: number): number => (seconds * 1e6) / Math.max(keys, 1);
  return { keys, readerMicros: micros(reader), encodeMicros: micros(encode), socketMicros: micros(send) };
}

const [file, port] = process.argv.slice(2);
if (!file || !port) throw new Error('usage: tsx tools/bench-floor.ts <file.rdb> <target port>');
process.stdout.write(`${JSON.stringify(await measure(file, Number(port)))}\n`);
