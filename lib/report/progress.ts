// Progress on stderr while a run goes: one line redrawn in place on a terminal, a plain line every few
// seconds elsewhere (CI, nohup, a log file). The parity summary stays on stdout, untouched.
import type { Waiting } from '../net/recovery.js';
import { noCounts } from '../records.js';

type ProgressMode = 'auto' | 'plain' | 'off';

export interface ProgressSnapshot {
  scanned: number;
  /** Keys the source holds (DBSIZE), an estimate of what SCAN will yield. */
  total: number;
  bytes: number;
  restored: number;
  skipped: number;
  failed: number;
  vanished: number;
  /** Set while the run waits for a lost server (or a cluster that is down): why, and since when. */
  waiting?: Waiting;
}

const TTY_EVERY_MS = 250;
const PLAIN_EVERY_MS = 5000;

const count = (n: number): string => Math.round(n).toLocaleString('en-US');

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 59.5) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  // Rounded before it is cut into minutes, so 119.6 s is 2 min 0 s, never 1 min 60 s.
  const whole = Math.round(seconds);
  const m = Math.floor(whole / 60);
  return m < 60 ? `${m} min ${whole % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** One progress line: scanned of total, percentage, rates, ETA and the counts. */
export function progressLine(s: ProgressSnapshot, elapsedSeconds: number): string {
  const total = Math.max(s.total, s.scanned);
  const percent = total > 0 ? (100 * s.scanned) / total : 100;
  const rate = elapsedSeconds > 0 ? s.scanned / elapsedSeconds : 0;
  const mbps = elapsedSeconds > 0 ? s.bytes / 1e6 / elapsedSeconds : 0;
  const eta = rate > 0 ? (total - s.scanned) / rate : Infinity;
  return (
    `${count(s.scanned)}/${count(total)} keys (${percent.toFixed(1)}%), ${count(rate)} keys/s, ${mbps.toFixed(1)} MB/s, ` +
    `ETA ${formatDuration(eta)}; restored ${count(s.restored)}, skipped ${count(s.skipped)}, ` +
    `failed ${count(s.failed)}, vanished ${count(s.vanished)}` +
    (s.waiting ? `; ${s.waiting.doing ?? 'reconnecting'}: ${s.waiting.reason}, for ${formatDuration((Date.now() - s.waiting.since) / 1000)}` : '')
  );
}

export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();
  private readonly inPlace: boolean;

  constructor(
    mode: ProgressMode,
    read: () => ProgressSnapshot,
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly line: () => string = () => progressLine(read(), (Date.now() - this.started) / 1000),
  ) {
    this.inPlace = mode === 'auto' && out.isTTY === true;
    if (mode === 'off') return;
    this.timer = setInterval(() => this.draw(), this.inPlace ? TTY_EVERY_MS : PLAIN_EVERY_MS);
    this.timer.unref();
  }

  private draw(): void {
    const line = `Progress: ${this.line()}`;
    if (this.inPlace) this.out.write(`\r\x1b[2K${line.slice(0, (this.out.columns ?? 200) - 1)}`);
    else this.out.write(`${line}\n`);
  }

  /** A progress line of another shape (live mode's). */
  static ofLine(mode: ProgressMode, line: () => string): Progress {
    const none = (): ProgressSnapshot => ({ scanned: 0, total: 0, bytes: 0, ...noCounts() });
    return new Progress(mode, none, process.stderr, line);
  }

  /** Clears the in-place line so the summary starts on a clean line. */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.inPlace) this.out.write('\r\x1b[2K');
  }
}
