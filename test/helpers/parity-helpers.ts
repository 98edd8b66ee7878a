// Helpers for the parity tests: a stack-trace check, and looks inside numbered databases and the command
// statistics of a test server. (Runs are started by servers.ts spawnMigrator; summaries read by inspect.ts parseSummary.)
import type { RedisServer } from './servers.js';

/** A line of a JavaScript stack trace ("    at fn (file:line:col)"). */
export const STACK_FRAME = /^\s+at\s/m;

/** Keys per database, from INFO keyspace: { 0: 12, 5: 3 }. Databases without keys are absent. */
export async function keyspace(server: RedisServer): Promise<Record<number, number>> {
  const info = String(await server.cmd('INFO', 'keyspace'));
  const out: Record<number, number> = {};
  for (const match of info.matchAll(/^db(\d+):keys=(\d+)/gm)) out[Number(match[1])] = Number(match[2]);
  return out;
}

/** Runs a Lua script in database `db` (SELECT inside a script does not change the caller's database). */
export async function evalInDb(server: RedisServer, db: number, body: string, ...args: (string | number)[]): Promise<unknown> {
  return server.cmd('EVAL', `redis.call('SELECT', ARGV[1])\n${body}`, 0, db, ...args);
}

/** Counts of calls per command from INFO commandstats: { rpush: 50, ... }. */
export async function commandCalls(server: RedisServer): Promise<Record<string, number>> {
  const info = String(await server.cmd('INFO', 'commandstats'));
  const out: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) out[match[1] as string] = Number(match[2]);
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));
