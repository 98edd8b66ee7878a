// Connections to the source and the target: connect fast or fail fast, binary-safe replies,
// and what each server can do (version, scripting, PEXPIRETIME), found out once at start.
import {
  ClientClosedError, ClientOfflineError, ConnectionTimeoutError, createClient, DisconnectsClientError, ErrorReply, RESP_TYPES,
  SocketClosedUnexpectedlyError, SocketTimeoutError,
} from '@redis/client';
import { Pipeline } from './pipeline.js';
import { RespWriter, type PipeReply } from './resp.js';
import { packKeys } from './scripts.js';
import { tlsOptions } from './tls.js';
import type { Endpoint } from '../settings.js';

import { asNumber, type Arg, type Reply } from './reply.js';
import { rdbVersionReadBy } from '../rdb/types.js';


const BUFFERS = { [RESP_TYPES.BLOB_STRING]: Buffer } as const;
const CONNECT_TIMEOUT_MS = 5000;

/** Where to connect: a unix socket, plain TCP, or TLS with the verification asked for. */
function socketOptions(endpoint: Endpoint) {
  const common = { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: false as const };
  if (endpoint.socketPath) return { ...common, path: endpoint.socketPath };
  const { tls } = endpoint;
  if (!tls) return { ...common, host: endpoint.host, port: endpoint.port };
  return { ...common, tls: true as const, ...tlsOptions(endpoint, tls) };
}

/**
 * RESP2 keeps replies flat (XINFO as arrays, scores as strings). node-redis never reconnects by itself or
 * queues commands while offline: a lost connection fails its commands at once, and the run reconnects and
 * retries them itself (lib/net/recovery.ts), so it knows which replies were lost.
 */
function makeClient(endpoint: Endpoint) {
  return createClient({
    RESP: 2,
    socket: socketOptions(endpoint),
    username: endpoint.username,
    password: endpoint.password,
    database: endpoint.db,
    disableOfflineQueue: true,
  });
}
type Client = ReturnType<typeof makeClient>;

export class ConnectionError extends Error {}

/** No reply came for this long while commands were waiting: the server or the network stalled. */
class ReplyTimeout extends Error {}

const LOSS_ERRORS = [ClientClosedError, ClientOfflineError, ConnectionTimeoutError, DisconnectsClientError, SocketClosedUnexpectedlyError, SocketTimeoutError, ReplyTimeout];
const LOSS_CODES = /^(ECONNRESET|ECONNREFUSED|ECONNABORTED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)$/;
/** Replies that mean "not this server, not now": a primary demoted in a failover, a restart still loading. */
const LOSS_REPLIES = /^(READONLY|LOADING|MASTERDOWN)\b/;

/**
 * The connection is gone or the server cannot serve us now (a reset, a timeout, a restart, a primary
 * demoted to replica): worth reconnecting and retrying, never a key's own failure.
 */
export function isConnectionLoss(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.some(isConnectionLoss);
  if (err instanceof ErrorReply) return LOSS_REPLIES.test(err.message);
  if (LOSS_ERRORS.some((kind) => err instanceof kind)) return true;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && LOSS_CODES.test(code);
}

/** A per-key failure reason that is really a lost or demoted server (scripts report per key). */
export function isLossReason(reason: string): boolean {
  return /(^|: )(READONLY|LOADING|MASTERDOWN)\b/.test(reason);
}

/** A server refused a read the run cannot go on without (an ACL rule, a slot that moved during a comparison). */
export class CommandRefused extends Error {}

/** The error is a server's refusal (an error reply, or CommandRefused), not a bug or a lost socket. */
export function isRefusal(err: unknown): boolean {
  return err instanceof CommandRefused || err instanceof ErrorReply;
}

