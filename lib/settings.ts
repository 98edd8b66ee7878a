// Every setting the migrator reads: one table gives names, defaults, meanings and parsing,
// so --help, .env.example and the README's table cannot drift apart. Parsing fails before any connection.

import { readFileSync } from 'node:fs';
import { KeyNames } from './records.js';

type SettingGroup = 'connection' | 'what to copy' | 'how to copy' | 'verification' | 'live replication' | 'pacing' | 'errors' | 'output';

interface SettingSpec {
  name: string;
  group: SettingGroup;
  default: string;
  meaning: string;
  secret?: boolean;
}

/** TLS settings, the same for each side. */
function tlsSettings(prefix: string, side: string): SettingSpec[] {
  return [
    { name: `${prefix}_TLS`, group: 'connection', default: 'false', meaning: `true: TLS to the ${side} (a rediss:// URL turns it on too)` },
    { name: `${prefix}_TLS_CA_FILE`, group: 'connection', default: '', meaning: `PEM CA bundle to verify the ${side}'s certificate (empty: the system's)` },
    { name: `${prefix}_TLS_CERT_FILE`, group: 'connection', default: '', meaning: `PEM client certificate for mutual TLS with the ${side}` },
    { name: `${prefix}_TLS_KEY_FILE`, group: 'connection', default: '', meaning: `PEM private key of that client certificate` },
    { name: `${prefix}_TLS_VERIFY`, group: 'connection', default: 'full', meaning: 'full (chain and host name), ca (chain only) or none (nothing; warns)' },
    { name: `${prefix}_TLS_SERVERNAME`, group: 'connection', default: '', meaning: 'SNI and certificate name to expect, for tunnels and IP addresses' },
  ];
}

