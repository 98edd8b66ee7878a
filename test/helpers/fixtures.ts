// Vitest fixtures shared by the end-to-end test files: a server pair per describe block, a server with one of our
// connections to it, and run directories removed when the file is done. Only for test files (they register vitest hooks).
import { rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { Connection } from '../../lib/net/connections.js';
import { startRedis, tempDir, type LocalServer } from './servers.js';

export interface Pair {
  source: LocalServer;
  target: LocalServer;
}

/** A source and a target for one describe block, stopped in its afterAll. */
export function serverPair(): Pair {
  const pair = {} as Pair;
  beforeAll(async () => {
    [pair.source, pair.target] = await Promise.all([startRedis(), startRedis()]);
  });
  afterAll(async () => {
    await Promise.all([pair.source?.stop(), pair.target?.stop()]);
  });
  return pair;
}

export interface Connected {
  server: LocalServer;
  connection: Connection;
}

/**
 * A server and one Connection to it as `side`, for the tests that drive lib/ directly: started in beforeAll
 * (after `prepare`, which writes what the tests read), closed and stopped in afterAll.
 */
export function serverWithConnection(side: 'source' | 'destination', prepare?: (server: LocalServer) => Promise<void>): Connected {
  const connected = {} as Connected;
  beforeAll(async () => {
    connected.server = await startRedis();
    await prepare?.(connected.server);
    connected.connection = await Connection.open({ side, host: '127.0.0.1', port: connected.server.port, db: 0 });
  });
  afterAll(async () => {
    await connected.connection?.close();
    await connected.server?.stop();
  });
  return connected;
}

const runDirs: string[] = [];
afterAll(() => {
  for (const dir of runDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh working directory for one run (its error log goes there), removed when the test file is done. */
export function runDir(): string {
  const dir = tempDir();
  runDirs.push(dir);
  return dir;
}
