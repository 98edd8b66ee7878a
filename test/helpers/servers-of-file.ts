// Servers a test file starts as its tests go, all stopped after the file (vitest's hooks: a helper for tests
// only, apart from servers.ts, which the bench and the demo use too).
import { afterAll } from 'vitest';
import { startRedis, type LocalServer } from './servers.js';

/** For a test file that starts servers as its tests go: `server(args)` starts one, and all are stopped after the file. */
export function serversOfFile(): (args?: string[]) => Promise<LocalServer> {
  const started: LocalServer[] = [];
  afterAll(async () => {
    await Promise.all(started.map((s) => s.stop().catch(() => undefined)));
  });
  return async (args = []) => {
    const one = await startRedis(args);
    started.push(one);
    return one;
  };
}