export const SETTINGS: readonly SettingSpec[] = [
  { name: 'SOURCE_REDIS_HOST', group: 'connection', default: 'localhost', meaning: 'source host' },
  { name: 'SOURCE_REDIS_PORT', group: 'connection', default: '6381', meaning: 'source port' },
  { name: 'SOURCE_REDIS_DB_INDEX', group: 'connection', default: '0', meaning: 'source database number' },
  { name: 'SOURCE_REDIS_USERNAME', group: 'connection', default: '', meaning: 'source ACL user (empty: default user)' },
  { name: 'SOURCE_REDIS_PASSWORD', group: 'connection', default: '', meaning: 'source password or AUTH token', secret: true },
  { name: 'SOURCE_REDIS_URL', group: 'connection', default: '', meaning: 'redis://user:pass@host:port/db; replaces host, port and db', secret: true },
  ...tlsSettings('SOURCE_REDIS', 'source'),
  { name: 'SOURCE_REDIS_CLUSTER', group: 'connection', default: 'false', meaning: 'true: the source is a Redis Cluster; every master is found from this node and scanned' },
  { name: 'SOURCE_READ_FROM', group: 'connection', default: 'master', meaning: 'master, replica or replica_preferred: every read of the source (SCAN and values, keyspace events, the replication link, verification) goes to a replica of each source master (found by INFO replication), so the master serves none; replica_preferred reads a master that has no replica online, and says so' },
  { name: 'SOURCE_READER', group: 'connection', default: 'auto', meaning: 'how a source server is read: replication (as its replica: one snapshot by PSYNC, a fork as BGSAVE costs), scan (key by key: SCAN and DUMP, where PSYNC is refused, as on ElastiCache) or auto (replication for a copy or a live run where the source allows it, scan otherwise; the run says which and why). Read as a replica, live mode applies the source\'s replication stream; by scan, it follows keyspace events' },
  { name: 'REPLICATION_SPOOL_MB', group: 'connection', default: '1024', meaning: 'read as a replica, the source\'s snapshot is taken as fast as it comes: what the target has not taken yet waits in memory (8 MB), then in a spool file in the temporary directory (TMPDIR) up to this many MB, so the source never holds our writes in its replica output buffer for long; 0: no spool, the transfer waits for the target' },
  { name: 'SOURCE_RDB_FILE', group: 'connection', default: '', meaning: 'an .rdb backup to copy from (read by this tool, or loaded into a private redis-server: RDB_READER)' },
  { name: 'RDB_READER', group: 'connection', default: 'native', meaning: 'how SOURCE_RDB_FILE is read: native (by this tool, no server; RDB 1 to 13, and 80 of Valkey 9) or server (loaded into a private redis-server, removed after; the RDB versions it reads)' },
  { name: 'REDIS_SERVER_PATH', group: 'connection', default: 'redis-server', meaning: 'the redis-server binary that loads SOURCE_RDB_FILE with RDB_READER=server' },
  { name: 'DESTINATION_REDIS_HOST', group: 'connection', default: 'localhost', meaning: 'target host' },
  { name: 'DESTINATION_REDIS_PORT', group: 'connection', default: '6380', meaning: 'target port' },
  { name: 'DESTINATION_REDIS_DB_INDEX', group: 'connection', default: '0', meaning: 'target database number' },
  { name: 'DESTINATION_REDIS_USERNAME', group: 'connection', default: '', meaning: 'target ACL user (empty: default user)' },
  { name: 'DESTINATION_REDIS_PASSWORD', group: 'connection', default: '', meaning: 'target password or AUTH token', secret: true },
  { name: 'DESTINATION_REDIS_URL', group: 'connection', default: '', meaning: 'redis://user:pass@host:port/db; replaces host, port and db', secret: true },
  ...tlsSettings('DESTINATION_REDIS', 'target'),
  { name: 'DESTINATION_REDIS_CLUSTER', group: 'connection', default: 'false', meaning: 'true: the target is a Redis Cluster; each key goes to the master owning its slot' },
  { name: 'SCAN_MATCH_PATTERN', group: 'what to copy', default: '*', meaning: 'SCAN MATCH glob: which keys to migrate' },
  { name: 'SCAN_TYPE', group: 'what to copy', default: '', meaning: 'only keys of this type (SCAN TYPE: string, list, set, zset, hash, stream); empty for all' },
  { name: 'KEY_EXCLUDE_PATTERN', group: 'what to copy', default: '', meaning: 'glob of keys to leave out, matched byte for byte; empty for none' },
  { name: 'SOURCE_SLOTS', group: 'what to copy', default: '', meaning: 'only keys in these hash slots (Redis Cluster\'s CRC16 slot of the key, for a cluster or a standalone source alike), as ranges such as 0-5460,10923-16383; empty for all' },
  { name: 'SHARD_COUNT', group: 'what to copy', default: '1', meaning: 'split the 16,384 slots into this many contiguous ranges, one per process or pod, and copy only range SHARD_INDEX (with SOURCE_SLOTS too: the slots in both)' },
  { name: 'SHARD_INDEX', group: 'what to copy', default: '', meaning: 'which range of SHARD_COUNT this run copies, from 0; empty: JOB_COMPLETION_INDEX (set by Kubernetes in each pod of an Indexed Job), else 0' },
  { name: 'KEY_PREFIX_STRIP', group: 'what to copy', default: '', meaning: 'rename on the way: this prefix is removed from each key copied; keys without it are left out (counted as excluded); empty for none' },
  { name: 'KEY_PREFIX_ADD', group: 'what to copy', default: '', meaning: 'rename on the way: this prefix is put before each key copied (after KEY_PREFIX_STRIP); on a cluster target the new name decides the slot; empty for none' },
  { name: 'COPY_FUNCTIONS', group: 'what to copy', default: 'true', meaning: 'true: function libraries (Redis 7 FUNCTION) the target lacks are loaded before the keys; false leaves them out' },
  { name: 'DRY_RUN', group: 'how to copy', default: 'false', meaning: 'true reads what a copy would copy and reports it; writes nothing' },
  { name: 'COPY_METHOD', group: 'how to copy', default: 'auto', meaning: 'auto (dump, switching to type when the target refuses RESTORE), dump or type' },
  { name: 'OVERWRITE_EXISTING_KEYS', group: 'how to copy', default: 'false', meaning: 'true replaces keys that already exist on the target' },
  { name: 'WORKERS', group: 'how to copy', default: '1', meaning: 'run this many processes on this machine (one core each), each copying a contiguous share of this run\'s slots, with one progress line, one summary that adds theirs up and the worst exit status; Ctrl-C stops them all' },
  { name: 'DUMP_MAX_BYTES', group: 'how to copy', default: '67108864', meaning: 'keys estimated larger than this are copied by type in chunks, not by one RESTORE' },
  { name: 'COLLECTION_CHUNK_SIZE', group: 'how to copy', default: '1000', meaning: 'most elements (1 to 3000) one write carries for a big list, set, zset, hash or stream' },
  { name: 'MIGRATION_MODE', group: 'verification', default: 'copy', meaning: 'copy; compare (write nothing, check every source key against the target); live (copy, then keep applying the source\'s changes until Ctrl-C); liveonly (changes only, no copy first)' },
  { name: 'VERIFY', group: 'verification', default: 'false', meaning: 'true: after a copy, compare every key it restored or skipped' },
  { name: 'TTL_TOLERANCE', group: 'verification', default: '100', meaning: 'milliseconds two expiries may differ and still count as equal' },
  { name: 'LIVE_IDLE_TIMEOUT', group: 'live replication', default: '0', meaning: 'seconds: live mode ends (drains, verifies, reports) after this long without a change; 0 runs until Ctrl-C or SIGTERM' },
  { name: 'LIVE_QUEUE_SIZE', group: 'live replication', default: '100000', meaning: 'live mode by keyspace events: most changed keys waiting to be copied; past it no change is dropped: the queue stops growing and a repair sweep covers the gap' },
  { name: 'LIVE_SWEEP_RATE', group: 'live replication', default: '1000', meaning: 'live mode by keyspace events: keys per second the background repair sweep compares while live (0: only after a detected gap)' },
  { name: 'LIVE_NOTIFY_PROBE', group: 'live replication', default: 'true', meaning: 'where CONFIG is refused (ElastiCache): prove keyspace events arrive by writing one short-lived probe key to the source; false trusts the setting' },
  { name: 'PROGRESS', group: 'output', default: 'auto', meaning: 'auto (a line redrawn on a terminal, else a line every 5 s), plain or off; on stderr' },
  { name: 'METRICS_PORT', group: 'output', default: '0', meaning: 'serve Prometheus metrics at /metrics and a health answer at /healthz on this port, on every interface, for the whole run (keys by outcome, bytes, keys scanned and expected, reconnects, live lag and queue, labelled by shard); 0 for none' },
  { name: 'SUMMARY_JSON_FILE', group: 'output', default: '', meaning: 'path: write the final counts, timings, method and exit status as JSON' },
  { name: 'SHOW_DIFFS', group: 'output', default: 'false', meaning: 'true prints each differing key with its category and a hint' },
  { name: 'DIFF_REPORT_FILE', group: 'output', default: '', meaning: 'path: write every difference as one JSON object per line' },
  { name: 'SCAN_BATCH_SIZE', group: 'pacing', default: '1000', meaning: 'SCAN COUNT hint: load on the source' },
  { name: 'PIPELINE_BATCH_SIZE', group: 'pacing', default: '1000', meaning: 'keys per batch written to the target' },
  { name: 'MAX_PROCESSED_EXISTING_KEYS_LIMIT', group: 'pacing', default: '1000', meaning: 'pause SLEEP_TIME after this many skipped keys' },
  { name: 'MAX_KEYS_PER_SECOND', group: 'pacing', default: '0', meaning: 'most keys this run copies in any second (read from the source and sent to the target, whatever their outcome), held steady: no burst after a pause; shared out among WORKERS; 0 for no limit' },
  { name: 'MAX_BYTES_PER_SECOND', group: 'pacing', default: '0', meaning: 'most value bytes this run sends to the target in any second (10485760 is 10 MB/s), held steady; keys over a second\'s worth go in chunks, each waiting its turn; shared out among WORKERS; 0 for no limit' },
  { name: 'SLEEP_TIME', group: 'pacing', default: '1', meaning: 'seconds (fractions allowed) to pause after each batch; 0 for full speed' },
  { name: 'ERROR_LOG_FILENAME', group: 'errors', default: 'redis-keys-migrator-error.log', meaning: 'per-key error log, relative to the working directory' },
  { name: 'FILEMOD', group: 'errors', default: 'w', meaning: 'w truncates the error log at start, a appends' },
  { name: 'MAX_ERRORED_KEYS_LIMIT', group: 'errors', default: '1000', meaning: 'stop the run once this many keys have failed (0: never stop)' },
  { name: 'RECONNECT_TIMEOUT', group: 'errors', default: '60', meaning: 'seconds to keep reconnecting to a lost server before the run stops (0: stop at once)' },
  { name: 'REPLY_TIMEOUT', group: 'errors', default: '10', meaning: 'seconds without any reply, while commands wait, after which a server counts as lost (0: wait forever)' },
  { name: 'CHECKPOINT_FILE', group: 'errors', default: '', meaning: 'path: record progress every few seconds; a rerun with the same file resumes where the last one stopped (a copy: each master\'s SCAN cursor; live mode read as a replica: each master\'s replication offset, continued by partial resync)' },
];