interface Capabilities {
  version: number[];
  /** PEXPIRETIME exists (Redis 7+): expiries copy as the same absolute millisecond. */
  expireTime: boolean;
  /** Lua shebang flags such as allow-cross-slot-keys are understood (Redis 7+). */
  scriptFlags: boolean;
  /** The server runs in cluster mode (INFO redis_mode:cluster). */
  clusterNode: boolean;
  /** INFO run_id: a new one means a restarted or another server, on which an old SCAN cursor means nothing. */
  runId: string;
  /** INFO replication role: a replica takes no writes. */
  replica: boolean;
  /** Hash fields can expire (HPEXPIREAT): Redis 7.4+, Valkey 9+. */
  fieldExpiry: boolean;
  /** The newest RDB version the server reads (DUMP payloads, files); undefined when INFO does not say. */
  rdbVersion: number | undefined;
}

/** Writer buffers kept for reuse per connection, and the largest kept: a few MB at most. */
const SPARE_BUFFERS = 4;
const SPARE_BUFFER_MAX_BYTES = 1024 * 1024;

export class Connection {
  capabilities: Capabilities = { version: [0], expireTime: false, scriptFlags: false, clusterNode: false, runId: '', replica: false, fieldExpiry: false, rdbVersion: undefined };
  /** Turned off for the rest of the run when this server refuses EVAL (ACL or a managed service). */
  scriptsAllowed = true;
  private lastError: Error | undefined;
  /** Commands sent and not yet answered, and when a reply last came (or the first of them was sent). */
  private waiting = 0;
  private lastProgress = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  /** Closed by the run (it is over): nothing more is sent, and nothing reconnects. */
  private closed = false;
  /** The socket for self-encoded batches (sendPipelined), opened on first use and again after a loss. */
  private pipeline: Promise<Pipeline> | undefined;
  /** Buffers of writers whose batches were answered, written into again by the next writers (spareBuffer). */
  private readonly spares: Buffer[] = [];

  private constructor(
    readonly endpoint: Endpoint,
    private client: Client,
    /** Set for a view whose commands each go with ASKING (a slot being imported here): its connection. */
    private readonly askingOf?: Connection,
  ) {}

  get label(): string {
    const where = this.endpoint.socketPath ? 'private redis-server for SOURCE_RDB_FILE' : `${this.endpoint.host}:${this.endpoint.port}`;
    return `${this.endpoint.side} ${where}${this.endpoint.tls ? ' (TLS)' : ''}`;
  }

  static async open(endpoint: Endpoint): Promise<Connection> {
    const connection = new Connection(endpoint, makeClient(endpoint));
    try {
      await connection.start();
    } catch (err) {
      const reason = readableTlsError(describeError(err));
      throw new ConnectionError(`${connection.label}: ${reason}${tlsHint(endpoint, reason)}`);
    }
    return connection;
  }

  /**
   * A new socket to the same address (the host name resolved again, as a failover moves it), after a loss.
   * The capabilities are read again: a restarted server has a new run_id, a failed-over one may be a replica.
   */
  async reconnect(): Promise<void> {
    if (this.closed) throw new Error(`${this.label}: closed by the run`);
    this.client.destroy();
    this.dropPipeline(new SocketClosedUnexpectedlyError());
    this.client = makeClient(this.endpoint);
    await this.start();
  }

  /** Marks the connection lost (a READONLY reply: this is no longer the primary), so the run reconnects. */
  drop(reason: string): void {
    this.lastError = new Error(reason);
    this.client.destroy();
    this.dropPipeline(this.lastError);
  }

  private async start(): Promise<void> {
    const { client } = this;
    // Without a listener node-redis would crash the process on a socket error.
    client.on('error', (err: Error) => {
      if (client === this.client) this.lastError = err;
    });
    try {
      // The handshake (AUTH, SELECT) has no timeout of its own: a stopped server would hold it forever.
      await withTimeout(client.connect(), CONNECT_TIMEOUT_MS, () => client.destroy());
      await withTimeout(this.send(['PING']), CONNECT_TIMEOUT_MS, () => client.destroy());
      if (this.endpoint.readonlyReplica) await this.send(['READONLY']);
      this.capabilities = await readCapabilities(this);
    } catch (err) {
      client.destroy();
      throw err;
    }
    this.lastError = undefined;
    this.watchReplies();
  }

