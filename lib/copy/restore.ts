// Copy by DUMP and RESTORE: one read script per batch on the source, one RESTORE script on the target, the
// payloads passed through untouched (big keys go by type in chunks); an .rdb file's values as pipelined RESTOREs.
import { ErrorReply } from '@redis/client';
import type { PipeReply, RespWriter } from '../net/resp.js';
import { copyBatchByType, copyKeyInChunks, readExpireAt } from './by-type.js';
import { FOOTER_BYTES, payloadChecksumOk, payloadRdbVersion, payloadTypeByte, restampPayload, writeDumpPayload } from '../rdb/payload.js';
import { decodeValue } from '../rdb/decode.js';
import { RdbFormatError } from '../rdb/errors.js';
import { writeDecoded } from './decoded.js';
import { asArray, asNumber, asText } from '../net/reply.js';
import { DUMP_READ, DUMP_WRITE, type DumpRecord, flagsFor, parseDumpHeader, READ_FLAGS, withFlags, WRITE_FLAGS } from '../net/scripts.js';
import { type Connection, isScriptingRefused } from '../net/connections.js';
import { mapLimited } from '../concurrency.js';
import { type Crossing, type KeyOutcome, READ_BUDGET_BYTES, type StoredValue } from '../records.js';
import { answerOf, type CopyContext, type CopyStats, failed, recordCount, settleChunked, type WriteAnswer } from './context.js';
import { OLDEST_RDB_VERSION, RDB_TYPE, rdbVersionReadBy, typeReadableBy } from '../rdb/types.js';

/** What a DUMP read returns for the first keys of a batch, in the layout DUMP_WRITE takes (lib/net/scripts.ts). */
interface DumpBatch {
  keys: Buffer[];
  header: string;
  payloads: Buffer;
}

/** The target cannot take DUMP payloads at all: no RESTORE command, or not for this user. */
function isRestoreRefused(reason: string): boolean {
  return /unknown command .?restore|NOPERM.*'restore'|can't run this command or subcommand/i.test(reason);
}

/** RESTORE's answer to a payload of a newer RDB version than the target reads (or a corrupt one). */
const VERSION_REFUSED = /payload version or checksum are wrong/i;

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
    const batch = await readDumps(ctx, rest);
    rest = rest.slice(batch.keys.length);
    try {
      outcomes.push(...(await restoreBatch(ctx, batch)));
    } catch (err) {
      if (err instanceof RestoreRefused) throw new RestoreRefused(err.reason, [...outcomes, ...err.settled], [...err.unsettled, ...rest]);
      throw err;
    }
  }
  return outcomes;
}

async function readDumps(ctx: CopyContext, keys: readonly Buffer[]): Promise<DumpBatch> {
  if (ctx.source.scriptsAllowed) {
    try {
      return await readDumpsByScript(ctx.source, keys, ctx.settings.dumpMaxBytes);
    } catch (err) {
      if (!isScriptingRefused(err)) throw err;
      ctx.source.scriptsAllowed = false;
    }
  }
  return readDumpsPlain(ctx.source, keys.slice(0, 100), ctx.settings.dumpMaxBytes);
}

async function readDumpsByScript(source: Connection, keys: readonly Buffer[], maxBytes: number): Promise<DumpBatch> {
  const script = withFlags(DUMP_READ, flagsFor(source, READ_FLAGS));
  const args = [String(READ_BUDGET_BYTES), String(maxBytes), source.capabilities.expireTime ? '1' : '0'];
  const [header, payloads] = asArray(await source.evalScript(script, keys, args));
  const text = asText(header);
  return { keys: keys.slice(0, recordCount(text)), header: text, payloads: payloads as Buffer };
}

