// Connections to the source and the target: connect fast or fail fast, binary-safe replies,
// and what each server can do (version, scripting, PEXPIRETIME), found out once at start.
import { isIP } from 'node:net';
import { createClient, ErrorReply, RESP_TYPES } from '@redis/client';
import { packKeys } from './scripts.js';
import type { Endpoint } from './settings.js';

/** A reply with bulk strings as Buffers; errors reject the command's promise instead. */
export type Reply = null | number | string | Buffer | Reply[];
export type Arg = string | Buffer;

const BUFFERS = { [RESP_TYPES.BLOB_STRING]: Buffer } as const;
const CONNECT_TIMEOUT_MS = 5000;

/** Where to connect: a unix socket, plain TCP, or TLS with the verification asked for. */
function socketOptions(endpoint: Endpoint) {
  const common = { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: false as const };
  if (endpoint.socketPath) return { ...common, path: endpoint.socketPath };
  const { tls } = endpoint;
  if (!tls) return { ...common, host: endpoint.host, port: endpoint.port };
  return {
    ...common,
    host: endpoint.host,
    port: endpoint.port,
    tls: true as const,
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    servername: tls.servername ?? (isIP(endpoint.host) ? undefined : endpoint.host),
    rejectUnauthorized: tls.verify !== 'none',
    // 'ca': the chain must lead to a trusted CA, but any host name is accepted.
    ...(tls.verify === 'full' ? {} : { checkServerIdentity: () => undefined }),
  };
}

/** RESP2 keeps replies flat (XINFO as arrays, scores as strings); no reconnects: a lost server ends the run. */
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

/** A server refused a read the run cannot go on without (an ACL rule, a slot that moved during a comparison). */
export class CommandRefused extends Error {}

/** The error is a server's refusal (an error reply, or CommandRefused), not a bug or a lost socket. */
export function isRefusal(err: unknown): boolean {
  return err instanceof CommandRefused || err instanceof ErrorReply;
}

export interface Capabilities {
  version: number[];
  /** PEXPIRETIME exists (Redis 7+): expiries copy as the same absolute millisecond. */
  expireTime: boolean;
  /** Lua shebang flags such as allow-cross-slot-keys are understood (Redis 7+). */
  scriptFlags: boolean;
  /** The server runs in cluster mode (INFO redis_mode:cluster). */
  clusterNode: boolean;
}

export class Connection {
  capabilities: Capabilities = { version: [0], expireTime: false, scriptFlags: false, clusterNode: false };
  /** Turned off for the rest of the run when this server refuses EVAL (ACL or a managed service). */
  scriptsAllowed = true;
  private lastError: Error | undefined;

  private constructor(
    readonly endpoint: Endpoint,
    private readonly client: Client,
    /** Each command goes with ASKING: the key's slot is being imported here (a cluster resharding). */
    private readonly askingFirst = false,
  ) {}

  get label(): string {
    const where = this.endpoint.socketPath ? 'private redis-server for SOURCE_RDB_FILE' : `${this.endpoint.host}:${this.endpoint.port}`;
    return `${this.endpoint.side} ${where}${this.endpoint.tls ? ' (TLS)' : ''}`;
  }

  static async open(endpoint: Endpoint): Promise<Connection> {
    const client = makeClient(endpoint);
    const connection = new Connection(endpoint, client);
    // Without a listener node-redis would crash the process on a socket error.
    client.on('error', (err: Error) => {
      connection.lastError = err;
    });
    try {
      await client.connect();
      await connection.send(['PING']);
      connection.capabilities = await readCapabilities(connection);
    } catch (err) {
      client.destroy();
      const reason = readableTlsError(describeError(err));
      throw new ConnectionError(`${connection.label}: ${reason}${tlsHint(endpoint, reason)}`);
    }
    return connection;
  }

  send(args: readonly Arg[]): Promise<Reply> {
    if (this.askingFirst) {
      // Queued in the same tick, so no other command on this socket can come between the two.
      void this.client.sendCommand(['ASKING']).catch(() => undefined);
    }
    return this.client.sendCommand(args, { typeMapping: BUFFERS }) as Promise<Reply>;
  }

  /** The same server and socket, each command preceded by ASKING (after an ASK redirection). */
  asking(): Connection {
    const view = new Connection(this.endpoint, this.client, true);
    view.capabilities = this.capabilities;
    view.scriptsAllowed = this.scriptsAllowed;
    return view;
  }

  /**
   * Runs one of our Lua scripts (lib/scripts.ts), keys packed after the arguments. The script text travels
   * each time, so a flushed script cache cannot break a run.
   */
  evalScript(script: string, keys: readonly Buffer[], args: readonly Arg[]): Promise<Reply> {
    return this.send(['EVAL', script, '0', ...args, ...packKeys(keys)]);
  }

  async close(): Promise<void> {
    if (this.client.isOpen) {
      try {
        await this.client.close();
      } catch {
        this.client.destroy();
      }
    }
  }

  /** Why the connection is gone, or undefined while it is up. */
  get lostBecause(): string | undefined {
    if (this.client.isReady) return undefined;
    return this.lastError ? describeError(this.lastError) : 'connection closed';
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
  const match = /redis_version:([0-9.]+)/.exec(info);
  const version = (match?.[1] ?? '0').split('.').map(Number);
  const atLeast7 = (version[0] ?? 0) >= 7;
  return { version, expireTime: atLeast7, scriptFlags: atLeast7, clusterNode: /redis_mode:cluster/.test(info) };
}

/** A short reason without stack or secrets. node-redis wraps some causes in AggregateError. */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return describeError(err.errors[0]);
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
