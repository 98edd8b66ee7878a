// The benchmark rows: four copies of the seeded source into an emptied target (the tool by DUMP, the tool by
// type, the source's own MIGRATE COPY, a full replication sync) and the tool's compare mode checking a copy.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { ClientFloor } from './bench-floor.js';
import type { ScriptCalls } from './bench-scripts.js';
import { ROOT, SCRIPT, tempDir, type RedisServer } from '../test/helpers/servers.js';

export type RowId = 'replica' | 'dump' | 'checkpoint' | 'compare' | 'type' | 'migrate' | 'replicaof' | 'cluster' | 'cluster-workers' | 'rdb-native' | 'rdb-server' | 'rdb-load';
/** The rows that run the tool itself, under /usr/bin/time. */
export type ToolRowId = 'replica' | 'dump' | 'checkpoint' | 'compare' | 'type' | 'cluster' | 'cluster-workers' | 'rdb-native' | 'rdb-server';

export const ROW_LABELS: Record<RowId, string> = {
  replica: 'this tool (default: read as a replica)',
  dump: 'this tool (dump, SOURCE_READER=scan)',
  checkpoint: 'this tool (dump, CHECKPOINT_FILE set)',
  compare: 'this tool (MIGRATION_MODE=compare)',
  type: 'this tool (COPY_METHOD=type)',
  migrate: 'MIGRATE COPY (server-side)',
  replicaof: 'REPLICAOF full sync (physical limit)',
  cluster: 'this tool (dump), cluster to cluster',
  'cluster-workers': 'the same, WORKERS=2 (two processes)',
  'rdb-native': 'this tool from an .rdb file (RDB_READER=native)',
  'rdb-server': 'this tool from an .rdb file (RDB_READER=server)',
  'rdb-load': 'redis-server loading the .rdb file (limit)',
};

export interface RowResult {
  id: RowId;
  keys: number;
  /** Undefined when the row failed before it could be timed. */
  wallSeconds?: number;
  /** Tool rows only: user + sys CPU of tsx and the node process it starts. */
  cpuSeconds?: number;
  peakRssMb?: number;
  /** CPU the two redis-servers spent during the row (main thread plus reaped fork children). */
  sourceCpuSeconds?: number;
  targetCpuSeconds?: number;
  /** Tool rows only: the tool's EVAL calls as each redis-server timed them. */
  scripts?: { source: ScriptCalls; target: ScriptCalls };
  /** The machine's 1-minute load average when the row ended: how much else was competing for the 2 cores. */
  loadAfter?: number;
  digestMatches?: boolean;
  /** Empty when all went well; otherwise what went wrong, for the report. */
  problems: string[];
}

const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
/** A tool run taking longer than this is stuck, not slow. */
const TOOL_TIMEOUT_MS = 30 * 60_000;
const POLL_MS = 10;

/** Child process groups still running, so an interrupted benchmark can kill them. */
const runningGroups = new Set<number>();

export function killRunningTools(): void {
  for (const pid of runningGroups) killGroup(pid);
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

interface TimedRun {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs a command in its own process group (so it can be killed whole), collecting its output; with `until`,
 * the group is ended as soon as its output shows that text (a server that is ready).
 */
function runTimed(command: string, args: string[], env: Record<string, string>, cwd: string, until?: string): Promise<TimedRun> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = child.pid;
    if (pid === undefined) return fail(new Error(`could not start ${command}`));
    runningGroups.add(pid);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (until !== undefined && stdout.toLowerCase().includes(until.toLowerCase())) killGroup(pid);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(pid);
    }, TOOL_TIMEOUT_MS);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      runningGroups.delete(pid);
      done({ code, stdout, stderr, timedOut });
    });
  });
}

/** /usr/bin/time -f '%e %U %S %M' prints its figures as the last line of stderr. */
export function parseTimeLine(stderr: string): { wall: number; cpu: number; rssMb: number } | undefined {
  const last = stderr.trimEnd().split('\n').at(-1) ?? '';
  const match = /^([\d.]+) ([\d.]+) ([\d.]+) (\d+)$/.exec(last.trim());
  if (!match) return undefined;
  const [, wall, user, sys, rssKb] = match.map(Number);
  if (wall === undefined || user === undefined || sys === undefined || rssKb === undefined) return undefined;
  return { wall, cpu: user + sys, rssMb: rssKb / 1024 };
}