/** The same read with plain commands, for servers that refuse EVAL; same layout. */
async function readDumpsPlain(source: Connection, keys: readonly Buffer[], maxBytes: number): Promise<DumpBatch> {
  const records = await mapLimited(keys, keys.length, async (key): Promise<[number, Buffer]> => {
    try {
      const expireAt = await readExpireAt(source, key);
      if (expireAt === -2) return [-2, Buffer.alloc(0)];
      if (asNumber(await source.send(['MEMORY', 'USAGE', key])) > maxBytes) return [expireAt, Buffer.alloc(0)];
      const payload = (await source.send(['DUMP', key])) as Buffer | null;
      return payload === null ? [-2, Buffer.alloc(0)] : [expireAt, payload];
    } catch (err) {
      const outcome = failed(key, err);
      return [-3, Buffer.from(outcome.status === 'failed' ? outcome.reason : '')];
    }
  });
  return {
    keys: [...keys],
    header: records.map(([at, payload]) => `${at},${payload.length};`).join(''),
    payloads: Buffer.concat(records.map(([, payload]) => payload)),
  };
}

/** Restores a read batch, then copies its big keys in chunks; throws RestoreRefused if the target cannot RESTORE. */
async function restoreBatch(ctx: CopyContext, batch: DumpBatch): Promise<KeyOutcome[]> {
  const answers = await crossVersions(ctx, batch, await restore(ctx.target, ctx.settings.overwrite, batch));
  ctx.stats.bytesMoved += batch.payloads.length;
  const outcomes = await settleChunked(answers, (key) => copyKeyInChunks(ctx, key));
  const refused = outcomes.filter((o) => o.status === 'failed' && isRestoreRefused(o.reason));
  if (refused.length > 0) {
    const reason = refused[0]?.status === 'failed' ? refused[0].reason : '';
    throw new RestoreRefused(reason, outcomes.filter((o) => !refused.includes(o)), refused.map((o) => o.key));
  }
  return outcomes;
}

/**
 * Keys whose payloads the target refused for their RDB version (a newer source server): a payload whose CRC
 * holds and whose type byte the target reads is RESTOREd again with the target's version stamp; any other key
 * is copied by type from the source. One key's refusal never switches the whole run. A module value refused
 * gets a reason that names its module.
 */
async function crossVersions(ctx: CopyContext, batch: DumpBatch, answers: WriteAnswer[]): Promise<WriteAnswer[]> {
  const refused = answers.flatMap((a, i) => (a.status === 'failed' && VERSION_REFUSED.test(a.reason) ? [i] : []));
  if (!answers.some((a) => a.status === 'failed')) return answers;
  const targetVersion = rdbVersionReadBy(ctx.target.capabilities.version);
  const records = parseDumpHeader(batch.header, batch.payloads);
  const restampable = refused.filter((i) => {
    const payload = (records[i] as DumpRecord).payload;
    return targetVersion !== undefined && payloadChecksumOk(payload) && payloadRdbVersion(payload) > targetVersion && typeReadableBy(payloadTypeByte(payload), targetVersion);
  });
  const byType = refused.filter((i) => !restampable.includes(i));
  const again = restampable.map((i) => ({ key: batch.keys[i] as Buffer, record: records[i] as DumpRecord }));
  const restamped = again.map(({ record }) => restampPayload(record.payload, targetVersion as number));
  const [restoredAgain, copied] = await Promise.all([
    again.length > 0 ? restore(ctx.target, ctx.settings.overwrite, { keys: again.map((a) => a.key), header: again.map((a, j) => `${a.record.expireAt},${(restamped[j] as Buffer).length};`).join(''), payloads: Buffer.concat(restamped) }) : [],
    byType.length > 0 ? copyBatchByType(ctx, byType.map((i) => batch.keys[i] as Buffer)) : [],
  ]);
  const out = [...answers];
  restampable.forEach((index, j) => (out[index] = crossed(restoredAgain[j] as WriteAnswer, 'restamped')));
  byType.forEach((index, j) => (out[index] = crossed(copied[j] as KeyOutcome, 'byType')));
  // Named after the last attempt: a module value restamped for an older target fails there as elsewhere.
  return out.map((a, i) => {
    const payload = (records[i] as DumpRecord).payload;
    return a.status === 'failed' && payload[0] === RDB_TYPE.MODULE_2 ? { ...a, reason: moduleRefusal(payload.subarray(0, payload.length - FOOTER_BYTES), a.reason, ctx.target) } : a;
  });
}

