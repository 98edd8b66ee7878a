// How far behind the source live mode runs: for each copied change, the time from its event to its copy,
// kept as a fixed histogram (1 ms steps up to 60 s) so percentiles cost no memory that grows with the run.

const LIMIT_MS = 60_000;

export class LagStats {
  private readonly counts = new Uint32Array(LIMIT_MS + 1);
  private samples = 0;
  private max = 0;
  /** Copies per 100 ms slot, the last 50 slots: the recent rate. */
  private readonly recent: { slot: number; n: number }[] = [];

  /** Changes whose oldest events arrived at `since` (ms since the epoch) were copied now. */
  add(since: readonly number[], now = Date.now()): void {
    for (const at of since) {
      const lag = Math.max(0, now - at);
      const bucket = Math.min(lag, LIMIT_MS);
      this.counts[bucket] = (this.counts[bucket] ?? 0) + 1;
      this.max = Math.max(this.max, lag);
    }
    this.samples += since.length;
    const slot = Math.floor(now / 100);
    const last = this.recent[this.recent.length - 1];
    if (last?.slot === slot) last.n += since.length;
    else this.recent.push({ slot, n: since.length });
    while (this.recent.length > 0 && (this.recent[0]?.slot ?? slot) <= slot - 50) this.recent.shift();
  }

  /** Changes copied per second over the last five seconds. */
  recentRate(now = Date.now()): number {
    const slot = Math.floor(now / 100);
    const n = this.recent.filter((r) => r.slot > slot - 50).reduce((sum, r) => sum + r.n, 0);
    return n / 5;
  }

  /** The lag under which `fraction` of the changes were copied, in ms. */
  percentile(fraction: number): number {
    if (this.samples === 0) return 0;
    const wanted = Math.ceil(this.samples * fraction);
    let seen = 0;
    for (let ms = 0; ms <= LIMIT_MS; ms++) {
      seen += this.counts[ms] ?? 0;
      if (seen >= wanted) return ms;
    }
    return this.max;
  }

  summary(): { p50: number; p99: number; max: number; samples: number } {
    return { p50: this.percentile(0.5), p99: this.percentile(0.99), max: this.max, samples: this.samples };
  }
}
