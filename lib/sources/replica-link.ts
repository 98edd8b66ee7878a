// One source master read as its replica: the handshake a replica makes (AUTH, REPLCONF capabilities, PSYNC),
// then the full resync's RDB as a stream of bytes for our reader (lib/rdb/), read once and never whole in
// memory: what the reader has not taken yet waits in memory, then in a spool file (byte-queue.ts), and past the
// spool's cap the socket pauses.
import type { Socket } from 'node:net';
import { connectSocket } from '../net/pipeline.js';
import { ByteQueue } from './byte-queue.js';
import { RespWriter } from '../net/resp.js';
import type { RdbInput } from '../rdb/file-window.js';
import type { Endpoint } from '../settings.js';

const CONNECT_TIMEOUT_MS = 5000;
/** Bytes received and not yet read that are kept in memory; past them, the spool (byte-queue.ts). */
const MEMORY_BYTES = 8 * 1024 * 1024;
/** A diskless transfer ends with this many bytes of the mark its header announced. */
const EOF_MARK_BYTES = 40;

/** The master will not serve us as a replica (PSYNC unknown, renamed, or not allowed to this ACL user). */
export class ReplicationRefused extends Error {
  /** A state that passes (a server still loading, a replica without its master, a failed fork): worth retrying. */
  get passing(): boolean {
    return /\b(LOADING|NOMASTERLINK|MASTERDOWN)\b|Can't SYNC|BGSAVE failed|Background save/i.test(this.message);
  }
}

/** The run closed the link itself: never a cut to recover from. */
class LinkClosed extends Error {}

/** The link broke or went silent: a transport failure, not a refusal. */
export class LinkLost extends Error {}