type CopyMethod = 'auto' | 'dump' | 'type';

/** Inclusive hash slot ranges, ascending and apart. */
export type SlotRanges = readonly (readonly [number, number])[];

/** SHARD_COUNT and SHARD_INDEX, and the slots the run is limited to (SOURCE_SLOTS and the shard's range). */
export interface Sharding {
  index: number;
  count: number;
  /** Undefined: every slot. */
  slots?: SlotRanges;
}

export interface RateLimits {
  keysPerSecond: number;
  bytesPerSecond: number;
}

interface LiveSettings {
  idleTimeoutMs: number;
  queueSize: number;
  sweepRate: number;
  probe: boolean;
}

export interface Endpoint {
  side: 'source' | 'destination';
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  /** A unix socket instead of host and port (the private server for SOURCE_RDB_FILE). */
  socketPath?: string;
  tls?: TlsOptions;
  /** A Redis Cluster node: the whole cluster is reached through it. */
  cluster?: boolean;
  /** REPLY_TIMEOUT in ms: commands waiting this long with no reply mean a stalled server (0: wait forever). */
  replyTimeoutMs?: number;
  /** SOURCE_READ_FROM: where the source's reads go. */
  readFrom?: 'master' | 'replica' | 'replica_preferred';
  /** A cluster replica read from: READONLY after every connect, so it serves its master's slots. */
  readonlyReplica?: boolean;
}

interface TlsOptions {
  verify: 'full' | 'ca' | 'none';
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
}

