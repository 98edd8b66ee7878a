// How the migrator's process is sized and how it stops: V8's old generation grown in smaller steps (set at start,
// before the modules run), and Ctrl-C handling, also for a stop that reaches only the launcher (`npx`, `npm start`,
// `tsx`), as `kill PID`, systemd and container runtimes send it.
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';

/**
 * V8 grows the old generation by up to 4x per collection, so a busy copy keeps tens of MB of garbage; read at
 * each collection, this flag grows it by 20% instead. Measured on the 1,000,000-key bench file, 4 interleaved runs:
 * peak RSS 140-148 MB against 156-161 (and up to 205 in other runs) with V8's defaults, at the same CPU (3.9 s
 * median both). Its companion `--semi-space-growth-factor=1` is set for server sources only (holdYoungGeneration).
 */
const HEAP_FLAGS = ['--heap-growing-percent=20'];

/** Signals closer together than this are one request: Ctrl-C reaches several processes of the run. */
const SAME_SIGNAL_MS = 1000;

const exitStatusOf = (signal: NodeJS.Signals): number => 128 + constants.signals[signal];

/** Grows the old generation in small steps for the rest of the run; called first, while little is allocated. */
export function sizeHeap(): void {
  for (const flag of HEAP_FLAGS) v8.setFlagsFromString(flag);
}

/**
 * Holds the young generation at its size now (~8 MB once the modules are loaded; the flag is read at each
 * scavenge). Where the copy waits on servers it is free: 1,000,000 keys between servers peaked at 117-123 MB
 * against 145-148 without it, at no more CPU (3 interleaved runs each). The native .rdb reader is CPU-bound:
 * there the many more scavenges cost 40% more CPU (5.7 s against 3.9 s, medians of 4) for no smaller peak.
 */
export function holdYoungGeneration(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/** Ctrl-C for the whole run: whatever stage is running (loading, copying, verifying) asks `requested`. */
export class Interruption {
  requested = false;
  private readonly listeners: (() => void)[] = [];

  /** `subscribe`: how the first Ctrl-C reaches it (the process's signals; a test's own call). */
  constructor(subscribe: (stop: () => void) => void = onInterrupt) {
    subscribe(() => {
      this.requested = true;
      for (const listener of this.listeners) listener();
    });
  }

  /** Also call `listener` on Ctrl-C, for work that must be told rather than asked: at once if Ctrl-C came already. */
  onRequest(listener: () => void): void {
    this.listeners.push(listener);
    // A signal during the connection or the snapshot's fork comes before the copy is there to be told.
    if (this.requested) listener();
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
    } else if (Date.now() - first > SAME_SIGNAL_MS) {
      process.exit(exitStatusOf(signal));
    }
  };
  process.on('SIGINT', handle).on('SIGTERM', handle);
  watchLaunchers({
    // Once the run is stopping its launcher may well exit (npm does on SIGTERM): that is no second request.
    gone: () => {
      if (first === 0) handle('SIGTERM');
    },
    // A launcher's shell woken by Ctrl-C, which reached this process too: within a second, the same request.
    signalled: () => handle('SIGINT'),
  });
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

// ---- The launchers: npm, npx and tsx above this process ----
//
// `npx tsx redis-keys-migrator.ts` runs npm (titled "npm exec tsx …"), which runs `sh -c 'tsx' …`, which runs
// tsx's cli, which runs this process. `kill PID`, `timeout`, systemd and container runtimes signal the first
// process alone. npm passes SIGINT and SIGTERM to its `sh` only, and there they stop: dash dies of SIGTERM
// (npm then exits 143 and the rest of the run is orphaned), and it holds SIGINT until its child exits (so
// nothing of ours is told). What this process can see instead: a launcher gone, and the `sh` woken. That
// shell sleeps in wait4 and catches only SIGINT and SIGCHLD, and SIGCHLD comes only from tsx stopping,
// continuing or ending; so a context switch of the shell while tsx runs is a signal it caught.
// (A stop signal sent to an orphaned process group wakes it too, and is then dropped; nothing sends those.)
// Where /bin/sh is bash, `sh -c 'tsx' …` execs tsx, and npm's signals reach tsx, which passes them on.

const POLL_MS = 500;
const PACKAGE_LAUNCHER = /^(npm|npx|tsx|npm-cli\.js|npx-cli\.js)$/;
const TSX_CLI = /[\\/]tsx[\\/]dist[\\/]cli\.[cm]?js$/;
const SHELL = /^(sh|dash|bash|ash|ksh|zsh)$/;

interface Proc {
  pid: number;
  ppid: number;
  /** /proc/<pid>/stat state: R, S, D, T (stopped), t (traced), Z (ended, not yet reaped)... */
  state: string;
  /** Clock ticks since boot: tells a pid reused by another process from the one we saw. */
  started: string;
  argv: string[];
}

interface LauncherEvents {
  /** A launcher process ended (or, without /proc, this process was orphaned): the run was abandoned. */
  gone(): void;
  /** A launcher's shell caught a signal while our part of the run went on: npm passed it a SIGINT. */
  signalled(): void;
}

/**
 * Watches the launchers above this process, from the nearest up to the first process that is not one (the
 * user's shell, systemd, timeout, a container's init: never watched, so a run sent to the background outlives
 * the shell that started it). Polls every POLL_MS on an unref'd timer. Without /proc (not Linux) it watches
 * only for this process being orphaned by tsx's cli. A stop sent before this process started (while tsx
 * loads the script, about a second) is not seen.
 */
function watchLaunchers(events: LauncherEvents): void {
  const chain = launcherChain();
  if (chain === undefined) return watchParentOnly(events);
  if (chain.length === 0) return;
  const shells = chain.filter((proc) => isShellCommand(proc.argv)).map((proc) => ({ pid: proc.pid, seen: contextSwitches(proc.pid) }));
  const parent = process.ppid;
  // A stop and continue (Ctrl-Z then `fg`, `docker pause`) wakes the shell too, with SIGCHLD: no request.
  // The check waits for setImmediate, so that a SIGCONT that came with the timer is heard first.
  let resumedAt = -Infinity;
  const onContinue = (): void => void (resumedAt = performance.now());
  process.on('SIGCONT', onContinue);
  let lastPoll = performance.now();
  let stoppedBefore = false;
  const timer = setInterval(() => {
    const [previous, now] = [lastPoll, performance.now()];
    const procs = chain.map((proc) => readProc(proc.pid));
    if (process.ppid !== parent || procs.some((proc, i) => !proc || /^[ZX]/.test(proc.state) || proc.started !== chain[i]?.started)) {
      stop();
      events.gone();
      return;
    }
    const stopped = procs.some((proc) => proc !== undefined && /^[Tt]/.test(proc.state));
    // Late by a whole period: this process was stopped or frozen too.
    const excused = stopped || stoppedBefore || now - previous > 2 * POLL_MS;
    [lastPoll, stoppedBefore] = [now, stopped];
    let woke = false;
    for (const shell of shells) {
      const seen = contextSwitches(shell.pid);
      if (seen !== shell.seen) woke = true;
      shell.seen = seen;
    }
    if (woke && !excused) {
      setImmediate(() => {
        if (resumedAt < previous) events.signalled();
      });
    }
  }, POLL_MS).unref();
  const stop = (): void => {
    clearInterval(timer);
    process.off('SIGCONT', onContinue);
  };
}

/** Without /proc: tsx's cli is our parent (its preflight is in our execArgv), and it should outlive us. */
function watchParentOnly(events: LauncherEvents): void {
  if (!process.execArgv.some((arg) => /[\\/]tsx[\\/]dist[\\/]preflight\.c?js$/.test(arg))) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    events.gone();
  }, POLL_MS).unref();
}

