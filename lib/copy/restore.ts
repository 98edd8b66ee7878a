// Writing DUMP payloads with RESTORE: a source's batch by one script call (or pipelined RESTOREs where scripts are
// refused), each payload passed through untouched or restamped for an older target; an .rdb file's values as
// pipelined RESTOREs, stamped with the newest version both sides read. Nothing here reads the source.
import { ErrorReply } from '@redis/client';
import type { PipeReply, RespWriter } from '../net/resp.js';
import { FOOTER_BYTES, payloadChecksumOk, payloadRdbVersion, payloadTypeByte, restampPayload, writeDumpPayload } from '../rdb/payload.js';
import { decodeValue } from '../rdb/decode.js';
import { RdbFormatError } from '../rdb/errors.js';
import { writeDecoded } from './decoded.js';
import { asArray } from '../net/reply.js';
import { DUMP_WRITE, type DumpRecord, flagsFor, parseDumpHeader, withFlags, WRITE_FLAGS } from '../net/scripts.js';
import { type Connection, isScriptingRefused } from '../net/connections.js';
import type { Crossing, DumpBatch, KeyOutcome, StoredValue } from '../records.js';
import { answerOf, type CopyStats, failed, type WriteAnswer, type WriteContext } from './context.js';
import { RDB_TYPE, stampFor, typeReadableBy } from '../rdb/types.js';

/** The RDB version assumed of a target whose INFO does not tell (Redis 5.0's): values of newer types are decoded rather than risked. */
const VERSION_WHEN_UNTOLD = 9;

/** A DUMP write's answer for one key: as any write's, or `byType` for a payload the target cannot read, to be copied by type. */
export type DumpAnswer = WriteAnswer | { key: Buffer; status: 'byType' };

/** The target cannot take DUMP payloads at all: no RESTORE command, or not for this user. */
export function isRestoreRefused(reason: string): boolean {
  return /unknown command .?restore|NOPERM.*'restore'|can't run this command or subcommand/i.test(reason);
}

/** RESTORE's answer to a payload of a newer RDB version than the target reads (or a corrupt one). */
const VERSION_REFUSED = /payload version or checksum are wrong/i;

/**
 * RESTOREs a read batch, each key once at most. Payloads newer than the target reads are fitted first: one whose
 * CRC holds and whose type byte the target reads is restamped with the target's version; any other is answered
 * `byType`, for the copy to read by type, as is a payload the target still refuses for its version (a target whose
 * version INFO did not tell). One key's refusal never switches the whole run.
 */
export async function writeDumps(ctx: WriteContext, batch: DumpBatch): Promise<DumpAnswer[]> {
  const fitted = fitToTarget(batch, ctx.target.capabilities.rdbVersion);
  const answers = await restore(ctx.target, ctx.settings.overwrite, fitted.batch);
  ctx.stats.bytesMoved += fitted.batch.payloads.length;
  const out = new Array<DumpAnswer>(batch.keys.length);
  fitted.sent.forEach((index, j) => {
    const answer = answers[j] as WriteAnswer;
    if (answer.status === 'failed' && VERSION_REFUSED.test(answer.reason)) out[index] = { key: answer.key, status: 'byType' };
    else out[index] = fitted.restamped.has(index) ? crossed(answer, 'restamped') : answer;
  });
  for (const index of fitted.byType) out[index] = { key: batch.keys[index] as Buffer, status: 'byType' };
  return out;
}

/** A batch cut to what the target reads: the sub-batch to send, which keys it holds, and which go by type instead. */
interface FittedBatch {
  batch: DumpBatch;
  /** Index in the read batch of each key sent. */
  sent: number[];
  /** Of those, the ones whose payload was restamped. */
  restamped: Set<number>;
  byType: number[];
}

