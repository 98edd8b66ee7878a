// What copying one key can come to, and the context every copy method works in.
// Shared by the dump copy, the type copy and the run loop that counts the outcomes.
import { ErrorReply } from '@redis/client';
import type { Connection, Reply } from './net/connections.js';
import { describeError } from './net/connections.js';
import type { Settings } from './settings.js';

export type KeyOutcome =
  | { key: Buffer; status: 'restored' | 'skipped' | 'vanished'; via?: Crossing; dropped?: string }
  | { key: Buffer; status: 'failed'; reason: string };

/**
 * How a key crossed to a target that reads an older RDB version than its payload carries: RESTOREd with the
 * target's version stamp (its encodings are ones the target reads), or written by type (decoded from a file,
 * or read from the source by type). `dropped`
 * names what the target could not hold (hash-field expiries on a server that has none).
 */
export type Crossing = 'restamped' | 'byType';

/** One source node and one target node (the only ones, unless a side is a cluster), for one run. */
export interface CopyContext {
  source: Connection;
  target: Connection;
  settings: Settings;
  /** Shared by every node pair of a run. */
  stats: CopyStats;
  /** Builds of big keys a lost connection or a refusal kept from removing: removed once reconnected, and at the end. */
  abandoned?: Abandoned[];
}

/** A big key's temporary build left on a target node. */
export interface Abandoned {
  target: Connection;
  key: Buffer;
}

export interface CopyStats {
  /** Value bytes sent to the target so far, for the progress line's MB/s. */
  bytesMoved: number;
}

/** Bytes one read call may gather before it returns, bounding memory in flight and server blocking. */
export const READ_BUDGET_BYTES = 4 * 1024 * 1024;
/** Strings longer than this are copied in windows of this size (GETRANGE, APPEND). */
export const STRING_CHUNK_BYTES = 1024 * 1024;

/** A key that cannot be copied for a reason of its own, such as a module type the type copy cannot write. */
export class KeyProblem extends Error {}

/**
 * A key failed because a server answered with an error. Anything else (a lost socket, a bug) is not the
 * key's fault: it is rethrown and ends the run instead of failing every key after it.
 */
export function failed(key: Buffer, err: unknown): KeyOutcome {
  if (!(err instanceof ErrorReply || err instanceof KeyProblem)) throw err;
  return { key, status: 'failed', reason: describeError(err) };
}

/** The server refused to run scripts at all (ACL or a managed service), as opposed to a failure inside one. */
export function isScriptingRefused(err: unknown): boolean {
  return /NOPERM.*'eval'|unknown command .?eval|scripting is disabled/i.test(describeError(err));
}

export function flagsFor(connection: Connection, flags: string): string | undefined {
  return connection.capabilities.scriptFlags ? flags : undefined;
}

export function asArray(reply: Reply): Reply[] {
  if (!Array.isArray(reply)) throw new Error(`unexpected reply ${String(reply)}`);
  return reply;
}

export function asNumber(reply: Reply | undefined): number {
  return typeof reply === 'number' ? reply : Number(String(reply));
}

export function asText(reply: Reply | undefined): string {
  return reply === null || reply === undefined ? '' : String(reply);
}

/** A write script's answer for one key; `chunked` means the key is too big for the batch and goes alone. */
export type WriteAnswer = KeyOutcome | { key: Buffer; status: 'chunked' };

/** Reads a write script's per-key answer: 1 written, 0 skipped, 2 gone, 3 to copy in chunks, or an error text. */
export function answerOf(key: Buffer, reply: Reply | undefined): WriteAnswer {
  switch (reply) {
    case 1:
      return { key, status: 'restored' };
    case 0:
      return { key, status: 'skipped' };
    case 2:
      return { key, status: 'vanished' };
    case 3:
      return { key, status: 'chunked' };
    default:
      return { key, status: 'failed', reason: asText(reply) };
  }
}

/** How many records a batch header holds: one ';' ends each. */
export function recordCount(header: string): number {
  let n = 0;
  for (let i = header.indexOf(';'); i >= 0; i = header.indexOf(';', i + 1)) n++;
  return n;
}

/** Big keys copied in chunks at the same time, per batch: overlaps round trips, bounds memory. */
export const CHUNKED_KEYS_AT_ONCE = 8;

/** Copies, key by key in chunks, what a batch write left for that; the rest are settled already. */
export async function settleChunked(answers: readonly WriteAnswer[], copyAlone: (key: Buffer) => Promise<KeyOutcome>): Promise<KeyOutcome[]> {
  const outcomes = answers.slice() as KeyOutcome[];
  const chunked = answers.flatMap((a, i) => (a.status === 'chunked' ? [i] : []));
  const copied = await mapLimited(chunked, CHUNKED_KEYS_AT_ONCE, (i) => copyAlone((answers[i] as WriteAnswer).key));
  chunked.forEach((index, j) => (outcomes[index] = copied[j] as KeyOutcome));
  return outcomes;
}

/**
 * Runs tasks with at most `limit` at once, keeping results in order. After a failure no new task starts, and
 * the failure is thrown only once the running ones have ended: nothing of this call is still writing when
 * its caller retries (two copies of one big key building at once would corrupt each other).
 */
export async function mapLimited<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const index = next++;
      try {
        results[index] = await task(items[index] as T);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
  return results;
}
