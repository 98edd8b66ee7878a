// METRICS_PORT: Prometheus text at /metrics (prom-client) and a health answer at /healthz, for the whole run.
// The figures are read when scraped, from whatever the run is doing then (copy, compare, live).
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
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

/** The run's figures: set by the run as it goes, served only when METRICS_PORT is set. */
export const readings = new Readings();

/** The metrics of one run, labelled by shard, in a registry of their own. */
export function metricsRegistry(shard: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ shard });
  const progress = (): ProgressSnapshot | undefined => readings.progress?.();
  new Counter({
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
  mirror(registry, Counter, 'redis_keys_migrator_bytes_total', 'Value bytes sent to the target.', () => progress()?.bytes ?? 0);
  mirror(registry, Counter, 'redis_keys_migrator_reconnects_total', 'Reconnections after a lost connection.', () => readings.reconnects?.() ?? 0);
  mirror(registry, Gauge, 'redis_keys_migrator_keys_scanned', 'Keys selected from the source so far.', () => progress()?.scanned ?? 0);
  mirror(registry, Gauge, 'redis_keys_migrator_keys_estimated', 'Keys the source is expected to yield (its DBSIZE, in proportion to the run\'s slots).', () => progress()?.total ?? 0);
  mirror(registry, Gauge, 'redis_keys_migrator_live_lag_seconds', 'Live mode: age of the oldest change not yet applied.', () => readings.live?.().lagSeconds ?? 0);
  mirror(registry, Gauge, 'redis_keys_migrator_live_queue_depth', 'Live mode: changed keys waiting to be copied.', () => readings.live?.().queued ?? 0);
  return registry;
}

/** A metric whose value is read from the run at each scrape. */
function mirror(registry: Registry, kind: typeof Counter | typeof Gauge, name: string, help: string, read: () => number): void {
  if (kind === Gauge) {
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
    return;
  }
  new Counter({ name, help, registers: [registry], collect() {
    this.reset();
    this.inc(read());
  } });
}

/**
 * Serves /metrics and /healthz on `port` (every interface, for a scraper in the pod's network). Resolves once
 * listening; rejects with one line when the port cannot be had. The server does not keep the run alive.
 */
export async function serveMetrics(port: number, shard: string): Promise<Server> {
  const registry = metricsRegistry(shard);
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