/** The batch as the target takes it, learnt from its INFO once: untouched unless some payload is newer than it reads. */
function fitToTarget(batch: DumpBatch, targetVersion: number | undefined): FittedBatch {
  const untouched = (): FittedBatch => ({ batch, sent: batch.keys.map((_, i) => i), restamped: new Set(), byType: [] });
  if (targetVersion === undefined || (batch.rdbVersion !== undefined && stampFor(batch.rdbVersion, targetVersion) === batch.rdbVersion)) return untouched();
  const fitted: FittedBatch = { batch, sent: [], restamped: new Set(), byType: [] };
  const records: DumpRecord[] = [];
  parseDumpHeader(batch.header, batch.payloads).forEach((record, index) => {
    const fit = fitRecord(record, targetVersion);
    if (fit === 'byType') return void fitted.byType.push(index);
    if (fit !== record) fitted.restamped.add(index);
    records.push(fit);
    fitted.sent.push(index);
  });
  if (fitted.restamped.size === 0 && fitted.byType.length === 0) return untouched();
  const keys = fitted.sent.map((index) => batch.keys[index] as Buffer);
  const header = records.map(({ expireAt, payload }) => `${expireAt},${payload.length};`).join('');
  return { ...fitted, batch: { keys, header, payloads: Buffer.concat(records.map((r) => r.payload)) } };
}

/**
 * One record as the target takes it: as read (gone, an error, a big key, or a stamp the target reads), restamped
 * (its CRC holds and the target reads its type byte), or `byType`.
 */
function fitRecord(record: DumpRecord, targetVersion: number): DumpRecord | 'byType' {
  const { expireAt, payload } = record;
  if ((expireAt < 0 && expireAt !== -1) || payload.length === 0) return record;
  const written = payloadRdbVersion(payload);
  const stamp = stampFor(written, targetVersion);
  if (stamp === written) return record;
  if (!payloadChecksumOk(payload) || !typeReadableBy(payloadTypeByte(payload), targetVersion, written)) return 'byType';
  return { expireAt, payload: restampPayload(payload, stamp) };
}

