// Where the migrator runs and how it stops: in a child Node process with a small fixed heap (Node reads
// heap limits only at start, and V8's defaults let a busy copy grow ~50 MB of garbage), and Ctrl-C handling.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

/** Measured: peak RSS ~105 MB instead of ~155 MB for the same copy, at the same speed. */
const HEAP_FLAGS = ['--max-old-space-size=128', '--max-semi-space-size=2'];
const CHILD_MARK = 'REDIS_KEYS_MIGRATOR_SIZED_HEAP';

const exitStatusOf = (signal: NodeJS.Signals): number => 128 + constants.signals[signal];

/**
 * Runs this script again with HEAP_FLAGS and exits with its status, unless this process is that run.
 * Returns only in the child. Signals sent to this process are passed on.
 */
export async function runWithSizedHeap(): Promise<void> {
  if (process.env[CHILD_MARK] === '1') return;
  const child = spawn(process.execPath, [...process.execArgv, ...HEAP_FLAGS, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, [CHILD_MARK]: '1' },
  });
  const relay = (signal: NodeJS.Signals): void => void child.kill(signal);
  process.on('SIGINT', relay).on('SIGTERM', relay);
  const status = await new Promise<number>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? (signal ? exitStatusOf(signal) : 1)));
    child.on('error', () => resolve(1));
  });
  process.exit(status);
}

/** Ctrl-C for the whole run: whatever stage is running (loading, copying, verifying) asks `requested`. */
export class Interruption {
  requested = false;
  private readonly listeners: (() => void)[] = [];

  constructor() {
    onInterrupt(() => {
      this.requested = true;
      for (const listener of this.listeners) listener();
    });
  }

  /** Also call `listener` on Ctrl-C, for work that must be told rather than asked. */
  onRequest(listener: () => void): void {
    this.listeners.push(listener);
  }
}

/**
 * The first SIGINT or SIGTERM calls `stop` (finish the work in flight, then report). A repeat within a
 * second is the same Ctrl-C arriving twice (from the terminal and relayed by the parent); a later one
 * exits at once.
 */
function onInterrupt(stop: () => void): void {
  let first = 0;
  const handle = (signal: NodeJS.Signals): void => {
    if (first === 0) {
      first = Date.now();
      stop();
    } else if (Date.now() - first > 1000) {
      process.exit(exitStatusOf(signal));
    }
  };
  process.on('SIGINT', handle).on('SIGTERM', handle);
}

/**
 * Output whose reader went away (`| head`, a closed terminal) is dropped, not a crash: the migration matters
 * more than its lines, and the error log and SUMMARY_JSON_FILE still record the outcome.
 */
export function outliveClosedOutput(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
}
