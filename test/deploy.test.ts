// deploy/: the container recipe and the Kubernetes Indexed Job. No cluster is reachable from here, so the
// manifest is read as Kubernetes would read it (YAML), checked against the tool's own settings, and its shards
// are run as local processes, one per completion index, against real servers.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { SETTINGS } from '../lib/settings.js';
import { keyspaceOf } from './helpers/cluster.js';
import { parseSummary } from './helpers/inspect.js';
import { ROOT, runMigrator, startRedis, tempDir, type RedisServer } from './helpers/servers.js';

interface EnvEntry {
  name: string;
  value?: string;
  valueFrom?: unknown;
}

interface Manifest {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: {
    completionMode?: string;
    completions?: number;
    parallelism?: number;
    podFailurePolicy?: { rules: { action: string; onExitCodes?: { values: number[] } }[] };
    template?: { spec: { restartPolicy?: string; securityContext?: { runAsNonRoot?: boolean }; containers: { env?: EnvEntry[]; envFrom?: unknown[]; ports?: { containerPort: number; name?: string }[]; volumeMounts?: { mountPath: string }[] }[] } };
  };
}

const documents = parseAllDocuments(readFileSync(join(ROOT, 'deploy', 'job.yaml'), 'utf8'));
const manifests = documents.map((d) => {
  expect(d.errors).toEqual([]);
  return d.toJS() as Manifest;
});
const byKind = (kind: string): Manifest => {
  const found = manifests.find((m) => m.kind === kind);
  if (!found) throw new Error(`deploy/job.yaml has no ${kind}`);
  return found;
};
const configMap = byKind('ConfigMap');
const job = byKind('Job');
const container = job.spec?.template?.spec.containers[0];

describe('deploy/job.yaml', () => {
  it('is an Indexed Job with as many completions, all at once, as SHARD_COUNT, run as a non-root user', () => {
    const shards = Number(configMap.data?.SHARD_COUNT);
    expect(shards).toBeGreaterThan(1);
    expect(job.spec?.completionMode).toBe('Indexed');
    expect(job.spec?.completions).toBe(shards);
    expect(job.spec?.parallelism).toBe(shards);
    expect(job.spec?.template?.spec.securityContext?.runAsNonRoot).toBe(true);
  });

  it('runs a failed shard again (exit 1) but fails the Job on keys failed, the error limit or differences (2, 3, 4)', () => {
    expect(job.spec?.template?.spec.restartPolicy).toBe('Never');
    const failing = job.spec?.podFailurePolicy?.rules.find((r) => r.action === 'FailJob')?.onExitCodes?.values ?? [];
    expect([...failing].sort()).toEqual([2, 3, 4]);
  });

  it('sets only settings the tool knows, and keeps passwords in the Secret', () => {
    const known = new Set(SETTINGS.map((s) => s.name));
    const secret = byKind('Secret');
    const names = [...Object.keys(configMap.data ?? {}), ...Object.keys(secret.stringData ?? {}), ...(container?.env ?? []).map((e) => e.name)];
    expect(names.filter((n) => !known.has(n) && n !== 'JOB_COMPLETION_INDEX')).toEqual([]);
    const secretNames = new Set(SETTINGS.filter((s) => s.secret).map((s) => s.name));
    expect(Object.keys(configMap.data ?? {}).filter((n) => secretNames.has(n))).toEqual([]);
    expect(Object.keys(secret.stringData ?? {}).every((n) => secretNames.has(n))).toBe(true);
  });

  it('gives each shard a checkpoint of its own on a mounted volume', () => {
    const checkpoint = container?.env?.find((e) => e.name === 'CHECKPOINT_FILE')?.value ?? '';
    expect(checkpoint).toContain('$(JOB_COMPLETION_INDEX)');
    const mounts = (container?.volumeMounts ?? []).map((m) => m.mountPath);
    expect(mounts.some((m) => checkpoint.startsWith(`${m}/`))).toBe(true);
    // Defined before CHECKPOINT_FILE, so Kubernetes expands it there.
    expect(container?.env?.[0]?.name).toBe('JOB_COMPLETION_INDEX');
  });

  it('declares the metrics port the settings serve', () => {
    expect(Number(configMap.data?.METRICS_PORT)).toBeGreaterThan(0);
    expect(container?.ports?.find((p) => p.name === 'metrics')?.containerPort).toBe(Number(configMap.data?.METRICS_PORT));
  });
});

describe('deploy/Dockerfile', () => {
  const recipe = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
  it('builds on Node 20 slim with the locked dependencies and runs the script as a non-root user', () => {
    expect(recipe).toMatch(/^FROM node:20-slim$/m);
    expect(recipe).toMatch(/^RUN npm ci\b/m);
    expect(recipe).toMatch(/^USER node$/m);
    // The script under tsx with node as the container's first process: its SIGTERM reaches the run itself.
    expect(recipe).toMatch(/^CMD \["node", "--import", "tsx", "redis-keys-migrator.ts"\]$/m);
  });
});

describe('the Job\'s shards, run here as local processes', () => {
  let source: RedisServer;
  let target: RedisServer;
  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    await source.cmd('DEBUG', 'POPULATE', 5000, 'key', 8);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('the ConfigMap\'s settings, one process per JOB_COMPLETION_INDEX, copy every key exactly once and verify it', async () => {
    const shards = Number(configMap.data?.SHARD_COUNT);
    const volume = mkdtempSync(join(tmpdir(), 'rkm-checkpoints-'));
    const checkpoint = (container?.env?.find((e) => e.name === 'CHECKPOINT_FILE')?.value ?? '').replace(/^\/checkpoints/, volume);
    // The manifest's servers are not here: these are.
    const endpoints = {
      SOURCE_REDIS_HOST: '127.0.0.1', SOURCE_REDIS_PORT: source.port, SOURCE_REDIS_CLUSTER: 'false',
      DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, DESTINATION_REDIS_CLUSTER: 'false', DESTINATION_REDIS_TLS: 'false',
    };
    const runs = await Promise.all(Array.from({ length: shards }, (_, index) => runMigrator({
      ...configMap.data,
      ...endpoints,
      JOB_COMPLETION_INDEX: index,
      // Each pod has a network of its own; here the processes share one, so no metrics port.
      METRICS_PORT: 0,
      CHECKPOINT_FILE: checkpoint.replace('$(JOB_COMPLETION_INDEX)', String(index)),
    }, tempDir())));
    let restored = 0;
    for (const run of runs) {
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      const counts = parseSummary(run.stdout);
      expect(counts.skipped).toBe(0);
      expect(run.stdout).toMatch(/^Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl/m);
      restored += counts.restored;
    }
    expect(restored).toBe(5000);
    expect(await keyspaceOf([target])).toEqual(await keyspaceOf([source]));
    for (let index = 0; index < shards; index++) expect(readFileSync(join(volume, `shard-${index}.json`), 'utf8')).toContain('"complete"');
  }, 60_000);
});