  /**
   * A stalled server (SIGSTOP, a network black hole) never answers and never closes the socket. When commands
   * have waited REPLY_TIMEOUT with no reply at all, a second connection asks PING: an answer means the server
   * is only busy or the link slow (a big value on its way), and the wait goes on; silence means a stall, and
   * the socket is dropped so the run reconnects.
   */
  private watchReplies(): void {
    const limit = this.endpoint.replyTimeoutMs;
    if (limit === undefined || limit <= 0 || this.watchdog) return;
    let probing = false;
    this.watchdog = setInterval(() => {
      if (probing || this.waiting === 0 || Date.now() - this.lastProgress < limit) return;
      probing = true;
      void serverAnswers(this.endpoint, limit).then((alive) => {
        probing = false;
        if (alive) this.lastProgress = Date.now();
        else if (this.waiting > 0 && Date.now() - this.lastProgress >= limit) {
          this.lastError = new ReplyTimeout(`no reply for ${limit / 1000} s (REPLY_TIMEOUT), and none to a new connection's PING`);
          this.client.destroy();
          this.dropPipeline(this.lastError);
        }
      });
    }, Math.min(1000, limit));
    this.watchdog.unref();
  }

  send(args: readonly Arg[]): Promise<Reply> {
    if (this.askingOf) {
      // Queued in the same tick on the connection's socket of now, so nothing can come between the two.
      void this.askingOf.send(['ASKING']).catch(() => undefined);
      return this.askingOf.send(args);
    }
    // A read-ahead still under way when the run ends must not count as a loss and reconnect.
    if (this.closed) return Promise.reject(new Error(`${this.label}: closed by the run`));
    if (this.waiting === 0) this.lastProgress = Date.now();
    this.waiting += 1;
    const reply = this.client.sendCommand(args, { typeMapping: BUFFERS }) as Promise<Reply>;
    return reply
      .catch((err: unknown) => {
        // LOADING, READONLY, MASTERDOWN: this server cannot serve us now. Dropping the socket makes the run
        // reconnect, and the reconnection's own handshake (PING, role) decides when it can again.
        if (err instanceof ErrorReply && LOSS_REPLIES.test(err.message)) this.drop(err.message);
        throw err;
      })
      .finally(() => {
        this.waiting -= 1;
        this.lastProgress = Date.now();
      });
  }

  /** A writer for sendPipelined, sized for `bytes`; on an ASKING view, each command goes with ASKING. */
  writer(bytes: number): RespWriter {
    return new RespWriter(bytes, this.askingOf !== undefined, this.spareBuffer(bytes));
  }

  /**
   * A buffer an answered batch is done with, of at least `bytes`: a batch is a new buffer of a hundred kB or so,
   * and allocating one per batch cost the collector and the kernel more than the copy itself.
   */
  private spareBuffer(bytes: number): Buffer | undefined {
    const index = this.spares.findIndex((buf) => buf.length >= bytes);
    return index < 0 ? undefined : this.spares.splice(index, 1)[0];
  }

  /** Every reply to the writer's batch has come, so the server has read all of it: its buffer may be written again. */
  private keepSpare(writer: RespWriter): void {
    if (this.spares.length < SPARE_BUFFERS && writer.buf.length <= SPARE_BUFFER_MAX_BYTES) this.spares.push(writer.buf);
  }

  /**
   * The writer's commands in one socket write on a socket of their own, one reply per command (an error reply
   * is a value, not a rejection): node-redis costs tens of microseconds per command. A lost socket rejects
   * the whole batch, as send does.
   */
  async sendPipelined(writer: RespWriter): Promise<PipeReply[]> {
    if (this.askingOf) {
      const replies = await this.askingOf.sendPipelined(writer);
      return writer.asking ? replies.filter((_, i) => i % 2 === 1) : replies;
    }
    if (this.closed) throw new Error(`${this.label}: closed by the run`);
    if (this.waiting === 0) this.lastProgress = Date.now();
    this.waiting += 1;
    try {
      const replies = await (await this.openPipeline()).send(writer);
      this.keepSpare(writer);
      // As send does: this server cannot serve us now, and the run reconnects.
      const loss = replies.find((r): r is ErrorReply => r instanceof ErrorReply && LOSS_REPLIES.test(r.message));
      if (loss) this.drop(loss.message);
      return replies;
    } finally {
      this.waiting -= 1;
      this.lastProgress = Date.now();
    }
  }