export interface Settings {
  source: Endpoint;
  /** SOURCE_REDIS_DB_INDEX (or a URL's db) was given: with SOURCE_RDB_FILE, only that database is copied. */
  sourceDbChosen: boolean;
  rdbFile: string;
  rdbReader: 'server' | 'native';
  /** SOURCE_READER: a source server read as its replica, by SCAN, or whichever serves the run. */
  sourceReader: 'auto' | 'replication' | 'scan';
  /** REPLICATION_SPOOL_MB in bytes: how much of a replication link may wait on disk. */
  spoolBytes: number;
  redisServerPath: string;
  target: Endpoint;
  matchPattern: string;
  scanType: string;
  excludePattern: string;
  /** SOURCE_SLOTS, SHARD_COUNT and SHARD_INDEX. */
  sharding: Sharding;
  /** KEY_PREFIX_STRIP and KEY_PREFIX_ADD. */
  names: KeyNames;
  /** WORKERS: processes this run is split into on this machine. */
  workers: number;
  /** COPY_FUNCTIONS: the source's (or the file's) function libraries are loaded on the target. */
  copyFunctions: boolean;
  dryRun: boolean;
  progress: 'auto' | 'plain' | 'off';
  summaryJsonFile: string;
  /** METRICS_PORT; 0 for none. */
  metricsPort: number;
  copyMethod: CopyMethod;
  overwrite: boolean;
  dumpMaxBytes: number;
  chunkSize: number;
  scanBatchSize: number;
  pipelineBatchSize: number;
  existingKeysPauseEvery: number;
  sleepSeconds: number;
  /** MAX_KEYS_PER_SECOND and MAX_BYTES_PER_SECOND; 0 for none. */
  rateLimits: RateLimits;
  errorLogFile: string;
  errorLogMode: 'w' | 'a';
  maxErroredKeys: number;
  reconnectTimeoutMs: number;
  checkpointFile: string;
  mode: 'copy' | 'compare' | 'live' | 'liveonly';
  live: LiveSettings;
  verify: boolean;
  ttlToleranceMs: number;
  showDiffs: boolean;
  diffReportFile: string;
}

/** A bad setting: names the variable and what it expects, never the secret it may hold. */
export class SettingsError extends Error {}

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string {
  const spec = SETTINGS.find((s) => s.name === name);
  if (!spec) throw new Error(`unknown setting ${name}`);
  const value = env[name];
  return value === undefined || value === '' ? spec.default : value;
}

function shown(name: string, value: string): string {
  return SETTINGS.find((s) => s.name === name)?.secret ? '(hidden)' : JSON.stringify(value);
}

function parseInteger(env: Env, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = raw(env, name).trim();
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `from ${min} to ${max}`;
    throw new SettingsError(`${name} must be a whole number ${range}, got ${shown(name, value)}`);
  }
  return n;
}

function parseSeconds(env: Env, name: string): number {
  const value = raw(env, name).trim();
  const n = Number(value);
  if (value === '' || !Number.isFinite(n) || n < 0) {
    throw new SettingsError(`${name} must be a number of seconds, 0 or more (fractions allowed), got ${shown(name, value)}`);
  }
  return n;
}

const SLOTS = 16384;

/** SOURCE_SLOTS: "0-5460,10923-16383", single slots allowed; merged and sorted. Empty: undefined (every slot). */
function parseSlotRanges(env: Env): SlotRanges | undefined {
  const value = raw(env, 'SOURCE_SLOTS').trim();
  if (value === '') return undefined;
  const ranges = value.split(',').map((part) => {
    const found = /^\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?$/.exec(part);
    const [low, high] = [Number(found?.[1]), Number(found?.[2] ?? found?.[1])];
    if (!found || low > high || high >= SLOTS) throw new SettingsError(`SOURCE_SLOTS must be hash slots or ranges from 0 to 16383, such as 0-5460,10923-16383, got ${shown('SOURCE_SLOTS', value)}`);
    return [low, high] as const;
  });
  return mergeRanges(ranges);
}

function mergeRanges(ranges: readonly (readonly [number, number])[]): SlotRanges {
  const merged: [number, number][] = [];
  for (const [low, high] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const last = merged[merged.length - 1];
    if (last && low <= last[1] + 1) last[1] = Math.max(last[1], high);
    else merged.push([low, high]);
  }
  return merged;
}

/** Shard `index` of `count`: the 16,384 slots cut into `count` contiguous ranges as even as can be. */
export function shardRange(index: number, count: number): readonly [number, number] {
  return [Math.floor((index * SLOTS) / count), Math.floor(((index + 1) * SLOTS) / count) - 1];
}

/**
 * DUMP_MAX_BYTES, and no more than one second of MAX_BYTES_PER_SECOND: a bigger key goes in chunks, each waiting
 * its turn, rather than in one RESTORE that would carry several seconds' worth at once.
 */
