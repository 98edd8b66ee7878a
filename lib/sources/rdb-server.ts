// SOURCE_RDB_FILE: a private redis-server that loads an .rdb backup, on a unix socket in a temporary
// directory holding a link to the file, persistence off. The user's file is only read; everything is removed after.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, openSync, readSync, closeSync, rmSync, statSync, symlinkSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { createClient } from '@redis/client';
import { isValkeyFormat, rdbVersionReadBy } from '../rdb/types.js';
import type { Endpoint } from '../settings.js';

/** Why the file cannot be used, in one line: missing, unreadable, not an RDB, too new, or refused by redis-server. */
export class RdbError extends Error {}

/** Reads the 9-byte header: "REDIS" and a 4-digit version, or "VALKEY" and a 3-digit one (Valkey 9). */
export function rdbFileVersion(path: string): number {
  try {
    accessSync(path, fsConstants.R_OK);
  } catch {
    throw new RdbError(`SOURCE_RDB_FILE ${path} does not exist or cannot be read`);
  }
  if (!statSync(path).isFile()) throw new RdbError(`SOURCE_RDB_FILE ${path} is not a file`);
  const header = Buffer.alloc(9);
  const fd = openSync(path, 'r');
  const read = readSync(fd, header, 0, 9, 0);
  closeSync(fd);
  const text = header.subarray(0, read).toString('latin1');
  if (/^VALKEY[0-9]{3}$/.test(text)) return Number(text.slice(6));
  if (!/^REDIS[0-9]{4}$/.test(text)) throw new RdbError(`SOURCE_RDB_FILE ${path} is not an RDB file (it does not start with REDIS and a 4-digit version, nor VALKEY and a 3-digit one)`);
  return Number(text.slice(5));
}

/** The server's version, and whether it is Valkey ("Valkey server v=9.0.0"), whose versions number apart. */
export function serverVersion(serverPath: string): { version: number[]; valkey: boolean } {
  const run = spawnSync(serverPath, ['--version'], { encoding: 'utf8' });
  if (run.error || run.status !== 0) {
    throw new RdbError(`redis-server not found at ${JSON.stringify(serverPath)}: install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_SERVER_PATH`);
  }
  const match = /v=([0-9.]+)/.exec(run.stdout);
  return { version: (match?.[1] ?? '0').split('.').map(Number), valkey: /^Valkey/i.test(run.stdout) };
}

export interface RdbServer {
  endpoint: (db: number) => Endpoint;
  /** Databases holding keys, from INFO keyspace. */
  databases: number[];
  usedMemoryHuman: string;
  stop: () => Promise<void>;
}

/**
 * Starts the private server and waits for it to load the file, reporting load progress. Stops it and removes
 * the temporary directory if loading fails or `cancelled()` turns true.
 */
export async function startRdbServer(file: string, serverPath: string, onProgress: (line: string) => void, cancelled: () => boolean): Promise<RdbServer> {
  const version = rdbFileVersion(file);
  const server = serverVersion(serverPath);
  const readable = rdbVersionReadBy(server.version, server.valkey ? server.version : undefined);
  if (readable !== undefined && version > readable) {
    const way = isValkeyFormat(version) && !server.valkey
      ? 'a Valkey 9 file: the default RDB_READER=native reads it, or point REDIS_SERVER_PATH at a valkey-server 9'
      : 'use a newer redis-server through REDIS_SERVER_PATH';
    throw new RdbError(`SOURCE_RDB_FILE is RDB version ${version}, newer than ${server.valkey ? 'valkey-server' : 'redis-server'} ${server.version.join('.')} reads (up to version ${readable}); ${way}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'rkm-rdb-'));
  const socket = join(dir, 'redis.sock');
  const logFile = join(dir, 'redis.log');
  symlinkSync(resolve(file), join(dir, 'dump.rdb'));
  const child = spawn(serverPath, [
    '--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir, '--dbfilename', 'dump.rdb',
    '--save', '', '--appendonly', 'no', '--logfile', logFile, '--daemonize', 'no',
  ], { stdio: 'ignore' });
  // A forced exit (a second Ctrl-C) skips async cleanup; this still runs then.
  const cleanupAtExit = (): void => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanupAtExit);
  const stop = async (): Promise<void> => {
    process.off('exit', cleanupAtExit);
    await stopProcess(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const endpoint = (db: number): Endpoint => ({ side: 'source', host: 'localhost', port: 0, db, socketPath: socket });
    await waitUntilLoaded(child, socket, logFile, basename(file), onProgress, cancelled);
    const info = await infoOf(socket);
    return {
      endpoint,
      databases: [...info.matchAll(/^db([0-9]+):keys=[1-9]/gm)].map((m) => Number(m[1])),
      usedMemoryHuman: /used_memory_human:(\S+)/.exec(info)?.[1] ?? '?',
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function infoOf(socket: string): Promise<string> {
  const client = createClient({ RESP: 2, socket: { path: socket, reconnectStrategy: false } });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return String(await client.sendCommand(['INFO']));
  } finally {
    client.destroy();
  }
}

/** Polls INFO persistence until loading ends; the server's own log line explains a refusal. */
async function waitUntilLoaded(child: ChildProcess, socket: string, logFile: string, name: string, onProgress: (line: string) => void, cancelled: () => boolean): Promise<void> {
  let lastShown = 0;
  for (;;) {
    if (cancelled()) throw new RdbError('interrupted while loading');
    if (child.exitCode !== null || child.signalCode !== null) throw new RdbError(`redis-server refused ${name}: ${serverReason(logFile)}`);
    if (existsSync(socket)) {
      const info = await infoOf(socket).catch(() => '');
      if (/^loading:0/m.test(info)) return;
      const percent = /loading_loaded_perc:([0-9.]+)/.exec(info)?.[1];
      if (percent !== undefined && Date.now() - lastShown > 2000) {
        onProgress(`Loading ${name}: ${Number(percent).toFixed(1)}%`);
        lastShown = Date.now();
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The last warning lines of the server's log, where it says why it stopped. */
function serverReason(logFile: string): string {
  const lines = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n') : [];
  const reasons = lines.filter((l) => /#|error|Short read|Wrong|Bad|Unrecoverable|can't|not/i.test(l) && !/oO0OoO0OoO0Oo|WARNING overcommit|Configuration loaded|Redis version/.test(l));
  // Log lines look like "12436:M 21 Nov 2026 14:40:12.586 # Short read ..."; keep the text after the mark.
  return (reasons.slice(-2).map((l) => l.replace(/^\d+:[A-Z] .*? [\d:.]+ [*#.-] /, '')).join(' ') || 'it exited while loading').trim();
}

function stopProcess(child: ChildProcess): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once('exit', () => done());
    child.kill('SIGKILL');
  });
}