/** Tool rows between two standalone servers, whose script calls each server's stats can time. */
export const isToolRow = (id: RowId): id is 'dump' | 'checkpoint' | 'compare' | 'type' => id === 'dump' || id === 'checkpoint' || id === 'compare' || id === 'type';

/** Settings that point one side of the tool at a server (or, with CLUSTER, at a cluster through that node). */
export function sideSettings(prefix: 'SOURCE' | 'DESTINATION', server: RedisServer, cluster = false): Record<string, string> {
  return { [`${prefix}_REDIS_HOST`]: '127.0.0.1', [`${prefix}_REDIS_PORT`]: String(server.port), [`${prefix}_REDIS_CLUSTER`]: String(cluster) };
}

/** Rows (a), (a′) and (b): the real script under /usr/bin/time, at full speed, otherwise default settings. */
export async function measureTool(id: ToolRowId, source: RedisServer, target: RedisServer, keys: number): Promise<RowResult> {
  return runToolTimed(id, { ...sideSettings('SOURCE', source), ...sideSettings('DESTINATION', target) }, keys);
}

/** Row (e): the same command as (a), between two clusters, each reached through its first node. */
export async function measureClusterTool(source: RedisServer, target: RedisServer, keys: number, id: 'cluster' | 'cluster-workers' = 'cluster'): Promise<RowResult> {
  return runToolTimed(id, { ...sideSettings('SOURCE', source, true), ...sideSettings('DESTINATION', target, true) }, keys);
}

/** Rows (f) and (f′): the same file into the emptied target, read by our reader or by a private redis-server. */
export async function measureRdbTool(id: 'rdb-native' | 'rdb-server', file: string, target: RedisServer, keys: number): Promise<RowResult> {
  return runToolTimed(id, { SOURCE_RDB_FILE: file, ...sideSettings('DESTINATION', target) }, keys);
}

