// Throwaway redis-server processes on free loopback ports, for tests, the demo and the benchmark,
// plus a helper that runs the real migrator script as a user would. Nothing is mocked.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createClient, RESP_TYPES } from '@redis/client';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const SCRIPT = join(ROOT, 'redis-keys-migrator.ts');
export const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function makeClient(port: number) {
  return createClient({ RESP: 2, socket: { host: '127.0.0.1', port, reconnectStrategy: false } }).withTypeMapping({
    [RESP_TYPES.BLOB_STRING]: Buffer,
  });
}
export type TestClient = ReturnType<typeof makeClient>;

export interface RedisServer {
  port: number;
  dir: string;
  /** A connected client (RESP2, bulk strings as Buffers) on db 0. */
  readonly client: TestClient;
  /** Sends one command and returns the reply, strings decoded. */
  cmd(...args: (string | Buffer | number)[]): Promise<unknown>;
  stop(): Promise<void>;
}

/** A plain server the tests can also pause and restart. */
export interface LocalServer extends RedisServer {
  /** The redis-server process, for SIGSTOP and SIGCONT. */
  readonly pid: number;
  /** Saves, stops and starts the server again on the same port and data: a new process with a new run_id. */
  restart(): Promise<void>;
}

/**
 * A replica's snapshot starts at once, as on a source with repl-diskless-sync-delay 0 or disk-based sync: the
 * default 5 s wait for more replicas would only slow every test (one test keeps it, to show the wait).
 */
export const NO_SNAPSHOT_DELAY = ['--repl-diskless-sync-delay', '0'];