/** The launchers above this process, nearest first; undefined without a readable /proc. */
function launcherChain(): Proc[] | undefined {
  const self = readProc(process.pid);
  if (!self) return undefined;
  const chain: Proc[] = [];
  let proc = readProc(self.ppid);
  while (proc && chain.length < 8) {
    const parent = proc.ppid > 0 ? readProc(proc.ppid) : undefined;
    const launcher = isPackageLauncher(proc.argv) || (isShellCommand(proc.argv) && parent !== undefined && isPackageLauncher(parent.argv));
    if (!launcher) break;
    chain.push(proc);
    proc = parent;
  }
  return chain;
}

/** npm, npx or tsx: node running one of their scripts, or npm under its process title ("npm exec tsx …"). */
function isPackageLauncher(argv: string[]): boolean {
  return argv.slice(0, 2).some((arg) => TSX_CLI.test(arg) || PACKAGE_LAUNCHER.test(basename(arg)) || PACKAGE_LAUNCHER.test(basename(arg.split(' ')[0] ?? '')));
}

/** `sh -c …`, as npm runs a script or an npx command. */
function isShellCommand(argv: string[]): boolean {
  return SHELL.test(basename(argv[0] ?? '')) && argv[1] === '-c';
}

function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name, in parentheses, may itself hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((arg) => arg !== '');
    return { pid, state: fields[0] ?? '', ppid: Number(fields[1]), started: fields[19] ?? '', argv };
  } catch {
    return undefined;
  }
}

/** Voluntary and involuntary context switches so far, as one string; undefined once it is gone. */
function contextSwitches(pid: number): string | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    return [...status.matchAll(/ctxt_switches:\s*(\d+)/g)].map((match) => match[1]).join('/');
  } catch {
    return undefined;
  }
}
