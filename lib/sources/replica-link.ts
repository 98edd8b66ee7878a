// One source master read as its replica: the handshake a replica makes (AUTH, REPLCONF capabilities, PSYNC),
// then the full resync's RDB as a stream of bytes for our reader (lib/rdb/), read once and never whole in
// memory: what the reader has not taken yet waits in memory, then in a spool file (byte-queue.ts), and past the
// spool's cap the socket pauses.
import type { Socket } from 'node:net';
import { connectSocket } from '../net/pipeline.js';
import { ByteQueue, SpoolUse } from './byte-queue.js';
import { RespWriter } from '../net/resp.js';
import type { RdbInput } from '../rdb/file-window.js';
import type { Endpoint } from '../settings.js';
import { parseCommands, StreamError, type ParsedCommands } from './stream-commands.js';

const CONNECT_TIMEOUT_MS = 5000;
/** Bytes received and not yet read that are kept in memory; past them, the spool (byte-queue.ts). */
export const LINK_MEMORY_BYTES = 8 * 1024 * 1024;
/** Arrival marks at most this often, and at most this many (an hour behind at 50 ms apart, a few MB). */
const MARK_MS = 5;
const MARKS_MAX = 100_000;
/** Stream bytes taken from the link at a time, unless one command needs more. */
const STREAM_CHUNK = 1024 * 1024;
/** Silence on the stream after which the link counts as lost: a replica's repl-timeout. */
const STREAM_SILENCE_MS = 60_000;
/** Right after a diskless snapshot, ACKs every EARLY_ACK_MS, EARLY_ACKS times (see finish). */
const EARLY_ACK_MS = 50;
const EARLY_ACKS = 20;
/** How often the offset is acknowledged (REPLCONF ACK), as a replica does each second. */
const ACK_MS = 1000;
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
  /** Bytes received and bytes taken since the link opened. */
  received = 0;
  taken = 0;
  /** When the last bytes came. */
  private lastArrival = Date.now();
  /** When bytes arrived: each mark says bytes up to `upTo` had arrived by `at` (ms). Coarse and bounded. */
  private marks: { upTo: number; at: number }[] = [];
  /** Marks before this one are spent (dropped in bulk, not one shift at a time). */
  private markHead = 0;
  private ended: Error | undefined;
  private wake: (() => void) | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  /** Since when the socket has been paused with the queue full (0: it is not). */
  private fullSince = 0;

  constructor(private readonly socket: Socket, private readonly label: string, public silenceMs: number, spoolBytes: number, private readonly use: SpoolUse) {
    this.queue = new ByteQueue(LINK_MEMORY_BYTES, spoolBytes, use);
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      this.lastArrival = Date.now();
      this.mark();
      try {
        this.queue.push(chunk);
      } catch (err) {
        this.end(new LinkLost(`${label}: ${err instanceof Error ? err.message : String(err)}`));
        socket.destroy();
        return;
      }
      if (!this.queue.hasRoom) this.pause();
      this.notify();
    });
    socket.on('error', (err: Error) => this.end(new LinkLost(`${label}: the replication link failed: ${err.message}`)));
    socket.on('close', () => this.end(new LinkLost(`${label}: the replication link closed`)));
  }

  get available(): number {
    return this.queue.size;
  }

  /** Milliseconds since bytes last came. */
  get quietFor(): number {
    return Date.now() - this.lastArrival;
  }

  end(reason: Error): void {
    this.countFull();
    this.ended ??= reason;
    this.notify();
  }

  close(): void {
    this.countFull();
    this.queue.close();
  }

  /** Memory and spool full: the source keeps what it has to send until we read again. */
  private pause(): void {
    this.socket.pause();
    if (this.fullSince === 0) this.fullSince = Date.now();
  }

  private resume(): void {
    this.socket.resume();
    this.countFull();
  }

  private countFull(): void {
    if (this.fullSince === 0) return;
    this.use.fullMs += Date.now() - this.fullSince;
    this.fullSince = 0;
  }

  /** Waits until more than `bytes` are queued; rejects when the link ended or stayed silent too long. */
  async waitFor(bytes: number): Promise<void> {
    while (this.queue.size <= bytes) {
      if (this.ended) throw this.ended;
      this.resume();
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
    this.taken += count;
    if (this.queue.drained) this.resume();
  }

  /**
   * When the byte at link position `position` arrived (ms since the epoch). Positions are asked in order:
   * marks before it are dropped. Past the cap no mark is added, so a later byte is dated by an earlier mark:
   * a lag measured from it errs long, never short.
   */
  arrivalOf(position: number): number {
    const { marks } = this;
    while (this.markHead < marks.length - 1 && (marks[this.markHead] as { upTo: number }).upTo < position) this.markHead += 1;
    return marks[this.markHead]?.at ?? Date.now();
  }

  private mark(): void {
    const now = Date.now();
    const last = this.marks[this.marks.length - 1];
    if (last && now - last.at < MARK_MS) {
      last.upTo = this.received;
      return;
    }
    if (this.markHead > MARKS_MAX / 2) {
      this.marks = this.marks.slice(this.markHead);
      this.markHead = 0;
    }
    if (this.marks.length < MARKS_MAX) this.marks.push({ upTo: this.received, at: now });
  }

  /** The first `count` queued bytes, without taking them. */
  peek(count: number): Buffer {
    return this.queue.peek(count);
  }

  /** Resolves once bytes are queued (or the link ended), or after `ms` in any case. */
  async arrival(ms: number): Promise<void> {
    if (this.queue.size > 0) return;
    if (this.ended) throw this.ended;
    this.resume();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
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
  /** The run's spooling, added up over its links. */
  spoolUse: SpoolUse;
}

/** Where one master's stream stands: applied to the target up to `offset` (what CHECKPOINT_FILE keeps in live mode). */
export interface StreamPosition {
  /** host:port of the server the link reads (a master, or its replica with SOURCE_READ_FROM). */
  address: string;
  replicationId: string;
  offset: number;
  /** The database the stream had SELECTed at that offset: a partial resync does not send SELECT again. */
  db: number;
}

/** One command of the replication stream: its arguments, and when its last byte arrived. */
export interface StreamCommand {
  args: Buffer[];
  arrivedAt: number;
}

export class ReplicaLink {
  private readonly bytes: LinkBytes;
  /** The master's replication id, and the stream offset the snapshot stands at (then: the offset applied). */
  replicationId = '';
  offset = 0;
  /** Set when a partial resync was asked and a full one given instead: why (the snapshot comes first). */
  startsOver: string | undefined;
  /** Link position where the stream begins (after the snapshot), once it is read. */
  private streamStart: number | undefined;
  /** Stream bytes taken from the link and not yet parsed into commands. */
  private carry: Buffer = Buffer.alloc(0);
  private acking: NodeJS.Timeout | undefined;

  private constructor(
    private readonly socket: Socket,
    /** host:port, as CHECKPOINT_FILE names the server. */
    readonly address: string,
    readonly label: string,
    silenceMs: number,
    private readonly options: LinkOptions,
  ) {
    this.bytes = new LinkBytes(socket, label, silenceMs, options.spoolBytes, options.spoolUse);
  }

  /**
   * Connects to `endpoint` and asks for a full resync. Resolves once the master accepts (+FULLRESYNC): the
   * fork is then under way, and nothing is written anywhere yet. A refusal rejects with ReplicationRefused.
   */
  static async open(endpoint: Endpoint, label: string, options: LinkOptions, from?: { replicationId: string; offset: number }): Promise<ReplicaLink> {
    const socket = connectSocket(endpoint);
    socket.setNoDelay(true);
    const link = new ReplicaLink(socket, `${endpoint.host}:${endpoint.port}`, label, endpoint.replyTimeoutMs ?? 0, options);
    try {
      await link.connected(endpoint);
      await link.handshake(endpoint, from);
      return link;
    } catch (err) {
      link.close();
      throw err;
    }
  }

  /**
   * A link that continues the stream from `offset` (applied so far) by a partial resync: `PSYNC <replid>
   * <offset + 1>`. A master whose backlog no longer holds that offset gives a full resync instead: then
   * `startsOver` says so, and the link's snapshot must be read before its stream.
   */
  static resume(endpoint: Endpoint, label: string, options: LinkOptions, replicationId: string, offset: number): Promise<ReplicaLink> {
    return ReplicaLink.open(endpoint, label, options, { replicationId, offset });
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
  private async handshake(endpoint: Endpoint, from?: { replicationId: string; offset: number }): Promise<void> {
    if (endpoint.password !== undefined) {
      await this.ask(endpoint.username ? ['AUTH', endpoint.username, endpoint.password] : ['AUTH', endpoint.password], 'AUTH');
    }
    // Redis 2.8 and 3.0 know no capabilities and say so: as their own replicas do, go on (disk-based, then).
    await this.ask(['REPLCONF', 'capa', 'eof', 'capa', 'psync2'], 'REPLCONF').catch((err: unknown) => {
      if (!(err instanceof ReplicationRefused && /Unrecognized REPLCONF option/i.test(err.message))) throw err;
    });
    // A diskless master answers only once its fork starts, after repl-diskless-sync-delay: newlines till then.
    const reply = await this.ask(from ? ['PSYNC', from.replicationId, String(from.offset + 1)] : ['PSYNC', '?', '-1'], 'PSYNC', true);
    if (from) return this.continued(reply, from);
    // "+FULLRESYNC <replid> <offset>": the stream that follows the snapshot starts at that offset.
    const accepted = /^\+FULLRESYNC ([0-9a-f]{40}) ([0-9]+)$/i.exec(reply);
    if (!accepted) throw new ReplicationRefused(`${this.label} answered PSYNC with "${reply.slice(0, 200)}", not a full resync`);
    this.replicationId = accepted[1] as string;
    this.offset = Number(accepted[2]);
  }

  /**
   * "+CONTINUE [<new replid>]": the stream goes on from the offset asked (a failover's new id, psync2). A full
   * resync offered instead is taken (`startsOver`): its snapshot comes next on this link, one fork only.
   */
  private continued(reply: string, from: { replicationId: string; offset: number }): void {
    const full = /^\+FULLRESYNC ([0-9a-f]{40}) ([0-9]+)$/i.exec(reply);
    if (full) {
      this.replicationId = full[1] as string;
      this.offset = Number(full[2]);
      this.startsOver = `${this.label} cannot continue the stream from offset ${from.offset} (its backlog no longer holds it, or it is another history): it offered a full resync`;
      return;
    }
    const accepted = /^\+CONTINUE(?: ([0-9a-f]{40}))?$/i.exec(reply);
    if (!accepted) throw new ReplicationRefused(`${this.label} answered PSYNC ${from.replicationId} ${from.offset + 1} with "${reply.slice(0, 200)}"`);
    this.replicationId = accepted[1] ?? from.replicationId;
    this.offset = from.offset;
    this.enterStream();
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
        this.enterStream();
      },
    };
  }

  /** A diskless transfer: every byte but the last 40 is the RDB's, and those 40 must be the mark. */
  private markedInput(mark: Buffer): RdbInput & { finish: () => Promise<void> } {
    let position = 0;
    // Followed (live mode: ACKs sent), a master may start the stream right after the mark, before we read it.
    const streamMayFollow = (): boolean => this.acking !== undefined;
    const atMark = (): boolean =>
      (streamMayFollow() ? this.bytes.available >= EOF_MARK_BYTES : this.bytes.available === EOF_MARK_BYTES) && this.bytes.peek(EOF_MARK_BYTES).equals(mark);
    return {
      size: Infinity,
      rereadable: false,
      read: async (buffer, offset, length, at) => {
        expectPosition(at, position);
        while (this.bytes.available <= EOF_MARK_BYTES) {
          if (atMark()) return { bytesRead: 0 };
          await this.bytes.waitFor(EOF_MARK_BYTES);
        }
        let count = Math.min(length, this.bytes.available - EOF_MARK_BYTES);
        if (streamMayFollow()) {
          // The RDB ends where the mark begins: a mark starting within these bytes is seen whole in 39 more.
          const found = this.bytes.peek(count + EOF_MARK_BYTES - 1).indexOf(mark);
          if (found >= 0 && found < count) count = found;
          if (count === 0) return { bytesRead: 0 };
        }
        this.bytes.take(buffer, offset, count);
        position += count;
        return { bytesRead: count };
      },
      close: async () => undefined,
      finish: async () => {
        await this.bytes.waitFor(EOF_MARK_BYTES - 1);
        if (!this.bytes.peek(EOF_MARK_BYTES).equals(mark)) throw new LinkLost(`${this.label}'s snapshot does not end with the mark its header announced`);
        this.bytes.take(Buffer.allocUnsafe(EOF_MARK_BYTES), 0, EOF_MARK_BYTES);
        this.enterStream();
        // A diskless master sends the stream only once the replica says it has loaded the snapshot, and an ACK that
        // comes before it has seen its fork end is not taken for that: ACKs come often for a moment, so the writes
        // it holds for us meanwhile stay few.
        if (this.acking) this.ackOftenFor(EARLY_ACKS);
      },
    };
  }

  /**
   * Acknowledges the applied offset now and every second after (REPLCONF ACK), as a replica does: a master
   * drops a replica that stays silent past repl-timeout, and a diskless one starts the stream on the first ACK.
   */
  startAcks(): void {
    this.acking ??= setInterval(() => this.ack(), ACK_MS);
  }

  private ackOftenFor(count: number): void {
    this.ack();
    if (count > 1) setTimeout(() => this.ackOftenFor(count - 1), EARLY_ACK_MS).unref();
  }

  ack(): void {
    if (this.socket.destroyed) return;
    const writer = new RespWriter(64);
    writer.command(['REPLCONF', 'ACK', String(this.offset)]);
    this.socket.write(writer.buf.subarray(0, writer.at));
  }

  /** Bytes the master has sent past what has been applied: received but not yet taken as commands. */
  get behind(): number {
    return this.bytes.available + this.carry.length;
  }

  /**
   * The next commands of the stream after the snapshot (at least one: it waits for them), at most `max`, each
   * with its size in bytes: the offset moves on by them once they are applied (`applied`).
   */
  async commands(max: number): Promise<{ commands: StreamCommand[]; sizes: number[] }> {
    if (this.streamStart === undefined) throw new Error('the replication stream is read after its snapshot');
    for (;;) {
      const parsed = this.parsed(max);
      if (parsed.commands.length > 0) {
        let end = this.bytes.taken - this.carry.length;
        const commands = parsed.commands.map((args, i) => {
          end += parsed.sizes[i] as number;
          return { args, arrivedAt: this.bytes.arrivalOf(end) };
        });
        this.carry = this.carry.subarray(parsed.used);
        return { commands, sizes: parsed.sizes };
      }
      await this.refill(parsed.need);
    }
  }

  private parsed(max: number): ParsedCommands {
    try {
      return parseCommands(this.carry, max);
    } catch (err) {
      // Not a cut to continue from: the same bytes would come again.
      if (!(err instanceof StreamError)) throw err;
      throw new StreamError(`${this.label}: the replication stream is broken at offset ${this.offset} (${err.message})`);
    }
  }

  /** The run's spooling, which a link continuing this one's stream adds to as well. */
  get spoolUse(): SpoolUse {
    return this.options.spoolUse;
  }

  /** Its snapshot is read (or none was sent): what comes now is the stream. */
  get streaming(): boolean {
    return this.streamStart !== undefined;
  }

  /** The snapshot is read: what follows is the stream, where a quiet master sends a PING only every repl-ping-replica-period (10 s). */
  private enterStream(): void {
    this.streamStart = this.bytes.taken;
    if (this.bytes.silenceMs > 0) this.bytes.silenceMs = Math.max(this.bytes.silenceMs, STREAM_SILENCE_MS);
  }

  /** Waits up to `ms` for stream bytes to come; a link silent past its limit (a half-open socket) is lost. */
  async arrival(ms: number): Promise<void> {
    await this.bytes.arrival(ms);
    const { silenceMs, quietFor } = this.bytes;
    if (silenceMs > 0 && quietFor > silenceMs) throw new LinkLost(`${this.label} sent nothing for ${Math.round(quietFor / 1000)} s (a master PINGs its replicas every repl-ping-replica-period)`);
  }

  /** `bytes` more of the stream are applied: the offset the next ACK reports. */
  applied(bytes: number): void {
    this.offset += bytes;
  }

  /**
   * More stream bytes into `carry`: at least up to `need` (all of the next command, if its size is known;
   * one allocation for it however big), and whatever else has come, up to a chunk.
   */
  private async refill(need: number): Promise<void> {
    await this.bytes.waitFor(0);
    const extra = Math.max(need - this.carry.length, Math.min(this.bytes.available, STREAM_CHUNK), 1);
    const grown = Buffer.allocUnsafe(this.carry.length + extra);
    this.carry.copy(grown, 0);
    for (let filled = this.carry.length; filled < grown.length; ) {
      await this.bytes.waitFor(0);
      const count = Math.min(this.bytes.available, grown.length - filled);
      this.bytes.take(grown, filled, count);
      filled += count;
    }
    this.carry = grown;
  }

  close(): void {
    clearInterval(this.acking);
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
