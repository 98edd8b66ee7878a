// Helpers for the parity tests: run the real script as a child we control (for signals and timing),
// read the summary lines back as numbers, and look inside numbered databases of a test server.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, SCRIPT, type RedisServer } from './servers.js';

const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');

export interface SpawnedMigrator {
  child: ChildProcess;
  /** Everything printed on stdout so far. */
  stdout(): string;
  /** Everything printed on stderr so far. */
  stderr(): string;
  /** Resolves once stdout contains `text`; rejects after `timeoutMs` or when the process ends first. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  /** The exit status, or -1 with the signal when the process was killed by one. */
  exited: Promise<{ code: number; signal: NodeJS.Signals | null }>;
}

/** Starts the real script with tsx in `cwd`, with only the given settings (plus PATH and HOME). */
export function spawnMigrator(env: Record<string, string | number>, cwd: string): SpawnedMigrator {
  const childEnv: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
  for (const [name, value] of Object.entries(env)) childEnv[name] = String(value);
  const child = spawn(TSX, [SCRIPT], { cwd, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const watchers: (() => void)[] = [];
  child.stdout?.on('data', (data: Buffer) => {
    out += data.toString();
    for (const watcher of [...watchers]) watcher();
  });
  child.stderr?.on('data', (data: Buffer) => {
    err += data.toString();
  });
  const exited = new Promise<{ code: number; signal: NodeJS.Signals | null }>((done) => {
    child.once('close', (code, signal) => done({ code: code ?? -1, signal }));
  });
  const waitFor = (text: string, timeoutMs = 15_000): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (out.includes(text)) return resolve();
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${JSON.stringify(text)}; stdout: ${out}; stderr: ${err}`)), timeoutMs);
      const watcher = (): void => {
        if (!out.includes(text)) return;
        clearTimeout(timer);
        watchers.splice(watchers.indexOf(watcher), 1);
        resolve();
      };
      watchers.push(watcher);
      void exited.then(() => {
        if (out.includes(text)) return;
        clearTimeout(timer);
        reject(new Error(`process ended before printing ${JSON.stringify(text)}; stdout: ${out}; stderr: ${err}`));
      });
    });
  return { child, stdout: () => out, stderr: () => err, waitFor, exited };
}

export interface Summary {
  restored: number;
  skipped: number;
  failed: number;
  vanished: number;
}

/** The number on the `Number of <label> keys: N` line; throws when the line is missing. */
export function countOf(stdout: string, label: keyof Summary): number {
  const match = new RegExp(`^Number of ${label} keys: (\\d+)$`, 'm').exec(stdout);
  if (!match) throw new Error(`no "Number of ${label} keys" line in: ${stdout}`);
  return Number(match[1]);
}

export function summaryOf(stdout: string): Summary {
  return {
    restored: countOf(stdout, 'restored'),
    skipped: countOf(stdout, 'skipped'),
    failed: countOf(stdout, 'failed'),
    vanished: countOf(stdout, 'vanished'),
  };
}

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
