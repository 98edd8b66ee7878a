// Copy by DUMP and RESTORE: one read script per batch on the source, pipelined RESTOREs on the target.
// RESTORE without REPLACE makes skip-existing atomic (BUSYKEY); keys over DUMP_MAX_BYTES go by type in chunks.
import type { Arg, Connection } from './connections.js';
import { describeError } from './connections.js';
import {
  asArray, asNumber, asText, CHUNKED_KEYS_AT_ONCE, failed, flagsFor, isolateFailures, isScriptingRefused, mapLimited,
  READ_BUDGET_BYTES, type CopyContext, type KeyOutcome,
} from './batch.js';
import { copyBatchByType, copyKeyInChunks, readExpireAt } from './copy-type.js';
import { DUMP_READ, DUMP_WRITE, READ_FLAGS, WRITE_FLAGS, withFlags } from './scripts.js';

interface DumpRecord {
  key: Buffer;
  /** -2: the key is gone. */
  expireAt: number;
  /** Empty when the key is over the size limit and must be copied in chunks. */
  payload: Buffer;
}

/** The target cannot take DUMP payloads at all: no RESTORE, or a newer RDB format than it reads. */
export function isRestoreRefused(reason: string): boolean {
  return /unknown command .?restore|NOPERM.*'restore'|can't run this command or subcommand|payload version or checksum are wrong/i.test(reason);
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
  for (let p = 0; p < flat.length; p += 2) {
    records.push({ key: keys[p / 2] as Buffer, expireAt: asNumber(flat[p]), payload: flat[p + 1] as Buffer });
  }
  return records;
}

/** The same read without scripting, for servers that refuse EVAL. */
async function readDumpPlain(source: Connection, key: Buffer, maxBytes: number): Promise<DumpRecord> {
  const expireAt = await readExpireAt(source, key);
  const usage = expireAt === -2 ? 0 : asNumber(await source.send(['MEMORY', 'USAGE', key]));
  const payload = expireAt === -2 || usage > maxBytes ? null : ((await source.send(['DUMP', key])) as Buffer | null);
  return { key, expireAt: payload === null && usage <= maxBytes ? -2 : expireAt, payload: payload ?? Buffer.alloc(0) };
}

async function restoreRecords(
  ctx: CopyContext,
  keys: readonly Buffer[],
  read: readonly (DumpRecord | { error: unknown })[],
): Promise<KeyOutcome[]> {
  const now = Date.now();
  const outcomes: KeyOutcome[] = new Array<KeyOutcome>(read.length);
  const restorable: DumpRecord[] = [];
  const restorableAt: number[] = [];
  const chunked: number[] = [];
  read.forEach((record, i) => {
    const key = keys[i] as Buffer;
    if ('error' in record) outcomes[i] = failed(key, record.error);
    else if (record.expireAt === -2) outcomes[i] = { key, status: 'vanished' };
    // Expired on the way: RESTORE would answer OK and create nothing.
    else if (record.expireAt > 0 && record.expireAt <= now) outcomes[i] = { key, status: 'vanished' };
    else if (record.payload.length === 0) chunked.push(i);
    else {
      restorable.push(record);
      restorableAt.push(i);
    }
  });
  const restored = await restore(ctx, restorable);
  restored.forEach((outcome, j) => (outcomes[restorableAt[j] as number] = outcome));
  const big = await mapLimited(chunked, CHUNKED_KEYS_AT_ONCE, (i) => copyKeyInChunks(ctx, keys[i] as Buffer));
  big.forEach((outcome, j) => (outcomes[chunked[j] as number] = outcome));
  const refused = outcomes.filter((o) => o.status === 'failed' && isRestoreRefused(o.reason));
  if (refused.length > 0) {
    const settled = outcomes.filter((o) => !refused.includes(o));
    throw new RestoreRefused((refused[0] as { reason: string }).reason, settled, refused.map((o) => o.key));
  }
  return outcomes;
}

/** One script call per batch; plain pipelined RESTOREs where the target refuses scripts. */
async function restore(ctx: CopyContext, records: readonly DumpRecord[]): Promise<KeyOutcome[]> {
  if (records.length === 0) return [];
  if (ctx.targetScripts) {
    try {
      return await restoreByScript(ctx.target, records, ctx.settings.overwrite);
    } catch (err) {
      if (!isScriptingRefused(err)) throw err;
      ctx.targetScripts = false;
    }
  }
  return Promise.all(records.map((record) => restoreOne(ctx.target, record, ctx.settings.overwrite)));
}

async function restoreByScript(target: Connection, records: readonly DumpRecord[], overwrite: boolean): Promise<KeyOutcome[]> {
  const script = withFlags(DUMP_WRITE, flagsFor(target, WRITE_FLAGS));
  const byKey = new Map(records.map((r) => [r.key, r]));
  const results = await isolateFailures(
    records.map((r) => r.key),
    async (keys) => {
      const chosen = keys.map((key) => byKey.get(key) as DumpRecord);
      const layout = chosen.map((r) => `${Math.max(r.expireAt, 0)},${r.payload.length};`).join('');
      const payloads = Buffer.concat(chosen.map((r) => r.payload));
      return asArray(await target.evalScript(script, keys, [overwrite ? '1' : '0', layout, payloads]));
    },
  );
  return results.map((result, i): KeyOutcome => {
    const key = (records[i] as DumpRecord).key;
    if (result !== null && typeof result === 'object' && 'error' in result) return failed(key, result.error);
    if (result === 1) return { key, status: 'restored' };
    if (result === 0) return { key, status: 'skipped' };
    return { key, status: 'failed', reason: asText(result) };
  });
}

async function restoreOne(target: Connection, record: DumpRecord, overwrite: boolean): Promise<KeyOutcome> {
  const { key } = record;
  const args: Arg[] = ['RESTORE', key, String(Math.max(record.expireAt, 0)), record.payload];
  if (overwrite) args.push('REPLACE');
  args.push('ABSTTL');
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