  private async openPipeline(): Promise<Pipeline> {
    const open = this.pipeline;
    if (open) {
      const pipeline = await open.catch(() => undefined);
      if (pipeline?.usable) return pipeline;
      if (this.pipeline !== open) return this.openPipeline();
    }
    const started = Pipeline.open(this.endpoint, () => (this.lastProgress = Date.now()));
    const opening = withTimeout(started, CONNECT_TIMEOUT_MS, () => void started.then((p) => p.destroy(new ConnectionTimeoutError()), () => undefined));
    this.pipeline = opening;
    try {
      return await opening;
    } catch (err) {
      if (this.pipeline === opening) this.pipeline = undefined;
      throw err;
    }
  }

  private dropPipeline(err: Error): void {
    const open = this.pipeline;
    this.pipeline = undefined;
    void open?.then((p) => p.destroy(err), () => undefined);
  }

  /** The same server and socket, each command preceded by ASKING (after an ASK redirection). */
  asking(): Connection {
    const view = new Connection(this.endpoint, this.client, this);
    view.capabilities = this.capabilities;
    view.scriptsAllowed = this.scriptsAllowed;
    return view;
  }

  /**
   * Runs one of our Lua scripts (lib/net/scripts.ts), keys packed after the arguments. The script text travels
   * each time, so a flushed script cache cannot break a run.
   */
  evalScript(script: string, keys: readonly Buffer[], args: readonly Arg[]): Promise<Reply> {
    return this.send(['EVAL', script, '0', ...args, ...packKeys(keys)]);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.dropPipeline(new Error(`${this.label}: closed by the run`));
    if (this.client.isOpen) {
      try {
        // A stalled server would hold a graceful close forever.
        await withTimeout(this.client.close(), CONNECT_TIMEOUT_MS, () => this.client.destroy());
      } catch {
        this.client.destroy();
      }
    }
  }

  /** Why the connection is gone, or undefined while it is up. */
  get lostBecause(): string | undefined {
    if (this.askingOf) return this.askingOf.lostBecause;
    if (this.client.isReady || this.closed) return undefined;
    return this.lastError ? describeError(this.lastError) : 'connection closed';
  }

  /** A loss seen by a command, read as the connection's own reason where it has one (a stall, a READONLY). */
  reasonFor(err: unknown): string {
    return this.lostBecause ?? describeError(err);
  }
}

/** Whether the server answers a PING on a connection of its own within `ms` (any reply, even an error, counts). */
async function serverAnswers(endpoint: Endpoint, ms: number): Promise<boolean> {
  const probe = makeClient(endpoint);
  probe.on('error', () => undefined);
  try {
    await withTimeout(probe.connect().then(() => probe.sendCommand(['PING'])), ms, () => probe.destroy());
    return true;
  } catch (err) {
    return err instanceof ErrorReply;
  } finally {
    probe.destroy();
  }
}

