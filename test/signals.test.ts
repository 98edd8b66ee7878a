// A stop sent to the launcher alone, as `kill PID`, `timeout`, systemd and container runtimes send it: the real
// `npx tsx redis-keys-migrator.ts` against real servers, and a signal to the npx process only (not its group).
// npm passes SIGINT and SIGTERM to its `sh -c` alone; the run must still stop as Ctrl-C stops it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseSummary } from './helpers/inspect.js';
import { endpoints, ROOT, SCRIPT, startRedis, type RedisServer } from './helpers/servers.js';

const TOTAL = 200_000;
/** About 7,000 keys/s here: the whole copy would take ~30 s, so a stop after a second or two is early. */
const PACED = { SLEEP_TIME: 0.01, PIPELINE_BATCH_SIZE: 100 };

interface Proc {
  pid: number;
  started: string;
  argv: string;
}

interface NpxRun {
  npx: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let source: RedisServer;
let target: RedisServer;
const dirs: string[] = [];

beforeAll(async () => {
  [source, target] = await Promise.all([startRedis(), startRedis()]);
  await source.cmd('EVAL', "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'key:' .. i, i) end return 1", 0, TOTAL);
  expect(Number(await source.cmd('DBSIZE'))).toBe(TOTAL);
});
afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  await target.cmd('FLUSHALL');
});

describe('a signal sent to the npx process alone', () => {
  const cases = [
    { signal: 'SIGTERM', extra: {} },
    { signal: 'SIGINT', extra: {} },
    // The run that starts the workers hears of the stop as a single run does, and passes it on to each.
    { signal: 'SIGTERM', extra: { WORKERS: 2 } },
  ] as const;
  for (const { signal, extra } of cases) {
    it(`${signal}${'WORKERS' in extra ? ' with WORKERS=2' : ''}: the run drains, prints its summary and ends; the target stops growing`, async () => {
      const run = startNpx(extra);
      let processes: Proc[] = [];
      try {
        await until('the copy to start', async () => Number(await target.cmd('DBSIZE')) > 0, 25_000, run);
        processes = descendants(run.npx.pid ?? 0);
        // Below npm: its `sh -c`, tsx's cli, the script (and esbuild): the chain is really there.
        expect(processes.some((p) => p.argv.startsWith('sh -c')), listing(processes)).toBe(true);
        expect(processes.length, listing(processes)).toBeGreaterThanOrEqual(3);

        process.kill(run.npx.pid ?? 0, signal);
        const signalled = Date.now();
        await until('every process of the run to end', () => processes.every(gone), 5_000, run, processes);
        const stoppedAfter = Date.now() - signalled;

        // No connection of the run left on the target (only this test's own client): nothing can write to it any more.
        await until('the run\'s connections to the target to close', async () => (await otherClients(target)).length === 0, 5_000, run, processes);
        const first = Number(await target.cmd('DBSIZE'));
        expect(first).toBeLessThan(TOTAL);

        // As Ctrl-C: the batches in flight finished, the summary printed and true to the target.
        const out = run.output();
        expect(out, `stopped after ${stoppedAfter} ms`).toContain('Interrupted: the batches in flight were finished');
        expect(parseSummary(out)).toMatchObject({ restored: first, failed: 0 });
        expect(out).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      } finally {
        for (const p of processes) if (!gone(p)) process.kill(p.pid, 'SIGKILL');
        run.npx.kill('SIGKILL');
      }
    });
  }
});

/** The clients connected to `server` other than the test's own, as CLIENT LIST lines. */
async function otherClients(server: RedisServer): Promise<string[]> {
  const own = Number(await server.cmd('CLIENT', 'ID'));
  return String(await server.cmd('CLIENT', 'LIST')).split('\n').filter((line) => /^id=\d+ /.test(line) && !line.startsWith(`id=${own} `));
}

/** `npx tsx redis-keys-migrator.ts` in a fresh directory that, like the project's, has node_modules. */
function startNpx(extra: Record<string, string | number> = {}): NpxRun {
  const cwd = mkdtempSync(join(tmpdir(), 'rkm-signals-'));
  dirs.push(cwd);
  symlinkSync(join(ROOT, 'node_modules'), join(cwd, 'node_modules'));
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', npm_config_update_notifier: 'false' };
  for (const [name, value] of Object.entries({ ...endpoints(source, target), ...PACED, ...extra })) env[name] = String(value);
  const npx = spawn('npx', ['tsx', SCRIPT], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  npx.stdout?.on('data', (data: Buffer) => void (output += data.toString()));
  npx.stderr?.on('data', (data: Buffer) => void (output += data.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
    npx.once('exit', (code, signal) => done({ code, signal }));
  });
  return { npx, output: () => output, exited };
}

/** Every process below `root` now, from the ppid links in /proc. */
function descendants(root: number): Proc[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(Number(entry));
    if (!stat) continue;
    children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), Number(entry)]);
  }
  const found: Proc[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    for (const child of children.get(pid) ?? []) {
      const stat = procStat(child);
      if (!stat) continue;
      let argv = '';
      try {
        argv = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').join(' ').trim();
      } catch {
        // Ended meanwhile.
      }
      found.push({ pid: child, started: stat.started, argv });
      queue.push(child);
    }
  }
  return found;
}

function procStat(pid: number): { ppid: number; state: string; started: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', ppid: Number(fields[1]), started: fields[19] ?? '' };
  } catch {
    return undefined;
  }
}

/** Ended: no such process, a zombie (orphans here may wait long to be reaped), or the pid reused. */
function gone(proc: Proc): boolean {
  const stat = procStat(proc.pid);
  return !stat || /^[ZX]/.test(stat.state) || stat.started !== proc.started;
}

function listing(processes: Proc[]): string {
  return processes.map((p) => `${p.pid}${gone(p) ? ' (gone)' : ''}: ${p.argv.slice(0, 150)}`).join('\n');
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, run: NpxRun, processes: Proc[] = []): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; processes of the run:\n${listing(processes)}\n--- output\n${run.output().slice(-2_000)}`);
    }
    await sleep(100);
  }
}
