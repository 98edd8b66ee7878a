// METRICS_PORT: Prometheus text at /metrics (prom-client) and a health answer at /healthz, for the whole run.
// The figures are read when scraped, from whatever the run is doing then (copy, compare, live).
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { ProgressSnapshot } from './progress.js';

const OUTCOMES = ['restored', 'skipped', 'failed', 'vanished'] as const;

/** Live mode's figures now. */
export interface LiveReading {
  lagSeconds: number;
  queued: number;
}

/** What the run reports, each read as the scrape comes; unset ones read as 0. */
class Readings {
  progress: (() => ProgressSnapshot) | undefined;
  reconnects: (() => number) | undefined;
  live: (() => LiveReading) | undefined;
}

/** The run's figures: set by the run as it goes, served only when METRICS_PORT is set (and sent by a worker). */
export const readings = new Readings();

/** Set in a worker's environment (WORKERS): its number, and that it reports its figures to the run that started it. */
export const WORKER_VARIABLE = 'REDIS_KEYS_MIGRATOR_WORKER';

/** What a worker sends the run that started it, once a second: its figures as they are. */
export interface WorkerReport {
  progress?: ProgressSnapshot;
  reconnects: number;
  live?: LiveReading;
}

/** In a worker: its readings to its parent once a second, for the parent's progress line and metrics. */
export function reportToParent(): void {
  if (process.env[WORKER_VARIABLE] === undefined || !process.send) return;
  // The channel must not keep a worker alive once its run is over.
  process.channel?.unref();
  const timer = setInterval(() => {
    // A parent gone (killed) closes the channel: the worker goes on, draining, and says nothing more.
    if (!process.connected) return;
    const report: WorkerReport = { progress: readings.progress?.(), reconnects: readings.reconnects?.() ?? 0, live: readings.live?.() };
    process.send?.(report, undefined, {}, () => undefined);
  }, 1000);
  timer.unref();
}

type PromClient = typeof import('prom-client');

/** The metrics of one run, labelled by shard, in a registry of their own. */
function metricsRegistry(prom: PromClient, shard: string): Registry {
  const registry = new prom.Registry();
  registry.setDefaultLabels({ shard });
  const progress = (): ProgressSnapshot | undefined => readings.progress?.();
  new prom.Counter({
    name: 'redis_keys_migrator_keys_total',
    help: 'Keys by outcome: restored, skipped (already on the target), failed, vanished (gone from the source meanwhile).',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      const now = progress();
      this.reset();
      for (const outcome of OUTCOMES) this.inc({ outcome }, now?.[outcome] ?? 0);
    },
  });
  mirror(prom, registry, 'counter', 'redis_keys_migrator_bytes_total', 'Value bytes sent to the target.', () => progress()?.bytes ?? 0);
  mirror(prom, registry, 'counter', 'redis_keys_migrator_reconnects_total', 'Reconnections after a lost connection.', () => readings.reconnects?.() ?? 0);
  mirror(prom, registry, 'gauge', 'redis_keys_migrator_keys_scanned', 'Keys selected from the source so far.', () => progress()?.scanned ?? 0);
  mirror(prom, registry, 'gauge', 'redis_keys_migrator_keys_estimated', 'Keys the source is expected to yield (its DBSIZE, in proportion to the run\'s slots).', () => progress()?.total ?? 0);
  mirror(prom, registry, 'gauge', 'redis_keys_migrator_live_lag_seconds', 'Live mode: age of the oldest change not yet applied.', () => readings.live?.().lagSeconds ?? 0);
  mirror(prom, registry, 'gauge', 'redis_keys_migrator_live_queue_depth', 'Live mode: changed keys waiting to be copied.', () => readings.live?.().queued ?? 0);
  return registry;
}

/** A metric whose value is read from the run at each scrape. */
function mirror(prom: PromClient, registry: Registry, kind: 'counter' | 'gauge', name: string, help: string, read: () => number): void {
  if (kind === 'gauge') {
    new prom.Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
    return;
  }
  new prom.Counter({ name, help, registers: [registry], collect() {
    this.reset();
    this.inc(read());
  } });
}

/**
 * Serves /metrics and /healthz on `port` (every interface, for a scraper in the pod's network). Resolves once
 * listening; rejects with one line when the port cannot be had. The server does not keep the run alive.
 */
export async function serveMetrics(port: number, shard: string): Promise<Server> {
  // Loaded only here: every run without METRICS_PORT would spend some 50 ms of its start-up loading it.
  const registry = metricsRegistry(await import('prom-client'), shard);
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics or /healthz\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`METRICS_PORT ${port} cannot be served: ${err.code === 'EADDRINUSE' ? 'another process listens on it' : err.message}`)));
    server.listen(port, () => resolve());
  });
  server.unref();
  return server;
}