function dumpMaxBytesOf(env: Env): number {
  const most = parseInteger(env, 'DUMP_MAX_BYTES', 1);
  const perSecond = parseInteger(env, 'MAX_BYTES_PER_SECOND', 0);
  return perSecond > 0 ? Math.min(most, perSecond) : most;
}

function parseSharding(env: Env): Sharding {
  const count = parseInteger(env, 'SHARD_COUNT', 1, SLOTS);
  const fromJob = raw(env, 'SHARD_INDEX') === '' && (env.JOB_COMPLETION_INDEX ?? '') !== '';
  const indexText = (fromJob ? env.JOB_COMPLETION_INDEX : raw(env, 'SHARD_INDEX')) || '0';
  const index = Number(indexText.trim());
  if (!/^[0-9]+$/.test(indexText.trim()) || index >= count) {
    const name = fromJob ? 'JOB_COMPLETION_INDEX (read for SHARD_INDEX)' : 'SHARD_INDEX';
    throw new SettingsError(`${name} must be a whole number from 0 to ${count - 1} (SHARD_COUNT=${count}), got ${JSON.stringify(indexText)}`);
  }
  const given = parseSlotRanges(env);
  if (count === 1) return given ? { index, count, slots: given } : { index, count };
  const [low, high] = shardRange(index, count);
  const slots = (given ?? [[0, SLOTS - 1] as const]).flatMap(([a, b]): [number, number][] => (Math.max(a, low) <= Math.min(b, high) ? [[Math.max(a, low), Math.min(b, high)]] : []));
  if (slots.length === 0) throw new SettingsError(`SOURCE_SLOTS and shard ${index} of ${count} (slots ${low}-${high}) have no slot in common: this run would copy nothing`);
  return { index, count, slots };
}

/** `ranges` cut into `parts` contiguous shares of as even a number of slots as can be (WORKERS' shares). */
export function splitSlots(ranges: SlotRanges, parts: number): SlotRanges[] {
  const slots = ranges.flatMap(([low, high]) => Array.from({ length: high - low + 1 }, (_, i) => low + i));
  return Array.from({ length: parts }, (_, part) => {
    const share = slots.slice(Math.floor((part * slots.length) / parts), Math.floor(((part + 1) * slots.length) / parts));
    return mergeRanges(share.map((slot) => [slot, slot] as const));
  });
}

/** Every slot. */
export const ALL_SLOTS: SlotRanges = [[0, SLOTS - 1]];

/** WORKERS: at least one, and no more than the run has slots to share out. */
function parseWorkers(env: Env, sharding: Sharding): number {
  const workers = parseInteger(env, 'WORKERS', 1, 256);
  const slotCount = (sharding.slots ?? ALL_SLOTS).reduce((sum, [low, high]) => sum + high - low + 1, 0);
  if (workers > slotCount) throw new SettingsError(`WORKERS must be at most the number of slots this run copies (${slotCount}), got ${workers}`);
  return workers;
}

/** Slot ranges as SOURCE_SLOTS writes them: "0-5460,10923-16383". */
export function slotRangesText(ranges: SlotRanges): string {
  return ranges.map(([low, high]) => (low === high ? String(low) : `${low}-${high}`)).join(',');
}

function parseBoolean(env: Env, name: string): boolean {
  const value = raw(env, name).trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(value)) return true;
  if (['false', '0', 'no', 'off'].includes(value)) return false;
  throw new SettingsError(`${name} must be true or false, got ${shown(name, value)}`);
}

function parseChoice<T extends string>(env: Env, name: string, choices: readonly T[]): T {
  const value = raw(env, name).trim();
  const choice = choices.find((c) => c === value.toLowerCase());
  if (choice === undefined) {
    throw new SettingsError(`${name} must be one of ${choices.join(', ')}, got ${shown(name, value)}`);
  }
  return choice;
}

function parseUrl(name: string, value: string, side: Endpoint['side']): Endpoint {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new SettingsError(`${name} must be a URL such as redis://user:password@host:6379/0`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new SettingsError(`${name} must start with redis:// or rediss:// (got ${url.protocol}//)`);
  }
  const dbText = url.pathname.replace(/^\//, '') || '0';
  if (!/^[0-9]+$/.test(dbText)) throw new SettingsError(`${name} must end in /<db number>, got /${dbText}`);
  return {
    side,
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost',
    port: url.port === '' ? 6379 : Number(url.port),
    db: Number(dbText),
    username: url.username ? decodePart(name, url.username) : undefined,
    password: url.password ? decodePart(name, url.password) : undefined,
  };
}

function decodePart(name: string, text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new SettingsError(`${name} has a user name or password with a broken %-escape; write % as %25`);
  }
}

