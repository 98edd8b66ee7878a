// The context every copy method works in, and the helpers they share: a key's failure, a write script's
// per-key answer, and the big keys a batch leaves to be copied alone in chunks.
import { ErrorReply } from '@redis/client';
import { mapLimited } from '../concurrency.js';
import { describeError, type Connection } from '../net/connections.js';
import { asText, type Reply } from '../net/reply.js';
import { KeyProblem, type KeyNames, type KeyOutcome } from '../records.js';
import type { Settings } from '../settings.js';

/** What a writer works with: one target node, and the run's settings and shared tallies. It never reads the source. */
export interface WriteContext {
  target: Connection;
  settings: Settings;
  /** Shared by every node of a run. */
  stats: CopyStats;
  /**
   * Names of big keys' builds a lost connection or a refusal kept from removing: removed once reconnected, and at
   * the end, on the node that serves them then (a failover may have promoted the replica that holds one).
   */
  abandoned?: Buffer[];
  /** Waits, between a big key's chunks, while the bytes limit (MAX_BYTES_PER_SECOND) is spent. */
  throttle?: () => Promise<void>;
}

export interface CopyStats {
  /** Value bytes sent to the target so far, for the progress line's MB/s. */
  bytesMoved: number;
}

/**
 * A key failed because a server answered with an error. Anything else (a lost socket, a bug) is not the
 * key's fault: it is rethrown and ends the run instead of failing every key after it.
 */
export function failed(key: Buffer, err: unknown): KeyOutcome {
  if (!(err instanceof ErrorReply || err instanceof KeyProblem)) throw err;
  return { key, status: 'failed', reason: describeError(err) };
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

/**
 * A write under the target's names (KEY_PREFIX_STRIP, KEY_PREFIX_ADD): `write` gets the keys as the target names
 * them, one answer per key in order; the answers come back under the source's names, as the run counts and logs them.
 */
export async function underTargetNames<T extends { key: Buffer }>(names: KeyNames, keys: readonly Buffer[], write: (targetKeys: Buffer[]) => Promise<T[]>): Promise<T[]> {
  if (!names.renames) return write([...keys]);
  const answers = await write(keys.map((key) => names.toTarget(key)));
  return answers.map((answer, i) => ({ ...answer, key: keys[i] as Buffer }));
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