/** RESTORE's own words for a module value it cannot load ("Bad data format") do not say why: the module is named. */
function moduleRefusal(valueBytes: Buffer, reason: string, target: Connection): string {
  let name = 'unknown';
  try {
    const value = decodeValue(valueBytes);
    if (value.type === 'module') name = value.value.moduleType;
  } catch (err) {
    if (!(err instanceof RdbFormatError)) throw err;
  }
  return `a value of module type ${name}, which ${target.label} cannot load (is the module loaded there?): ${reason}`;
}

function crossed<T extends WriteAnswer>(answer: T, via: Crossing): T {
  return answer.status === 'restored' ? { ...answer, via } : answer;
}

/** One script call per batch; plain RESTOREs where the target refuses scripts. */
async function restore(target: Connection, overwrite: boolean, batch: DumpBatch): Promise<WriteAnswer[]> {
  if (target.scriptsAllowed) {
    try {
      const script = withFlags(DUMP_WRITE, flagsFor(target, WRITE_FLAGS));
      const replies = asArray(await target.evalScript(script, batch.keys, [overwrite ? '1' : '0', batch.header, batch.payloads]));
      return batch.keys.map((key, i) => answerOf(key, replies[i]));
    } catch (err) {
      if (!isScriptingRefused(err)) return batch.keys.map((key) => failed(key, err));
      target.scriptsAllowed = false;
    }
  }
  return restorePlain(target, batch, overwrite);
}

/**
 * Values an .rdb file holds, RESTOREd in one pipeline: each stamped with the newest RDB version both the file
 * and the target read (a payload's encodings are fixed by its type byte, so an older stamp is honest when the
 * target knows that byte). A value of a type the target cannot read is decoded and written by type.
 */
export async function restoreStored(ctx: Omit<CopyContext, 'source'>, keys: readonly Buffer[], stored: readonly StoredValue[]): Promise<KeyOutcome[]> {
  const { target } = ctx;
  const targetVersion = rdbVersionReadBy(target.capabilities.version) ?? OLDEST_RDB_VERSION;
  const outcomes = new Array<KeyOutcome>(keys.length);
  const sent: FileRestore[] = [];
  const decoded: { index: number; key: Buffer; stored: StoredValue }[] = [];
  keys.forEach((key, index) => {
    const value = stored[index] as StoredValue;
    if (!typeReadableBy(value.type, targetVersion)) {
      decoded.push({ index, key, stored: value });
      return;
    }
    sent.push({ index, key, value, version: Math.min(value.rdbVersion, targetVersion) });
  });
  const [answers, written] = await Promise.all([
    sent.length > 0 ? restorePipelined(target, ctx.settings.overwrite, sent, ctx.stats) : [],
    decoded.length > 0 ? writeDecoded(ctx, decoded) : [],
  ]);
  answers.forEach((answer, j) => {
    const { index, key, value, version } = sent[j] as FileRestore;
    if (answer.status === 'failed' && value.type === RDB_TYPE.MODULE_2) outcomes[index] = { key, status: 'failed', reason: moduleRefusal(value.value, answer.reason, target) };
    else outcomes[index] = value.rdbVersion > version ? crossed(answer, 'restamped') : answer;
  });
  written.forEach((outcome, j) => (outcomes[(decoded[j] as (typeof decoded)[number]).index] = outcome));
  return outcomes;
}

/** A file value to RESTORE: where its outcome goes, and the RDB version its payload is stamped with. */
interface FileRestore {
  index: number;
  key: Buffer;
  value: StoredValue;
  version: number;
}

const RESTORE_ARG = Buffer.from('$7\r\nRESTORE\r\n');
const TAIL = Buffer.from('$6\r\nABSTTL\r\n');
const REPLACE_TAIL = Buffer.from('$7\r\nREPLACE\r\n$6\r\nABSTTL\r\n');
/** Per command, beyond key and payload: the fixed arguments, lengths, the expiry and the footer. */
const COMMAND_OVERHEAD = 100;