function parseEndpoint(env: Env, side: Endpoint['side']): Endpoint {
  const prefix = side === 'source' ? 'SOURCE_REDIS_' : 'DESTINATION_REDIS_';
  const url = raw(env, `${prefix}URL`);
  const endpoint: Endpoint = url
    ? parseUrl(`${prefix}URL`, url, side)
    : {
        side,
        host: raw(env, `${prefix}HOST`),
        port: parseInteger(env, `${prefix}PORT`, 1, 65535),
        db: parseInteger(env, `${prefix}DB_INDEX`, 0),
      };
  // Explicit user and password settings fill in what the URL leaves out.
  endpoint.username ??= raw(env, `${prefix}USERNAME`) || undefined;
  endpoint.password ??= raw(env, `${prefix}PASSWORD`) || undefined;
  if (parseBoolean(env, `${prefix}TLS`) || url.startsWith('rediss://')) endpoint.tls = parseTls(env, prefix);
  if (!parseBoolean(env, `${prefix}CLUSTER`)) return endpoint;
  endpoint.cluster = true;
  if (endpoint.db !== 0) {
    const dbSetting = url ? `${prefix}URL` : `${prefix}DB_INDEX`;
    throw new SettingsError(`${dbSetting} must select database 0 with ${prefix}CLUSTER=true (a cluster has no other), got ${endpoint.db}`);
  }
  return endpoint;
}

function readPem(env: Env, name: string): Buffer | undefined {
  const path = raw(env, name);
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch {
    throw new SettingsError(`${name} must name a readable PEM file, got ${JSON.stringify(path)}`);
  }
}

function parseTls(env: Env, prefix: string): TlsOptions {
  const tls: TlsOptions = {
    verify: parseChoice(env, `${prefix}TLS_VERIFY`, ['full', 'ca', 'none'] as const),
    ca: readPem(env, `${prefix}TLS_CA_FILE`),
    cert: readPem(env, `${prefix}TLS_CERT_FILE`),
    key: readPem(env, `${prefix}TLS_KEY_FILE`),
    servername: raw(env, `${prefix}TLS_SERVERNAME`) || undefined,
  };
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new SettingsError(`${prefix}TLS_CERT_FILE and ${prefix}TLS_KEY_FILE go together: set both for mutual TLS, or neither`);
  }
  return tls;
}

