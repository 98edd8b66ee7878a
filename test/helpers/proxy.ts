// A TCP proxy on a free loopback port that sits between a client and a redis-server, for tests that need
// network faults on demand: resets, stalls, refused connections and an upstream that moves.
import { connect, createServer, type Socket } from 'node:net';

export interface FaultProxy {
  /** Loopback port the proxy listens on (127.0.0.1). */
  port: number;
  /** Connections accepted so far (for assertions). */
  readonly accepted: number;
  /** Connection pairs currently forwarding (for assertions). */
  readonly open: number;
  /** Destroys every open client and upstream socket at once (like a network reset); new connections still work. */
  cutAll(): void;
  /** Stops forwarding bytes in both directions for `ms` milliseconds (sockets stay open, data is buffered/paused), then resumes. Returns a promise resolved when the stall ends. */
  stall(ms: number): Promise<void>;
  /** The same stall, until the function it returns is called (for a test that ends it on something observable). */
  hold(): () => void;
  /** For `ms` milliseconds, every new connection is accepted and destroyed at once (refused); existing ones are cut too when `cutExisting` is true. */
  refuse(ms: number, cutExisting?: boolean): Promise<void>;
  /**
   * The first command sent upstream whose bytes hold `marker` reaches the server, but its reply never comes
   * back: that client's connection is reset a moment later (a reply lost with the connection). Resolves then.
   * The marker must not straddle two TCP chunks (short markers in one command: fine for tests).
   */
  loseReplyTo(marker: string): Promise<void>;
  /** Points the proxy at another upstream port from now on (for a server restarted on a new port / a failover). */
  retarget(port: number): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  /** Chunks that slipped through while stalled, kept per direction so none are lost or reordered. */
  toUpstream: Buffer[];
  toClient: Buffer[];
  /** Replies to this client are dropped (loseReplyTo). */
  repliesLost?: boolean;
}

/** Sends an RST rather than a FIN where it can, so the far end sees a reset, not a polite close. */
function reset(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

export async function startProxy(upstreamPort: number, upstreamHost = '127.0.0.1'): Promise<FaultProxy> {
  let targetPort = upstreamPort;
  let accepted = 0;
  let closed = false;
  // Counters, not flags, so overlapping stalls or refusals end only when the last one does.
  let stalls = 0;
  let refusals = 0;
  const pairs = new Set<Pair>();
  /** Clients accepted during a stall, not yet connected upstream. */
  const held = new Set<Socket>();
  /** Pending stall/refuse timers with their resolvers, so close() can end them instead of leaving handles. */
  const timers = new Map<NodeJS.Timeout, () => void>();
  let replyLoss: { marker: Buffer; fired: () => void } | undefined;

  const after = (ms: number, then: () => void): Promise<void> =>
    new Promise<void>((resolve) => {
      const finish = (): void => {
        timers.delete(timer);
        then();
        resolve();
      };
      const timer = setTimeout(finish, ms);
      timers.set(timer, finish);
    });

  const forward = (pair: Pair, from: Socket, to: Socket, backlog: Buffer[]): void => {
    from.on('data', (chunk: Buffer) => {
      // pause() stops further 'data' events, but keep anything already in flight rather than pass it on.
      if (stalls > 0) {
        backlog.push(chunk);
        return;
      }
      if (to === pair.client && pair.repliesLost) return;
      if (to === pair.upstream && replyLoss && chunk.includes(replyLoss.marker)) loseReplies(pair, replyLoss.fired);
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      if (stalls === 0) from.resume();
    });
    // A clean close is passed on as a clean close (after pending writes); an error or reset as a reset.
    from.on('end', () => to.end());
    from.on('close', (hadError) => {
      if (hadError) reset(to);
      else if (!to.destroyed) to.end();
      if (pair.client.destroyed && pair.upstream.destroyed) pairs.delete(pair);
    });
  };

  const wire = (client: Socket): void => {
    const upstream = connect({ port: targetPort, host: upstreamHost });
    upstream.on('error', () => {}); // ECONNRESET/ECONNREFUSED surface as 'close' with hadError.
    const pair: Pair = { client, upstream, toUpstream: [], toClient: [] };
    pairs.add(pair);
    forward(pair, client, upstream, pair.toUpstream);
    forward(pair, upstream, client, pair.toClient);
    client.resume();
  };

  const server = createServer((client) => {
    accepted++;
    client.on('error', () => {});
    if (closed || refusals > 0) {
      reset(client);
      return;
    }
    if (stalls > 0) {
      // Held, not refused: the client sees a connection that just doesn't answer yet.
      client.pause();
      held.add(client);
      client.once('close', () => held.delete(client));
      return;
    }
    wire(client);
  });

  /** The command in flight goes on to the server; the client never hears back and is reset. */
  const loseReplies = (pair: Pair, fired: () => void): void => {
    replyLoss = undefined;
    pair.repliesLost = true;
    setTimeout(() => {
      reset(pair.client);
      pair.upstream.end();
      fired();
    }, 100);
  };

  const cutAll = (): void => {
    for (const pair of pairs) {
      reset(pair.client);
      reset(pair.upstream);
    }
    pairs.clear();
    for (const client of held) reset(client);
    held.clear();
  };

  const startStall = (): void => {
    stalls++;
    for (const pair of pairs) {
      pair.client.pause();
      pair.upstream.pause();
    }
  };

  const endStall = (): void => {
    stalls--;
    if (stalls > 0 || closed) return;
    for (const pair of pairs) {
      for (const chunk of pair.toUpstream.splice(0)) pair.upstream.write(chunk);
      for (const chunk of pair.toClient.splice(0)) pair.client.write(chunk);
      pair.client.resume();
      pair.upstream.resume();
    }
    const waiting = [...held];
    held.clear();
    for (const client of waiting) if (!client.destroyed) wire(client);
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => {});
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    cutAll,
    stall: (ms) => {
      startStall();
      return after(ms, endStall);
    },
    hold: () => {
      startStall();
      let held = true;
      return () => {
        if (held) endStall();
        held = false;
      };
    },
    refuse: (ms, cutExisting = false) => {
      refusals++;
      if (cutExisting) cutAll();
      return after(ms, () => {
        refusals--;
      });
    },
    loseReplyTo: (marker) =>
      new Promise<void>((resolve) => {
        replyLoss = { marker: Buffer.from(marker), fired: resolve };
      }),
    retarget: (newPort) => {
      targetPort = newPort;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      // Settle pending stall/refuse promises now, so nothing awaits a timer that will never fire.
      for (const [timer, finish] of [...timers]) {
        clearTimeout(timer);
        finish();
      }
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