function spawnRedis(port: number, dir: string, extraArgs: string[]): ChildProcess {
  return spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
      '--enable-debug-command', 'local', ...NO_SNAPSHOT_DELAY, ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

/** Starts redis-server with no persistence, DEBUG allowed from loopback, and any extra arguments. */
export async function startRedis(extraArgs: string[] = []): Promise<LocalServer> {
  const dir = mkdtempSync(join(tmpdir(), 'rkm-redis-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    let child = spawnRedis(port, dir, extraArgs);
    const ready = await waitForReady(child);
    if (!ready.ok) {
      if (attempt < 3 && /Address already in use/.test(ready.output)) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start: ${ready.output}`);
    }
    let client = makeClient(port);
    client.on('error', () => undefined); // a restart or a test that kills the server must not crash the worker
    await client.connect();
    return {
      port,
      dir,
      get pid() {
        return child.pid ?? 0;
      },
      get client() {
        return client;
      },
      cmd: async (...args) => {
        const reply = await client.sendCommand(args.map((a) => (typeof a === 'number' ? String(a) : a)));
        return decode(reply);
      },
      restart: async () => {
        // SHUTDOWN SAVE writes dump.rdb even with saving off; the new process loads it from the same dir.
        const exited = new Promise<void>((done) => child.once('exit', () => done()));
        await client.sendCommand(['SHUTDOWN', 'SAVE']).catch(() => undefined);
        client.destroy();
        await exited;
        child = spawnRedis(port, dir, extraArgs);
        const again = await waitForReady(child);
        if (!again.ok) throw new Error(`redis-server did not restart: ${again.output}`);
        client = makeClient(port);
        client.on('error', () => undefined);
        await client.connect();
      },
      stop: async () => {
        await client.close().catch(() => client.destroy());
        await stopProcess(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}

/** A reply with its Buffers as text, for assertions. */
export function decode(reply: unknown): unknown {
  if (Buffer.isBuffer(reply)) return reply.toString();
  if (Array.isArray(reply)) return reply.map(decode);
  return reply;
}

/** Resolves once a redis-server child says it accepts connections, or with its output once it exits or cannot start. */
export function waitForReady(child: ChildProcess): Promise<{ ok: boolean; output: string }> {
  return new Promise((done) => {
    let output = '';
    const onData = (data: Buffer): void => {
      output += data.toString();
      if (output.includes('Ready to accept connections')) done({ ok: true, output });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', () => done({ ok: false, output }));
    // A missing binary emits 'error' and never 'exit': fail at once instead of hanging the suite.
    child.on('error', (err) => done({ ok: false, output: `${output}${err.message} (is redis-server installed and on PATH?)` }));
  });
}

export function stopProcess(child: ChildProcess): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once('exit', () => done());
    child.kill('SIGKILL');
  });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Only the given settings (plus PATH and HOME), as strings. */
function migratorEnv(env: Record<string, string | number>): Record<string, string> {
  const childEnv: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
  for (const [name, value] of Object.entries(env)) childEnv[name] = String(value);
  return childEnv;
}

/** Runs the real script with tsx in `cwd` to its end; after `timeoutMs` it is killed and the code is -1. */
export async function runMigrator(
  env: Record<string, string | number>,
  cwd: string,
  timeoutMs = 60_000,
  args: string[] = [],
): Promise<RunResult> {
  const run = spawnMigrator(env, cwd, args);
  const result = await endedWithin(run, timeoutMs);
  if (result) return result;
  run.signalAll('SIGKILL');
  const killed = await run.done;
  return { ...killed, code: -1 };
}

export interface RunningMigrator {
  /** The launcher's pid (tsx's cli); the run's processes share its process group. */
  pid: number;
  /** Resolves when the run has ended and its output is all in, with its exit code (128 + n for signal n) and output. */
  done: Promise<RunResult>;
  /** Everything printed on stdout so far. */
  stdout(): string;
  /** Everything printed on stderr so far. */
  stderr(): string;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves once stdout contains `text`; rejects after `timeoutMs`, or when the run ends without it. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  /** Signals every process of the run at once, as a terminal's Ctrl-C or a `kill -9` of the tool would. */
  signalAll(signal: NodeJS.Signals): void;
  /** Signals the script's own process alone (see signalScript): a stop whose outcome does not hang on tsx. */
  signalScript(signal: NodeJS.Signals): void;
}

/**
 * The process running the script under tsx's cli (`launcherPid`): the cli starts it as its only node child.
 * Throws when there is none (the script not started yet, or ended).
 */
function scriptPidOf(launcherPid: number): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== launcherPid) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(SCRIPT)) return Number(entry);
    } catch {
      // Ended meanwhile.
    }
  }
  throw new Error(`no process runs ${SCRIPT} under tsx (pid ${launcherPid})`);
}

/**
 * Sends SIGINT or SIGTERM to the script's own process, as `kill <its pid>` would, for tests of what the script
 * does on a stop. Not to tsx's cli: tsx passes such a signal on, and SIGKILLs its child unless the child reports
 * the signal back within 30 ms (relaySignalToChild in tsx's dist/cli.mjs); on a busy machine it may not, and
 * the run then ends with no summary. (test/signals.test.ts covers signals that reach the launchers.)
 */
function signalScript(launcherPid: number, signal: NodeJS.Signals): void {
  process.kill(scriptPidOf(launcherPid), signal);
}

/** Process groups of runs not yet ended: a test that fails midway must not leave its run behind, working on. */
const runningGroups = new Set<number>();
process.once('exit', () => {
  for (const group of runningGroups) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

/**
 * Starts the real script with tsx in `cwd`, as a user would, in its own process group, with only the given
 * settings (plus PATH and HOME). The one way the tests run the migrator (runMigrator waits for its end).
 */
export function spawnMigrator(env: Record<string, string | number>, cwd: string, args: string[] = []): RunningMigrator {
  const child = spawn(TSX, [SCRIPT, ...args], { cwd, env: migratorEnv(env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const watcher of [...watchers]) watcher();
  });
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  if (child.pid !== undefined) runningGroups.add(child.pid);
  // 'close', not 'exit': the output is all read by then.
  const done = new Promise<RunResult>((resolveRun) => {
    child.on('close', (code, signal) => {
      if (child.pid !== undefined) runningGroups.delete(child.pid);
      resolveRun({ code: code ?? 128 + (signal ? constants.signals[signal] : 0), stdout, stderr });
    });
  });
  const waitFor = (text: string, timeoutMs = 15_000): Promise<void> =>
    new Promise<void>((resolveWait, reject) => {
      if (stdout.includes(text)) return resolveWait();
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        watchers.delete(watcher);
        if (err) reject(err);
        else resolveWait();
      };
      const timer = setTimeout(() => finish(new Error(`timed out waiting for ${JSON.stringify(text)}; stdout: ${stdout}; stderr: ${stderr}`)), timeoutMs);
      const watcher = (): void => {
        if (stdout.includes(text)) finish();
      };
      watchers.add(watcher);
      void done.then(() => {
        if (!stdout.includes(text)) finish(new Error(`process ended before printing ${JSON.stringify(text)}; stdout: ${stdout}; stderr: ${stderr}`));
      });
    });
  return {
    pid: child.pid ?? 0,
    done,
    stdout: () => stdout,
    stderr: () => stderr,
    output: () => `${stdout}\n${stderr}`,
    waitFor,
    signalAll: (signal) => {
      try {
        process.kill(-(child.pid ?? 0), signal);
      } catch {
        // Already gone.
      }
    },
    signalScript: (signal) => {
      try {
        signalScript(child.pid ?? 0, signal);
      } catch {
        // Already gone (or, called too early, not started: the run then goes on and the test times out).
      }
    },
  };
}

/** The run's result if it ends within `ms`, else undefined: for runs that must stop by themselves. */
export async function endedWithin(run: RunningMigrator, ms: number): Promise<RunResult | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([run.done, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `condition` every `everyMs` until it is true; fails after `timeoutMs`, naming `what`. */
export async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Settings that point the migrator at two test servers, at full speed. */
export function endpoints(source: RedisServer, target: RedisServer): Record<string, string | number> {
  return {
    SOURCE_REDIS_HOST: '127.0.0.1',
    SOURCE_REDIS_PORT: source.port,
    DESTINATION_REDIS_HOST: '127.0.0.1',
    DESTINATION_REDIS_PORT: target.port,
    SLEEP_TIME: 0,
  };
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'rkm-run-'));
}
