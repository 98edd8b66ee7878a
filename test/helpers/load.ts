// Runs test/helpers/load-writer.ts as a child process for tests and the bench: start it, watch its progress,
// stop it with SIGTERM and get its totals (the one JSON line it prints on exit).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './servers.js';
import type { DEFAULTS, MixCommand, WriterStats } from './load-writer.js';

export const LOAD_WRITER = join(ROOT, 'test', 'helpers', 'load-writer.ts');

export type LoadStats = WriterStats;

/** The writer's settings (see DEFAULTS in load-writer.ts); the mix as weights by command. */
export type LoadOptions = Partial<Omit<typeof DEFAULTS, 'mix' | 'watchStdin' | 'progressMs'>> & {
  port: number;
  /** Weights for some commands; the others keep their defaults. */
  mix?: Partial<Record<MixCommand, number>>;
  /** How often `stats` is refreshed while running; 250 ms by default. */
  progressMs?: number;
};

export interface RunningLoad {
  pid: number;
  /** Resolves once the writer is connected and writing; rejects if it exits first. */
  ready: Promise<void>;
  /** Resolves with the totals when the writer exits (at its duration or count, or after stop()); rejects without them. */
  done: Promise<LoadStats>;
  /** The latest totals: from the progress lines while running, the final line after exit; undefined before the first. */
  readonly stats: LoadStats | undefined;
  /** SIGTERM, then the totals once the replies in flight are in. */
  stop(): Promise<LoadStats>;
  /** The writer's stderr so far (its error and reconnect lines). */
  output(): string;
}

export function loadArgs(options: LoadOptions): string[] {
  const { mix, ...rest } = options;
  const args = Object.entries({ progressMs: 250, ...rest }).map(([name, value]) => `${name}=${String(value)}`);
  if (mix) args.push(`mix=${Object.entries(mix).map(([name, weight]) => `${name}:${String(weight)}`).join(',')}`);
  return [...args, 'watchStdin=true'];
}

/** Spawns the writer in one node process (`node --import tsx`, no tsx launcher in between, so SIGTERM reaches it). */
export function startLoad(options: LoadOptions): RunningLoad {
  const child = spawn(process.execPath, ['--import', 'tsx', LOAD_WRITER, ...loadArgs(options)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    // stdin is a pipe the writer watches: if this process dies, the writer stops too.
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let latest: LoadStats | undefined;
  let markReady: () => void = () => undefined;
  let failReady: (err: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failReady = reject;
  });
  ready.catch(() => undefined); // done reports the same failure
  let partial = '';
  child.stderr.on('data', (data: Buffer) => {
    stderr += data.toString();
    partial += data.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('load-writer: writing to')) markReady();
      else if (line.startsWith('progress ')) latest = JSON.parse(line.slice('progress '.length)) as LoadStats;
    }
  });
  child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
  const done = new Promise<LoadStats>((resolve, reject) => {
    child.on('close', (code, signal) => { // after stdout has ended, so the last line is in
      const line = stdout.trim().split('\n').pop() ?? '';
      let final: LoadStats | undefined;
      try {
        final = JSON.parse(line) as LoadStats;
      } catch {
        // No totals: reported below.
      }
      const failure = new Error(`load writer exited (code ${code}, signal ${signal}) ${final ? 'with' : 'without'} totals:\n${stdout}\n${stderr}`);
      failReady(failure);
      if (final && code === 0) {
        latest = final;
        resolve(final);
      } else reject(failure);
    });
  });
  return {
    pid: child.pid ?? 0,
    ready,
    done,
    get stats() {
      return latest;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return done;
    },
    output: () => stderr,
  };
}
