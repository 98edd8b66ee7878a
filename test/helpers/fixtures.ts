// Vitest fixtures shared by the end-to-end test files: a server pair per describe block, and run directories
// removed when the file is done. Only for test files (they register vitest hooks).
import { rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
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