/** Bytes as the socket delivers them, queued for a line reader (the handshake) and then the RDB reader. */
class LinkBytes {
  private readonly queue: ByteQueue;
  private ended: Error | undefined;
  private wake: (() => void) | undefined;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(private readonly socket: Socket, private readonly label: string, private readonly silenceMs: number, spoolBytes: number) {
    this.queue = new ByteQueue(MEMORY_BYTES, spoolBytes);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.queue.push(chunk);
      } catch (err) {
        this.end(new LinkLost(`${label}: ${err instanceof Error ? err.message : String(err)}`));
        socket.destroy();
        return;
      }
      if (!this.queue.hasRoom) socket.pause();
      this.notify();
    });
    socket.on('error', (err: Error) => this.end(new LinkLost(`${label}: the replication link failed: ${err.message}`)));
    socket.on('close', () => this.end(new LinkLost(`${label}: the replication link closed`)));
  }

  get available(): number {
    return this.queue.size;
  }

  end(reason: Error): void {
    this.ended ??= reason;
    this.notify();
  }

  close(): void {
    this.queue.close();
  }

  /** Waits until more than `bytes` are queued; rejects when the link ended or stayed silent too long. */
  async waitFor(bytes: number): Promise<void> {
    while (this.queue.size <= bytes) {
      if (this.ended) throw this.ended;
      this.socket.resume();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        if (this.silenceMs > 0) {
          this.stallTimer = setTimeout(() => this.end(new LinkLost(`${this.label} sent nothing for ${this.silenceMs / 1000} s (REPLY_TIMEOUT)`)), this.silenceMs);
        }
      });
    }
  }

  /** The first `count` queued bytes, copied into `target` at `offset` and dropped from the queue. */
  take(target: Buffer, offset: number, count: number): void {
    this.queue.take(target, offset, count);
    if (this.queue.drained) this.socket.resume();
  }

  /** The first `count` queued bytes, without taking them. */
  peek(count: number): Buffer {
    return this.queue.peek(count);
  }

  /** One reply line (without its line end), waiting for it. */
  async line(): Promise<string> {
    for (;;) {
      const text = this.peek(Math.min(this.queue.size, 4096)).toString('latin1');
      const at = text.indexOf('\n');
      if (at >= 0) {
        const line = Buffer.allocUnsafe(at + 1);
        this.take(line, 0, at + 1);
        return line.toString('latin1').replace(/\r?\n$/, '');
      }
      if (this.queue.size >= 4096) throw new LinkLost(`${this.label} sent a reply line longer than 4096 bytes: not a Redis replication link`);
      await this.waitFor(this.queue.size);
    }
  }

  private notify(): void {
    clearTimeout(this.stallTimer);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

export interface LinkOptions {
  /** Called at each bare newline: the master's "still preparing your snapshot" while it forks or waits. */
  onWaiting: () => void;
  /** Bytes the link may spool to disk when the run reads slower than the source sends (0: none). */
  spoolBytes: number;
}

export class ReplicaLink {
  private readonly bytes: LinkBytes;

  private constructor(
    private readonly socket: Socket,
    readonly label: string,
    silenceMs: number,
    private readonly options: LinkOptions,
  ) {
    this.bytes = new LinkBytes(socket, label, silenceMs, options.spoolBytes);
  }

  /**
   * Connects to `endpoint` and asks for a full resync. Resolves once the master accepts (+FULLRESYNC): the
   * fork is then under way, and nothing is written anywhere yet. A refusal rejects with ReplicationRefused.
   */
  static async open(endpoint: Endpoint, label: string, options: LinkOptions): Promise<ReplicaLink> {
    const socket = connectSocket(endpoint);
    socket.setNoDelay(true);
    const link = new ReplicaLink(socket, label, endpoint.replyTimeoutMs ?? 0, options);
    try {
      await link.connected(endpoint);
      await link.handshake(endpoint);
      return link;
    } catch (err) {
      link.close();
      throw err;
    }
  }

  private async connected(endpoint: Endpoint): Promise<void> {
    const event = endpoint.tls && !endpoint.socketPath ? 'secureConnect' : 'connect';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new LinkLost(`${this.label}: no connection within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
      this.socket.once(event, () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.once('error', (err: Error) => {
        clearTimeout(timer);
        reject(new LinkLost(`${this.label}: ${err.message}`));
      });
    });
  }

  /** AUTH as the run's user, the capabilities (`eof`: a diskless transfer; `psync2`), then PSYNC for a full resync. */
  private async handshake(endpoint: Endpoint): Promise<void> {
    if (endpoint.password !== undefined) {
      await this.ask(endpoint.username ? ['AUTH', endpoint.username, endpoint.password] : ['AUTH', endpoint.password], 'AUTH');
    }
    // Redis 2.8 and 3.0 know no capabilities and say so: as their own replicas do, go on (disk-based, then).
    await this.ask(['REPLCONF', 'capa', 'eof', 'capa', 'psync2'], 'REPLCONF').catch((err: unknown) => {
      if (!(err instanceof ReplicationRefused && /Unrecognized REPLCONF option/i.test(err.message))) throw err;
    });
    // A diskless master answers only once its fork starts, after repl-diskless-sync-delay: newlines till then.
    const reply = await this.ask(['PSYNC', '?', '-1'], 'PSYNC', true);
    // "+FULLRESYNC <replid> <offset>": the replication id and offset matter once the stream is followed (not yet).
    if (!/^\+FULLRESYNC [0-9a-f]{40} [0-9]+$/i.test(reply)) throw new ReplicationRefused(`${this.label} answered PSYNC with "${reply.slice(0, 200)}", not a full resync`);
  }

  /**
   * Sends one command and reads its one-line reply; an error reply is a refusal naming the command. A `patient`
   * ask waits as long as the master keeps sending newlines (REPLY_TIMEOUT bounds its silence).
   */
  private async ask(args: string[], name: string, patient = false): Promise<string> {
    const writer = new RespWriter(256);
    writer.command(args);
    this.socket.write(writer.buf.subarray(0, writer.at));
    const reply = patient ? await this.lineAfterNewlines() : await withTimeout(this.bytes.line(), CONNECT_TIMEOUT_MS, `${this.label} did not answer ${name} within ${CONNECT_TIMEOUT_MS / 1000} s`);
    if (reply.startsWith('-')) throw new ReplicationRefused(`${this.label} refused ${name}: ${reply.slice(1)}`);
    return reply;
  }

  /**
   * The snapshot's bytes, once the master has them ready (it sends a bare newline each second meanwhile): a
   * disk-based transfer announces its length (`$<len>`), a diskless one a 40-byte mark that follows its last
   * byte (`$EOF:<mark>`). The input ends with the RDB: the mark is held back and checked by `finish`.
   */
  async snapshot(): Promise<RdbInput & { finish: () => Promise<void> }> {
    const header = await this.lineAfterNewlines();
    if (header.startsWith('-')) throw new LinkLost(`${this.label} ended the resync before its snapshot: ${header.slice(1)}`);
    const mark = /^\$EOF:(.{40})$/.exec(header)?.[1];
    const length = /^\$([0-9]+)$/.exec(header)?.[1];
    if (mark === undefined && length === undefined) throw new LinkLost(`${this.label} sent "${header.slice(0, 80)}" where a snapshot's length belongs`);
    return mark !== undefined ? this.markedInput(Buffer.from(mark, 'latin1')) : this.sizedInput(Number(length));
  }

  /** The next line that is not a bare newline, each newline reported as waiting. */
  private async lineAfterNewlines(): Promise<string> {
    for (;;) {
      const line = await this.bytes.line();
      if (line !== '') return line;
      this.options.onWaiting();
    }
  }

  private sizedInput(size: number): RdbInput & { finish: () => Promise<void> } {
    let position = 0;
    return {
      size,
      rereadable: false,
      read: async (buffer, offset, length, at) => {
        expectPosition(at, position);
        const wanted = Math.min(length, size - position);
        if (wanted === 0) return { bytesRead: 0 };
        await this.bytes.waitFor(0);
        const count = Math.min(wanted, this.bytes.available);
        this.bytes.take(buffer, offset, count);
        position += count;
        return { bytesRead: count };
      },
      close: async () => undefined,
      finish: async () => {
        if (position !== size) throw new LinkLost(`${this.label}'s snapshot has ${size - position} bytes after its end`);
      },
    };
  }

  /** A diskless transfer: every byte but the last 40 is the RDB's, and those 40 must be the mark. */
  private markedInput(mark: Buffer): RdbInput & { finish: () => Promise<void> } {
    let position = 0;
    const atMark = (): boolean => this.bytes.available === EOF_MARK_BYTES && this.bytes.peek(EOF_MARK_BYTES).equals(mark);
    return {
      size: Infinity,
      rereadable: false,
      read: async (buffer, offset, length, at) => {
        expectPosition(at, position);
        while (this.bytes.available <= EOF_MARK_BYTES) {
          if (atMark()) return { bytesRead: 0 };
          await this.bytes.waitFor(EOF_MARK_BYTES);
        }
        const count = Math.min(length, this.bytes.available - EOF_MARK_BYTES);
        this.bytes.take(buffer, offset, count);
        position += count;
        return { bytesRead: count };
      },
      close: async () => undefined,
      finish: async () => {
        await this.bytes.waitFor(EOF_MARK_BYTES - 1);
        if (!this.bytes.peek(EOF_MARK_BYTES).equals(mark)) throw new LinkLost(`${this.label}'s snapshot does not end with the mark its header announced`);
      },
    };
  }

  close(): void {
    this.bytes.end(new LinkClosed(`${this.label}: the replication link was closed by the run`));
    this.socket.destroy();
    this.bytes.close();
  }
}

function expectPosition(asked: number, at: number): void {
  if (asked !== at) throw new Error(`a replication stream is read in order: byte ${asked} asked at byte ${at}`);
}

async function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new LinkLost(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