/** A Redis type name; module types (e.g. ReJSON-RL) are allowed too. */
function parseScanType(env: Env): string {
  const value = raw(env, 'SCAN_TYPE').trim();
  if (value !== '' && !/^[A-Za-z0-9_-]+$/.test(value)) {
    throw new SettingsError(`SCAN_TYPE must be a type name such as string, list, set, zset, hash or stream, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** What live replication cannot go with, each in one line naming the setting. */
function liveRefusals(env: Env, mode: 'live' | 'liveonly'): void {
  const setting = `MIGRATION_MODE=${mode}`;
  if (raw(env, 'SOURCE_RDB_FILE')) throw new SettingsError(`${setting} follows a source server's changes; an .rdb file has none: copy the file, then run ${setting} against the server`);
  if (parseBoolean(env, 'DRY_RUN')) throw new SettingsError(`${setting} and DRY_RUN=true do not go together: a dry run writes nothing, live mode writes every change`);
  // Read as a replica, live mode resumes each master's stream by its offset; keyspace events cannot resume.
  if (raw(env, 'CHECKPOINT_FILE') && (mode === 'liveonly' || parseChoice(env, 'SOURCE_READER', ['auto', 'replication', 'scan'] as const) === 'scan')) {
    throw new SettingsError(`${setting} keeps a checkpoint only when it reads the source as its replica (MIGRATION_MODE=live, SOURCE_READER auto or replication): keyspace events cannot resume; remove CHECKPOINT_FILE`);
  }
  // Live mode replaces and deletes keys as the source does: on a target of its own, or when told to.
  if (mode === 'liveonly' && !parseBoolean(env, 'OVERWRITE_EXISTING_KEYS')) {
    throw new SettingsError('MIGRATION_MODE=liveonly replaces and deletes target keys as the source changes them: set OVERWRITE_EXISTING_KEYS=true to allow it');
  }
}

const CORE_TYPES = ['string', 'list', 'set', 'zset', 'hash', 'stream'];

/** What RDB_READER=native does not do, in one line naming the setting. */
function nativeReaderRefusals(env: Env): void {
  if (parseChoice(env, 'COPY_METHOD', ['auto', 'dump', 'type'] as const) === 'type') {
    throw new SettingsError('COPY_METHOD=type with SOURCE_RDB_FILE needs RDB_READER=server: this tool\'s own reader restores the values as the file holds them (COPY_METHOD=auto or dump)');
  }
  const scanType = parseScanType(env);
  if (scanType && !CORE_TYPES.includes(scanType.toLowerCase())) {
    throw new SettingsError(`RDB_READER=native filters by the six core types (SCAN_TYPE ${CORE_TYPES.join(', ')}), got ${JSON.stringify(scanType)}: use RDB_READER=server`);
  }
}

/** The source is an .rdb file read by our own reader (RDB_READER=native), with no server on the source side. */
/** Some selected keys are left out here, not by SCAN: KEY_EXCLUDE_PATTERN, or keys without KEY_PREFIX_STRIP. */
export const leavesKeysOut = (settings: Settings): boolean => settings.excludePattern !== '' || settings.names.strip.length > 0;

export const readsFileItself = (settings: Settings): boolean => settings.rdbFile !== '' && settings.rdbReader === 'native';

/**
 * Why the run must read a source server by SCAN whatever SOURCE_READER says, or undefined when a replica's
 * snapshot serves it: a snapshot is one point in time taken whole, for a copy that writes it.
 */
export function scanOnlyBecause(settings: Settings): string | undefined {
  if (settings.dryRun) return 'DRY_RUN=true reads each key by itself';
  if (settings.mode === 'compare') return 'MIGRATION_MODE=compare reads each key by itself';
  if (settings.mode === 'liveonly') return 'MIGRATION_MODE=liveonly copies no snapshot: it follows keyspace events and reads each changed key by itself';
  if (settings.mode === 'live' && settings.scanType) return 'MIGRATION_MODE=live with SCAN_TYPE follows keyspace events: the replication stream\'s commands do not say their key\'s type';
  if (settings.checkpointFile && settings.mode !== 'live') return 'CHECKPOINT_FILE resumes a SCAN by its cursor, and a snapshot cannot resume part-way';
  if (settings.copyMethod === 'type') return 'COPY_METHOD=type reads each key by type';
  if (settings.scanType && !CORE_TYPES.includes(settings.scanType.toLowerCase())) return `SCAN_TYPE=${settings.scanType} is a module type only SCAN knows`;
  return undefined;
}

/** SOURCE_READER=replication where the run cannot take a snapshot: one line naming what stands in the way. */
function replicationRefusal(settings: Settings): void {
  if (settings.sourceReader !== 'replication') return;
  if (settings.rdbFile) throw new SettingsError('SOURCE_READER=replication reads a source server, and SOURCE_RDB_FILE is set: a file is read by RDB_READER');
  const why = scanOnlyBecause(settings);
  if (why) throw new SettingsError(`SOURCE_READER=replication copies one snapshot of the source, but ${why}: set SOURCE_READER=scan (or auto)`);
}

export function parseSettings(env: Env): Settings {
  const settings = parseEverySetting(env);
  replicationRefusal(settings);
  return settings;
}

function parseEverySetting(env: Env): Settings {
  const source = parseEndpoint(env, 'source');
  const target = parseEndpoint(env, 'destination');
  if (source.cluster && raw(env, 'SOURCE_RDB_FILE')) {
    throw new SettingsError('SOURCE_RDB_FILE and SOURCE_REDIS_CLUSTER=true do not go together: an .rdb file is loaded into one private server');
  }
  const mode = parseChoice(env, 'MIGRATION_MODE', ['copy', 'compare', 'live', 'liveonly'] as const);
  if (mode === 'live' || mode === 'liveonly') liveRefusals(env, mode);
  if (raw(env, 'CHECKPOINT_FILE') && raw(env, 'SOURCE_RDB_FILE')) {
    throw new SettingsError('CHECKPOINT_FILE and SOURCE_RDB_FILE do not go together: each load of the file is a new server, on which no SCAN cursor can resume');
  }
  source.replyTimeoutMs = target.replyTimeoutMs = parseSeconds(env, 'REPLY_TIMEOUT') * 1000;
  source.readFrom = parseChoice(env, 'SOURCE_READ_FROM', ['master', 'replica', 'replica_preferred'] as const);
  if (raw(env, 'SOURCE_RDB_FILE') && parseChoice(env, 'RDB_READER', ['native', 'server'] as const) === 'native') nativeReaderRefusals(env);
  const sharding = parseSharding(env);
  return {
    source,
    sourceDbChosen: (env.SOURCE_REDIS_DB_INDEX ?? '') !== '' || /\/[0-9]+$/.test(raw(env, 'SOURCE_REDIS_URL')),
    rdbFile: raw(env, 'SOURCE_RDB_FILE'),
    rdbReader: parseChoice(env, 'RDB_READER', ['native', 'server'] as const),
    sourceReader: parseChoice(env, 'SOURCE_READER', ['auto', 'replication', 'scan'] as const),
    spoolBytes: parseInteger(env, 'REPLICATION_SPOOL_MB', 0) * 1024 * 1024,
    redisServerPath: raw(env, 'REDIS_SERVER_PATH'),
    target,
    matchPattern: raw(env, 'SCAN_MATCH_PATTERN'),
    scanType: parseScanType(env),
    excludePattern: raw(env, 'KEY_EXCLUDE_PATTERN'),
    sharding,
    workers: parseWorkers(env, sharding),
    names: new KeyNames(Buffer.from(raw(env, 'KEY_PREFIX_STRIP')), Buffer.from(raw(env, 'KEY_PREFIX_ADD'))),
    copyFunctions: parseBoolean(env, 'COPY_FUNCTIONS'),
    dryRun: parseBoolean(env, 'DRY_RUN'),
    progress: parseChoice(env, 'PROGRESS', ['auto', 'plain', 'off'] as const),
    summaryJsonFile: raw(env, 'SUMMARY_JSON_FILE'),
    metricsPort: parseInteger(env, 'METRICS_PORT', 0, 65535),
    copyMethod: parseChoice(env, 'COPY_METHOD', ['auto', 'dump', 'type'] as const),
    overwrite: parseBoolean(env, 'OVERWRITE_EXISTING_KEYS'),
    dumpMaxBytes: dumpMaxBytesOf(env),
    chunkSize: parseInteger(env, 'COLLECTION_CHUNK_SIZE', 1, 3000),
    scanBatchSize: parseInteger(env, 'SCAN_BATCH_SIZE', 1),
    pipelineBatchSize: parseInteger(env, 'PIPELINE_BATCH_SIZE', 1, 100_000),
    existingKeysPauseEvery: parseInteger(env, 'MAX_PROCESSED_EXISTING_KEYS_LIMIT', 1),
    sleepSeconds: parseSeconds(env, 'SLEEP_TIME'),
    rateLimits: { keysPerSecond: parseInteger(env, 'MAX_KEYS_PER_SECOND', 0), bytesPerSecond: parseInteger(env, 'MAX_BYTES_PER_SECOND', 0) },
    errorLogFile: raw(env, 'ERROR_LOG_FILENAME'),
    errorLogMode: parseChoice(env, 'FILEMOD', ['w', 'a'] as const),
    maxErroredKeys: parseInteger(env, 'MAX_ERRORED_KEYS_LIMIT', 0),
    reconnectTimeoutMs: parseSeconds(env, 'RECONNECT_TIMEOUT') * 1000,
    checkpointFile: raw(env, 'CHECKPOINT_FILE'),
    mode,
    live: {
      idleTimeoutMs: parseSeconds(env, 'LIVE_IDLE_TIMEOUT') * 1000,
      queueSize: parseInteger(env, 'LIVE_QUEUE_SIZE', 100),
      sweepRate: parseInteger(env, 'LIVE_SWEEP_RATE', 0),
      probe: parseBoolean(env, 'LIVE_NOTIFY_PROBE'),
    },
    verify: parseBoolean(env, 'VERIFY'),
    ttlToleranceMs: parseInteger(env, 'TTL_TOLERANCE', 0),
    showDiffs: parseBoolean(env, 'SHOW_DIFFS'),
    diffReportFile: raw(env, 'DIFF_REPORT_FILE'),
  };
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * Variables that look like a misspelt setting (SOURCE_REDIS_PROT): within three edits of a real one and
 * sharing its first word. Each comes with the closest real name.
 */
export function unknownSettingWarnings(env: Env): string[] {
  const names = new Set(SETTINGS.map((s) => s.name));
  const firstWords = new Set(SETTINGS.map((s) => s.name.split('_')[0]));
  const warnings: string[] = [];
  for (const name of Object.keys(env)) {
    if (names.has(name) || !firstWords.has(name.split('_')[0])) continue;
    const [closest, edits] = SETTINGS.map((s): [string, number] => [s.name, distance(name, s.name)]).sort((a, b) => a[1] - b[1])[0] ?? ['', 99];
    if (edits <= 3) warnings.push(`Unknown setting ${name} is ignored; did you mean ${closest}?`);
  }
  return warnings;
}

const GROUPS: readonly SettingGroup[] = ['connection', 'what to copy', 'how to copy', 'verification', 'live replication', 'pacing', 'errors', 'output'];

function defaultShown(spec: SettingSpec): string {
  return spec.default === '' ? '(empty)' : spec.default;
}

/** `--help`: every setting with its default and meaning, grouped. */
export function renderHelp(): string {
  const width = Math.max(...SETTINGS.map((s) => s.name.length));
  const lines = [
    'Usage: npx tsx redis-keys-migrator.ts',
    'Copies keys from a source Redis to a target Redis. Settings come from the environment or .env.',
  ];
  for (const group of GROUPS) {
    lines.push('', `${group[0]?.toUpperCase()}${group.slice(1)}:`);
    for (const s of SETTINGS.filter((spec) => spec.group === group)) {
      lines.push(`  ${s.name.padEnd(width)}  ${s.meaning} [default: ${defaultShown(s)}]`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** `.env.example`: every setting at its default, commented out, grouped. */
export function renderEnvExample(): string {
  const lines = ['# redis-keys-migrator settings. Uncomment what you change; the environment wins over this file.'];
  for (const group of GROUPS) {
    lines.push('', `# --- ${group} ---`);
    for (const s of SETTINGS.filter((spec) => spec.group === group)) lines.push(`# ${s.meaning}`, `# ${s.name}=${s.default}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The README's settings table. */
export function renderReadmeTable(): string {
  const rows = SETTINGS.map((s) => `| \`${s.name}\` | ${s.group} | \`${defaultShown(s)}\` | ${s.meaning.replace(/\|/g, '\\|')} |`);
  return ['| setting | group | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
