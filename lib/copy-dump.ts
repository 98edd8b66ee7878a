// Copy by DUMP and RESTORE: one read script per batch on the source, pipelined RESTOREs on the target.
// RESTORE without REPLACE makes skip-existing atomic (BUSYKEY); keys over DUMP_MAX_BYTES go by type in chunks.
import type { Arg, Connection } from './connections.js';
import { describeError } from './connections.js';
import {
  asArray, asNumber, asText, failed, flagsFor, isolateFailures, isScriptingRefused, mapLimited,
  READ_BUDGET_BYTES, type CopyContext, type KeyOutcome,
} from './batch.js';
import { copyBatchByType, copyKeyInChunks, readExpireAt } from './copy-type.js';
import { DUMP_READ, READ_FLAGS, withFlags } from './scripts.js';

interface DumpRecord {
  key: Buffer;
  kind: string;
  expireAt: number;
  /** Empty when the key is over the size limit and must be copied in chunks. */
  payload: Buffer;
}

/** The target cannot take DUMP payloads at all: no RESTORE, or a newer RDB format than it reads. */
export function isRestoreRefused(reason: string): boolean {
  return /unknown command .?restore|NOPERM.*'restore'|payload version or checksum are wrong/i.test(reason);
}

/** Thrown when RESTORE is refused, carrying the keys of the batch not yet settled. */
export class RestoreRefused extends Error {
  constructor(readonly reason: string, readonly settled: KeyOutcome[], readonly unsettled: Buffer[]) {
    super(reason);
  }
}

export async function copyBatchByDump(ctx: CopyContext, keys: readonly Buffer[]): Promise<KeyOutcome[]> {
  const outcomes: KeyOutcome[] = [];
  let rest = keys;
  while (rest.length > 0) {
    const read = await readDumps(ctx, rest);
    const covered = rest.slice(0, read.length);
    rest = rest.slice(read.length);
    try {
      outcomes.push(...(await restoreRecords(ctx, covered, read)));
    } catch (err) {
      if (err instanceof RestoreRefused) throw new RestoreRefused(err.reason, [...outcomes, ...err.settled], [...err.unsettled, ...rest]);
      throw err;
    }
  }
  return outcomes;
}

async function readDumps(ctx: CopyContext, keys: readonly Buffer[]): Promise<(DumpRecord | { error: unknown })[]> {
  if (ctx.sourceScripts) {
    try {
      return await isolateFailures(keys, (some) => readDumpsByScript(ctx.source, some, ctx.settings.dumpMaxBytes));
    } catch (err) {
      if (!isScriptingRefused(err)) throw err;
      ctx.sourceScripts = false;
    }
  }
  return mapLimited(keys.slice(0, 100), 100, (key) =>
    readDumpPlain(ctx.source, key, ctx.settings.dumpMaxBytes).catch((error: unknown) => ({ error })),
  );
}

async function readDumpsByScript(source: Connection, keys: readonly Buffer[], maxBytes: number): Promise<DumpRecord[]> {
  const script = withFlags(DUMP_READ, flagsFor(source, READ_FLAGS));
  const args = [String(READ_BUDGET_BYTES), String(maxBytes), source.capabilities.expireTime ? '1' : '0'];
  const flat = asArray(await source.evalScript(script, keys, args));
  const records: DumpRecord[] = [];
  for (let p = 0; p < flat.length; p += 3) {
    records.push({ key: keys[p / 3] as Buffer, kind: asText(flat[p]), expireAt: asNumber(flat[p + 1]), payload: flat[p + 2] as Buffer });
  }
  return records;
}

/** The same read without scripting, for servers that refuse EVAL. */
async function readDumpPlain(source: Connection, key: Buffer, maxBytes: number): Promise<DumpRecord> {
  const kind = asText(await source.send(['TYPE', key]));
  if (kind === 'none') return { key, kind, expireAt: -1, payload: Buffer.alloc(0) };
  const expireAt = await readExpireAt(source, key);
  const usage = asNumber(await source.send(['MEMORY', 'USAGE', key]));
  const payload = usage > maxBytes ? Buffer.alloc(0) : ((await source.send(['DUMP', key])) as Buffer | null);
  if (payload === null) return { key, kind: 'none', expireAt: -1, payload: Buffer.alloc(0) };
  return { key, kind, expireAt, payload };
}

async function restoreRecords(
  ctx: CopyContext,
  keys: readonly Buffer[],
  read: readonly (DumpRecord | { error: unknown })[],
): Promise<KeyOutcome[]> {
  const now = Date.now();
  const pending = read.map((record, i): Promise<KeyOutcome> | KeyOutcome => {
    const key = keys[i] as Buffer;
    if ('error' in record) return failed(key, record.error);
    if (record.kind === 'none') return { key, status: 'vanished' };
    // Expired on the way: RESTORE would answer OK and create nothing.
    if (record.expireAt > 0 && record.expireAt <= now) return { key, status: 'vanished' };
    if (record.payload.length === 0) return copyKeyInChunks(ctx, key, record);
    return restoreOne(ctx.target, record, ctx.settings.overwrite);
  });
  const outcomes = await Promise.all(pending);
  const refused = outcomes.find((o) => o.status === 'failed' && isRestoreRefused(o.reason));
  if (refused && refused.status === 'failed') {
    const settled = outcomes.filter((o) => !(o.status === 'failed' && isRestoreRefused(o.reason)));
    const unsettled = outcomes.filter((o) => o.status === 'failed' && isRestoreRefused(o.reason)).map((o) => o.key);
    throw new RestoreRefused(refused.reason, settled, unsettled);
  }
  return outcomes;
}

async function restoreOne(target: Connection, record: DumpRecord, overwrite: boolean): Promise<KeyOutcome> {
  const { key } = record;
  const args: Arg[] = ['RESTORE', key, String(Math.max(record.expireAt, 0)), record.payload];
  if (overwrite) args.push('REPLACE');
  if (record.expireAt > 0) args.push('ABSTTL');
  try {
    await target.send(args);
    return { key, status: 'restored' };
  } catch (err) {
    if (/^BUSYKEY/.test(describeError(err))) return { key, status: 'skipped' };
    return failed(key, err);
  }
}

/** `auto`: dump until the target refuses RESTORE, then type for the refused keys and the rest of the run. */
export async function copyBatchAuto(ctx: CopyContext, keys: readonly Buffer[], onFallback: (reason: string) => void): Promise<KeyOutcome[]> {
  try {
    return await copyBatchByDump(ctx, keys);
  } catch (err) {
    if (!(err instanceof RestoreRefused)) throw err;
    onFallback(err.reason);
    return [...err.settled, ...(await copyBatchByType(ctx, err.unsettled))];
  }
}