/** A module value whose last attempt failed gets a reason that names its module; RESTORE's own words do not say why. */
export function nameModuleRefusals<T extends WriteAnswer>(batch: DumpBatch, answers: T[], target: Connection): T[] {
  if (!answers.some((a) => a.status === 'failed')) return answers;
  const records = parseDumpHeader(batch.header, batch.payloads);
  return answers.map((a, i) => {
    const payload = (records[i] as DumpRecord).payload;
    return a.status === 'failed' && payload[0] === RDB_TYPE.MODULE_2 ? { ...a, reason: moduleRefusal(payload.subarray(0, payload.length - FOOTER_BYTES), a.reason, target) } : a;
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

export function crossed<T extends WriteAnswer>(answer: T, via: Crossing): T {
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
 * Values that came with their keys (an .rdb file, a replica's snapshot), RESTOREd in one pipeline: each stamped
 * with the newest RDB version both the source and the target read (a payload's encodings are fixed by its type
 * byte, so an older stamp is honest when the target knows that byte). A value of a type the target cannot read,
 * one past DUMP_MAX_BYTES, or every value once `allByType` (the target refused RESTORE), is decoded and written by type.
 */
export async function restoreStored(ctx: WriteContext, keys: readonly Buffer[], stored: readonly StoredValue[], allByType = false): Promise<KeyOutcome[]> {
  const { target } = ctx;
  const targetVersion = target.capabilities.rdbVersion ?? VERSION_WHEN_UNTOLD;
  const outcomes = new Array<KeyOutcome>(keys.length);
  // Indexes, not an object per key: this is the path of every key of a file.
  const sent: number[] = [];
  const decoded: { index: number; key: Buffer; stored: StoredValue }[] = [];
  for (let index = 0; index < keys.length; index++) {
    const value = stored[index] as StoredValue;
    // Past DUMP_MAX_BYTES a value goes by type in chunks, as a server's big key does: no RESTORE that size. A
    // module's value has no other way than RESTORE.
    const big = value.value.length > ctx.settings.dumpMaxBytes && value.type !== RDB_TYPE.MODULE_2;
    if (allByType || big || !typeReadableBy(value.type, targetVersion, value.rdbVersion)) decoded.push({ index, key: keys[index] as Buffer, stored: value });
    else sent.push(index);
  }
  const batch: FileBatch = { keys, stored, sent, targetVersion };
  const [, written] = await Promise.all([
    sent.length > 0 ? restorePipelined(target, ctx.settings.overwrite, batch, ctx.stats, outcomes) : undefined,
    decoded.length > 0 ? writeDecoded(ctx, decoded) : [],
  ]);
  written.forEach((outcome, j) => (outcomes[(decoded[j] as (typeof decoded)[number]).index] = outcome));
  return outcomes;
}

/** A file batch's keys to RESTORE: their indexes in it, and the target's RDB version, which sets each payload's stamp. */
interface FileBatch {
  keys: readonly Buffer[];
  stored: readonly StoredValue[];
  sent: readonly number[];
  targetVersion: number;
}

const RESTORE_ARG = Buffer.from('$7\r\nRESTORE\r\n');
const TAIL = Buffer.from('$6\r\nABSTTL\r\n');
const REPLACE_TAIL = Buffer.from('$7\r\nREPLACE\r\n$6\r\nABSTTL\r\n');
/** Per command, beyond key and payload: the fixed arguments, lengths, the expiry and the footer. */
export const COMMAND_OVERHEAD = 100;

/** An expiry that has passed by our clock (0 and -1: none). */
const expiredBy = (expireAt: number, now: number): boolean => expireAt > 0 && expireAt <= now;

/**
 * Plain pipelined `RESTORE key <at> payload [REPLACE] ABSTTL`, encoded by hand into one buffer with each
 * payload built in place: atomic per key (BUSYKEY without REPLACE is a skip), no script for the target to run
 * (half its CPU), and no client CPU per command. A key already expired by our clock is not sent (vanished). Each
 * key's outcome goes into `outcomes` at its index: a restamped payload's says so, a refused module value names its module.
 */
async function restorePipelined(target: Connection, overwrite: boolean, batch: FileBatch, stats: CopyStats, outcomes: KeyOutcome[]): Promise<void> {
  const { keys, stored, sent, targetVersion } = batch;
  const now = Date.now();
  let bytes = 0;
  for (const index of sent) bytes += (keys[index] as Buffer).length + (stored[index] as StoredValue).value.length + COMMAND_OVERHEAD;
  const writer = target.writer(bytes);
  for (const index of sent) {
    const value = stored[index] as StoredValue;
    if (!expiredBy(value.expireAt, now)) stats.bytesMoved += writeStoredRestore(writer, keys[index] as Buffer, value, stampFor(value.rdbVersion, targetVersion), overwrite);
  }
  const replies = await target.sendPipelined(writer);
  let next = 0;
  for (const index of sent) {
    const key = keys[index] as Buffer;
    const value = stored[index] as StoredValue;
    if (expiredBy(value.expireAt, now)) {
      outcomes[index] = { key, status: 'vanished' };
      continue;
    }
    const answer = restoreAnswer(key, replies[next++]);
    if (answer.status === 'failed' && value.type === RDB_TYPE.MODULE_2) outcomes[index] = { key, status: 'failed', reason: moduleRefusal(value.value, answer.reason, target) };
    else outcomes[index] = stampFor(value.rdbVersion, targetVersion) !== value.rdbVersion ? crossed(answer, 'restamped') : answer;
  }
}

/**
 * One `RESTORE key <at> payload [REPLACE] ABSTTL` for a value that came with its key, the payload built in place
 * in the writer (stamped `version`, its CRC computed as it is written); returns the payload's length.
 */
export function writeStoredRestore(writer: RespWriter, key: Buffer, value: StoredValue, version: number, overwrite: boolean): number {
  const length = value.value.length + FOOTER_BYTES;
  restoreStart(writer, key, value.expireAt, length, overwrite);
  writeDumpPayload(value.value, version, writer.buf, writer.at);
  writer.at += length;
  restoreEnd(writer, overwrite);
  return length;
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
    else if (at === -2 || expiredBy(at, now)) answers[i] = { key, status: 'vanished' };
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
  writer.raw(RESTORE_ARG);
  writer.bulk(key);
  writer.integer(Math.max(expireAt, 0));
  writer.bulkStart(length);
}

/** The payload's end, then `[REPLACE] ABSTTL`. */
function restoreEnd(writer: RespWriter, overwrite: boolean): void {
  writer.bulkEnd();
  writer.raw(overwrite ? REPLACE_TAIL : TAIL);
}

/** A RESTORE's reply: OK, BUSYKEY (the key exists: skipped), or the error for this key alone. */
function restoreAnswer(key: Buffer, reply: PipeReply | undefined): KeyOutcome {
  if (!(reply instanceof ErrorReply)) return { key, status: 'restored' };
  if (/^BUSYKEY/.test(reply.message)) return { key, status: 'skipped' };
  return { key, status: 'failed', reason: reply.message };
}