/** Row (g): a redis-server of its own loading the same file, timed from start until it accepts connections. */
export async function measureRdbLoad(file: string, keys: number): Promise<RowResult> {
  const dir = tempDir();
  const result: RowResult = { id: 'rdb-load', keys, problems: [] };
  try {
    const started = performance.now();
    const args = ['--port', '0', '--unixsocket', join(dir, 'load.sock'), '--dir', dirname(file), '--dbfilename', basename(file), '--save', '', '--appendonly', 'no'];
    // A server on a unix socket alone says "ready to accept connections at <path>", one on TCP "Ready to accept connections".
    const run = await runTimed('redis-server', args, { PATH: process.env.PATH ?? '' }, dir, 'ready to accept connections');
    result.wallSeconds = (performance.now() - started) / 1000;
    if (!run.stdout.includes('DB loaded from disk')) result.problems.push(`redis-server did not load the file: ${lastLines(run.stdout + run.stderr, 3)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

/**
 * For scale beside (f): the least a Node.js client spends here per key on that file (tools/bench-floor.ts, a process
 * of its own, into the emptied target). Undefined, said, when it did not run.
 */
export async function measureClientFloor(file: string, target: RedisServer): Promise<ClientFloor | undefined> {
  const cwd = tempDir();
  try {
    const run = await runTimed(TSX, [join(ROOT, 'tools', 'bench-floor.ts'), file, String(target.port)], { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' }, cwd);
    const line = run.stdout.trim().split('\n').at(-1) ?? '';
    if (run.code === 0 && line.startsWith('{')) return JSON.parse(line) as ClientFloor;
    process.stderr.write(`the client floor did not run (exit ${run.code}): ${lastLines(run.stdout + run.stderr, 3)}\n`);
    return undefined;
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

/** The tool copying an empty database into another of the same server: its wall time and RSS before any key. */
export async function measureToolFloor(emptyServer: RedisServer): Promise<RowResult> {
  // Not onto itself: the same server and database on both sides is refused at connect.
  return runToolTimed('dump', { ...sideSettings('SOURCE', emptyServer), ...sideSettings('DESTINATION', emptyServer), DESTINATION_REDIS_DB_INDEX: '1' }, 0);
}

/** The settings that make each tool row what it is; (a) is the tool as shipped. */
function modeSettings(id: ToolRowId, cwd: string): Record<string, string> {
  // (a) and (e) read key by key, as from ElastiCache; (r), the default, reads a self-hosted source as its replica.
  if (id === 'dump' || id === 'cluster') return { SOURCE_READER: 'scan' };
  if (id === 'cluster-workers') return { SOURCE_READER: 'scan', WORKERS: '2' };
  if (id === 'type') return { COPY_METHOD: 'type' };
  if (id === 'checkpoint') return { CHECKPOINT_FILE: join(cwd, 'bench.checkpoint') };
  if (id === 'rdb-native') return { RDB_READER: 'native' };
  if (id === 'rdb-server') return { RDB_READER: 'server' };
  if (id === 'compare') return { MIGRATION_MODE: 'compare' };
  return {};
}

/** What the tool must print for `keys` keys: every key restored, or, for a check, every key identical. */
function outputProblem(id: ToolRowId, stdout: string, keys: number): string | undefined {
  if (id === 'compare') {
    const expected = `0 missing, 0 type, 0 value, 0 ttl (${keys} keys checked, ${keys} identical)`;
    if (stdout.includes(`${expected}\n`)) return undefined;
    const got = /^\d+ missing, .*$/m.exec(stdout)?.[0] ?? 'no verification line';
    return `compare printed: ${got}; expected ${expected}`;
  }
  if (stdout.includes(`Number of restored keys: ${keys}\n`)) return undefined;
  const restored = /Number of restored keys: (\d+)/.exec(stdout)?.[1] ?? 'none reported';
  return `restored keys: ${restored}, expected ${keys}`;
}

/** The real script under /usr/bin/time with these endpoint settings, at full speed; checked against what `id` must print. */
export async function runToolTimed(id: ToolRowId, endpoints: Record<string, string>, keys: number): Promise<RowResult> {
  const cwd = tempDir();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    ...endpoints,
    SLEEP_TIME: '0',
    ERROR_LOG_FILENAME: join(cwd, 'errors.log'),
    ...modeSettings(id, cwd),
  };
  try {
    const run = await runTimed('/usr/bin/time', ['-f', '%e %U %S %M', TSX, SCRIPT], env, cwd);
    const result: RowResult = { id, keys, problems: [] };
    const timing = parseTimeLine(run.stderr);
    if (timing) Object.assign(result, { wallSeconds: timing.wall, cpuSeconds: timing.cpu, peakRssMb: timing.rssMb });
    else result.problems.push('no /usr/bin/time line in stderr');
    if (run.timedOut) result.problems.push(`killed after ${TOOL_TIMEOUT_MS / 60_000} min`);
    if (run.code !== 0) result.problems.push(`exit code ${run.code}: ${lastLines(run.stdout + run.stderr, 4)}`);
    const wrongOutput = outputProblem(id, run.stdout, keys);
    if (wrongOutput) result.problems.push(wrongOutput);
    return result;
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join(' | ');
}

/** Row (c): the source pushes each SCAN batch of 1,000 keys with one MIGRATE ... COPY KEYS; timed whole. */
export async function measureMigrate(source: RedisServer, target: RedisServer, keys: number): Promise<RowResult> {
  const result: RowResult = { id: 'migrate', keys, problems: [] };
  const started = performance.now();
  let cursor = '0';
  let batch: Buffer[] = [];
  const flush = async (): Promise<void> => {
    const reply = await source.client.sendCommand(['MIGRATE', '127.0.0.1', String(target.port), '', '0', '5000', 'COPY', 'KEYS', ...batch]);
    const text = Buffer.isBuffer(reply) ? reply.toString() : String(reply);
    // One note per distinct reply, not one per batch.
    const note = `MIGRATE replied ${text}`;
    if (text !== 'OK' && !result.problems.includes(note)) result.problems.push(note);
    batch = [];
  };
  do {
    const reply = (await source.client.sendCommand(['SCAN', cursor, 'COUNT', '1000'])) as [Buffer, Buffer[]];
    cursor = reply[0].toString();
    for (const key of reply[1]) {
      batch.push(key);
      if (batch.length === 1000) await flush();
    }
  } while (cursor !== '0');
  if (batch.length > 0) await flush();
  result.wallSeconds = (performance.now() - started) / 1000;
  return result;
}

function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

export async function info(server: RedisServer, section: string): Promise<string> {
  return String(await server.cmd('INFO', section));
}

export async function infoValue(server: RedisServer, section: string, field: string): Promise<string> {
  const value = infoField(await info(server, section), field);
  if (value === undefined) throw new Error(`INFO ${section} has no ${field}`);
  return value;
}

/**
 * CPU seconds a redis-server has used so far, its fork children (RDB for a sync) included: a child still running
 * or not yet reaped (a sync just ended) is waited for, up to a minute, so a row is charged for its own fork.
 */
export async function serverCpuSeconds(server: RedisServer): Promise<number> {
  for (const started = Date.now(); Date.now() - started < 60_000; ) {
    if (infoField(await info(server, 'persistence'), 'rdb_bgsave_in_progress') === '0') break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const cpu = await info(server, 'cpu');
  const fields = ['used_cpu_user', 'used_cpu_sys', 'used_cpu_user_children', 'used_cpu_sys_children'];
  return fields.reduce((sum, field) => sum + Number(infoField(cpu, field) ?? 0), 0);
}

/** Row (d): the target becomes a replica; timed from REPLICAOF until the diskless full sync is loaded. */
export async function measureReplication(source: RedisServer, target: RedisServer, keys: number): Promise<RowResult> {
  const result: RowResult = { id: 'replicaof', keys, problems: [] };
  const restoreSource = await setConfig(source, { 'repl-diskless-sync': 'yes', 'repl-diskless-sync-delay': '0' });
  const restoreTarget = await setConfig(target, { 'repl-diskless-load': 'swapdb' });
  try {
    const started = performance.now();
    await target.cmd('REPLICAOF', '127.0.0.1', source.port);
    for (;;) {
      const replication = await info(target, 'replication');
      if (infoField(replication, 'master_link_status') === 'up' && infoField(replication, 'master_sync_in_progress') === '0') break;
      if (performance.now() - started > TOOL_TIMEOUT_MS) throw new Error('replication never came up');
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    result.wallSeconds = (performance.now() - started) / 1000;
  } finally {
    await target.cmd('REPLICAOF', 'NO', 'ONE');
    await restoreTarget();
    await restoreSource();
  }
  return result;
}

/** Sets config values; returns a function that puts the previous ones back. */
async function setConfig(server: RedisServer, values: Record<string, string>): Promise<() => Promise<void>> {
  const previous: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) {
    const [, old] = (await server.cmd('CONFIG', 'GET', name)) as string[];
    if (old === undefined) throw new Error(`CONFIG GET ${name} returned nothing`);
    previous[name] = old;
    await server.cmd('CONFIG', 'SET', name, value);
  }
  return async () => {
    for (const [name, old] of Object.entries(previous)) await server.cmd('CONFIG', 'SET', name, old);
  };
}

/** Every config value, to check that each row starts from the same target. */
export async function configSnapshot(server: RedisServer): Promise<Map<string, string>> {
  const flat = (await server.cmd('CONFIG', 'GET', '*')) as string[];
  const config = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) config.set(flat[i] ?? '', flat[i + 1] ?? '');
  return config;
}

/** Empties the target and puts back any config a previous row changed; returns what it had to fix. */
export async function resetTarget(target: RedisServer, baseline: Map<string, string>): Promise<string[]> {
  const fixed: string[] = [];
  await target.cmd('FLUSHALL', 'SYNC');
  const now = await configSnapshot(target);
  for (const [name, value] of baseline) {
    if (now.get(name) === value) continue;
    await target.cmd('CONFIG', 'SET', name, value);
    fixed.push(`${name}: ${JSON.stringify(now.get(name))} -> ${JSON.stringify(value)}`);
  }
  const size = Number(await target.cmd('DBSIZE'));
  if (size !== 0) throw new Error(`target still has ${size} keys after FLUSHALL`);
  return fixed;
}

/** DEBUG DIGEST of db 0: equal digests mean the same keys, types, values and expiry presence. */
export async function digest(server: RedisServer): Promise<string> {
  return String(await server.cmd('DEBUG', 'DIGEST'));
}