/** `work`, or a ConnectionTimeoutError after `ms` (when `onTimeout` runs, to drop the socket). */
/** A pub/sub connection of its own: its messages, and one call when it is lost (or closed by `close`). */
export interface Subscriber {
  /** Stops listening to some of the patterns, on the same connection (no gap for the others). */
  drop(patterns: string[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * Subscribes to `patterns` (PSUBSCRIBE) on a connection of its own to `endpoint`, channel and message as
 * Buffers. `lost` is called once if the connection goes (a reset, a server kill for its output buffer).
 */
export async function openSubscriber(
  endpoint: Endpoint, patterns: string[], onMessage: (channel: Buffer, message: Buffer) => void, lost: (reason: string) => void,
): Promise<Subscriber> {
  const client = makeClient(endpoint);
  let closing = false;
  let told = false;
  // Only a subscription that was up can be lost: a failure to set one up is thrown, not told.
  let subscribed = false;
  const tell = (reason: string): void => {
    if (closing || told || !subscribed) return;
    told = true;
    lost(reason);
  };
  client.on('error', (err: Error) => tell(describeError(err)));
  client.on('end', () => tell('the connection closed'));
  try {
    await withTimeout(client.connect(), CONNECT_TIMEOUT_MS, () => client.destroy());
    await withTimeout(client.pSubscribe(patterns, (message, channel) => onMessage(channel, message), true), CONNECT_TIMEOUT_MS, () => client.destroy());
    subscribed = true;
  } catch (err) {
    closing = true;
    client.destroy();
    throw new ConnectionError(`${endpoint.side} ${endpoint.host}:${endpoint.port} (events): ${describeError(err)}`);
  }
  return {
    drop: (dropped) => client.pUnsubscribe(dropped),
    close: async () => {
      closing = true;
      client.destroy();
    },
  };
}

async function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new ConnectionTimeoutError());
    }, ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** OpenSSL's raw lines ("80FC...:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert ...:file:line:...") cut to the reason. */
function readableTlsError(reason: string): string {
  const match = /SSL routines:[^:]*:([^:]+)/.exec(reason);
  return match?.[1] ?? reason;
}

/** The usual TLS mix-ups, named: TLS off for a TLS-only server or on for a plain one, a missing CA or client certificate. */
function tlsHint(endpoint: Endpoint, reason: string): string {
  const prefix = endpoint.side === 'source' ? 'SOURCE_REDIS' : 'DESTINATION_REDIS';
  if (endpoint.tls && /certificate required/i.test(reason)) return ` (the server wants a client certificate: set ${prefix}_TLS_CERT_FILE and ${prefix}_TLS_KEY_FILE)`;
  if (endpoint.tls && /self.signed|unable to (verify|get local issuer)|certificate chain/i.test(reason)) return ` (is ${prefix}_TLS_CA_FILE the CA that signed the server's certificate?)`;
  if (!endpoint.tls && /ECONNRESET|socket closed/i.test(reason)) return ` (if the server only speaks TLS, set ${prefix}_TLS=true)`;
  if (endpoint.tls && /wrong version number|packet length|before secure TLS connection|timeout/i.test(reason)) return ` (no TLS handshake: the server may not speak TLS, or may be unreachable; ${prefix}_TLS is on)`;
  return '';
}

async function readCapabilities(connection: Connection): Promise<Capabilities> {
  const info = String(await connection.send(['INFO', 'server']));
  const replication = String(await connection.send(['INFO', 'replication']));
  const match = /redis_version:([0-9.]+)/.exec(info);
  const version = (match?.[1] ?? '0').split('.').map(Number);
  const atLeast7 = (version[0] ?? 0) >= 7;
  return {
    version,
    expireTime: atLeast7,
    scriptFlags: atLeast7,
    clusterNode: /redis_mode:cluster/.test(info),
    runId: /run_id:([0-9a-f]+)/.exec(info)?.[1] ?? '',
    replica: /role:slave/.test(replication),
    fieldExpiry: hasFieldExpiry(info, version),
    rdbVersion: rdbVersionReadBy(version, valkeyVersion(info)),
  };
}

/** Valkey reports redis_version 7.2.4 for compatibility and its own version apart. */
function valkeyVersion(info: string): number[] | undefined {
  return /valkey_version:([0-9.]+)/.exec(info)?.[1]?.split('.').map(Number);
}

function hasFieldExpiry(info: string, redisVersion: readonly number[]): boolean {
  const valkey = valkeyVersion(info);
  if (valkey) return (valkey[0] ?? 0) >= 9;
  const [major = 0, minor = 0] = redisVersion;
  return major > 7 || (major === 7 && minor >= 4);
}

/** The server refused to run scripts at all (ACL or a managed service), as opposed to a failure inside one. */
export function isScriptingRefused(err: unknown): boolean {
  return /NOPERM.*'eval'|unknown command .?eval|scripting is disabled/i.test(describeError(err));
}

/** A short reason without stack or secrets. node-redis wraps some causes in AggregateError. */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return describeError(err.errors[0]);
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** Whether `key` is on `connection`'s server now. */
export async function exists(connection: Connection, key: Buffer): Promise<boolean> {
  return asNumber(await connection.send(['EXISTS', key])) === 1;
}
