// A second socket to a server, for batches of commands the run encodes itself (lib/net/resp.ts): one write per
// batch, replies counted back in order. Same address, TLS, AUTH and SELECT as the node-redis connection.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ErrorReply, SocketClosedUnexpectedlyError } from '@redis/client';
import type { Endpoint } from '../settings.js';
import { RespParser, RespWriter, type PipeReply } from './resp.js';
import { tlsOptions } from './tls.js';

interface Waiter {
  count: number;
  replies: PipeReply[];
  resolve: (replies: PipeReply[]) => void;
  reject: (err: Error) => void;
}

/** The socket node-redis would open for `endpoint`: the same address, and the same TLS options (tls.ts). */
export function connectSocket(endpoint: Endpoint): Socket {
  if (endpoint.socketPath) return netConnect({ path: endpoint.socketPath });
  const { tls } = endpoint;
  if (!tls) return netConnect({ host: endpoint.host, port: endpoint.port });
  return tlsConnect(tlsOptions(endpoint, tls));
}

export class Pipeline {
  /** Batches sent and not yet wholly answered, oldest first. */
  private readonly waiters: Waiter[] = [];
  private failure: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    /** Called as replies come (once per socket chunk): the connection's watchdog counts it as progress. */
    private readonly onReply: () => void,
  ) {
    const parser = new RespParser((reply) => this.take(reply));
    socket.on('data', (chunk: Buffer) => {
      try {
        parser.feed(chunk);
        // Progress once per chunk, not per reply: a clock read for each of a batch's replies was measurable.
        this.onReply();
      } catch (err) {
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    });
    socket.on('error', (err: Error) => this.fail(err));
    socket.on('close', () => this.fail(new SocketClosedUnexpectedlyError()));
  }

  /** Connects and authenticates; an error reply to AUTH or SELECT rejects as that ErrorReply. */
  static async open(endpoint: Endpoint, onReply: () => void): Promise<Pipeline> {
    const socket = connectSocket(endpoint);
    socket.setNoDelay(true);
    const pipeline = new Pipeline(socket, onReply);
    await new Promise<void>((resolve, reject) => {
      socket.once(endpoint.tls && !endpoint.socketPath ? 'secureConnect' : 'connect', resolve);
      socket.once('error', reject);
    });
    const hello = new RespWriter(256);
    if (endpoint.password !== undefined) hello.command(endpoint.username ? ['AUTH', endpoint.username, endpoint.password] : ['AUTH', endpoint.password]);
    if (endpoint.db !== 0) hello.command(['SELECT', String(endpoint.db)]);
    if (hello.commands > 0) {
      const refused = (await pipeline.send(hello)).find((r): r is ErrorReply => r instanceof ErrorReply);
      if (refused) {
        pipeline.destroy(refused);
        throw refused;
      }
    }
    return pipeline;
  }

  /** Sends the writer's commands in one write; resolves with one reply per command, errors included. */
  send(writer: RespWriter): Promise<PipeReply[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (writer.commands === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.waiters.push({ count: writer.commands, replies: [], resolve, reject });
      this.socket.write(writer.bytes);
    });
  }

  /** Replies still awaited. */
  get waiting(): number {
    return this.waiters.length;
  }

  get usable(): boolean {
    return this.failure === undefined;
  }

  /** Ends the socket; the batches waiting reject with `err`. */
  destroy(err: Error): void {
    this.fail(err);
    this.socket.destroy();
  }

  private take(reply: PipeReply): void {
    const waiter = this.waiters[0];
    if (!waiter) {
      this.destroy(new Error('a reply nobody asked for: the connection is out of step'));
      return;
    }
    waiter.replies.push(reply);
    if (waiter.replies.length === waiter.count) {
      this.waiters.shift();
      waiter.resolve(waiter.replies);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
  }
}