/**
 * Plain pipelined `RESTORE key <at> payload [REPLACE] ABSTTL`, encoded by hand into one buffer with each
 * payload built in place: atomic per key (BUSYKEY without REPLACE is a skip), no script for the target to run
 * (half its CPU), and no client CPU per command. A key already expired by our clock is not sent (vanished).
 */
async function restorePipelined(target: Connection, overwrite: boolean, sent: readonly FileRestore[], stats: CopyStats): Promise<KeyOutcome[]> {
  const now = Date.now();
  const live = sent.filter(({ value: { expireAt: at } }) => !(at > 0 && at <= now));
  let bytes = 0;
  for (const { key, value } of live) bytes += key.length + value.value.length + COMMAND_OVERHEAD;
  const writer = target.writer(bytes);
  for (const { key, value, version } of live) {
    const length = value.value.length + FOOTER_BYTES;
    restoreStart(writer, key, value.expireAt, length, overwrite);
    writeDumpPayload(value.value, version, writer.buf, writer.at);
    writer.at += length;
    restoreEnd(writer, overwrite);
    stats.bytesMoved += length;
  }
  const replies = await target.sendPipelined(writer);
  let next = 0;
  return sent.map(({ key, value: { expireAt: at } }): KeyOutcome => (at > 0 && at <= now ? { key, status: 'vanished' } : restoreAnswer(key, replies[next++])));
}

/** DUMP_WRITE's decisions, made here, for targets that refuse EVAL: the RESTOREs pipelined as for a file. */
async function restorePlain(target: Connection, batch: DumpBatch, overwrite: boolean): Promise<WriteAnswer[]> {
  const now = Date.now();
  const records = parseDumpHeader(batch.header, batch.payloads);
  const answers = new Array<WriteAnswer | undefined>(batch.keys.length);
  let bytes = batch.payloads.length;
  batch.keys.forEach((key, i) => {
    const { expireAt: at, payload } = records[i] as DumpRecord;
    if (at === -3) answers[i] = { key, status: 'failed', reason: payload.toString() };
    else if (at === -2 || (at > 0 && at <= now)) answers[i] = { key, status: 'vanished' };
    else if (payload.length === 0) answers[i] = { key, status: 'chunked' };
    else bytes += key.length + COMMAND_OVERHEAD;
  });
  const writer = target.writer(bytes);
  batch.keys.forEach((key, i) => {
    if (answers[i]) return;
    const { expireAt: at, payload } = records[i] as DumpRecord;
    restoreStart(writer, key, at, payload.length, overwrite);
    writer.buf.set(payload, writer.at);
    writer.at += payload.length;
    restoreEnd(writer, overwrite);
  });
  const replies = await target.sendPipelined(writer);
  let next = 0;
  return batch.keys.map((key, i): WriteAnswer => answers[i] ?? restoreAnswer(key, replies[next++]));
}

/** `RESTORE key <at> $<length>`: the caller writes the payload's `length` bytes at `writer.at`, then calls restoreEnd. */
function restoreStart(writer: RespWriter, key: Buffer, expireAt: number, length: number, overwrite: boolean): void {
  writer.begin(overwrite ? 6 : 5);
  writer.reserve(RESTORE_ARG.length);
  writer.at += RESTORE_ARG.copy(writer.buf, writer.at);
  writer.bulk(key);
  writer.integer(Math.max(expireAt, 0));
  writer.bulkStart(length);
}

/** The payload's end, then `[REPLACE] ABSTTL`. */
function restoreEnd(writer: RespWriter, overwrite: boolean): void {
  writer.bulkEnd();
  const tail = overwrite ? REPLACE_TAIL : TAIL;
  writer.reserve(tail.length);
  writer.at += tail.copy(writer.buf, writer.at);
}

/** A RESTORE's reply: OK, BUSYKEY (the key exists: skipped), or the error for this key alone. */
function restoreAnswer(key: Buffer, reply: PipeReply | undefined): KeyOutcome {
  if (!(reply instanceof ErrorReply)) return { key, status: 'restored' };
  if (/^BUSYKEY/.test(reply.message)) return { key, status: 'skipped' };
  return { key, status: 'failed', reason: reply.message };
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
