// Writing by type: small keys written whole, a batch per script call; big keys built in bounded chunks under a
// temporary name and moved into place, with a hash's field expiries and a stream's groups and pending entries
// recreated from what the source gives (lib/sources/server.ts, or a value decoded from a file).
import { randomBytes } from 'node:crypto';
import { ErrorReply } from '@redis/client';
import { keySlot, slotTag } from '../net/cluster.js';
import { type Arg, asArray } from '../net/reply.js';
import { exists, type Connection } from '../net/connections.js';
import { flagsFor, MOVE_INTO_PLACE, TYPE_WRITE, withFlags, WRITE_FLAGS } from '../net/scripts.js';
import { KeyProblem, type ChunkedContent, type ChunkReader, type KeyOutcome, type StreamState, type TypedBatch } from '../records.js';
import { answerOf, failed, type WriteAnswer, type WriteContext } from './context.js';

/** A key as read for writing: values already in write order. */
export interface TypedRecord {
  key: Buffer;
  kind: string;
  expireAt: number;
  /** A relative expiry in ms instead of expireAt (keys being built: the target's clock counts). */
  expireIn?: number;
  values: Buffer[];
}

export type WriteMode = 'create' | 'replace' | 'append';

/** One TYPE_WRITE call; a refusal of the whole call fails each of its keys with the reason. */
export async function writeTypedBatch(target: Connection, mode: WriteMode, batch: TypedBatch): Promise<WriteAnswer[]> {
  if (batch.keys.length === 0) return [];
  const script = withFlags(TYPE_WRITE, flagsFor(target, WRITE_FLAGS));
  try {
    const replies = asArray(await target.evalScript(script, batch.keys, [mode, batch.header, batch.lengths, batch.values]));
    return batch.keys.map((key, i) => answerOf(key, replies[i]));
  } catch (err) {
    return batch.keys.map((key) => failed(key, err));
  }
}

/** Writes records read with plain commands (chunks of big keys), in TYPE_WRITE's layout. */
export async function writeTyped(target: Connection, mode: WriteMode, records: readonly TypedRecord[]): Promise<WriteAnswer[]> {
  const values = records.flatMap((r) => r.values);
  return writeTypedBatch(target, mode, {
    keys: records.map((r) => r.key),
    header: records.map((r) => `${r.kind},${r.expireIn === undefined ? r.expireAt : `+${r.expireIn}`},${r.values.length};`).join(''),
    lengths: values.map((v) => v.length).join(','),
    values: Buffer.concat(values),
  });
}

/** How long a key being built may live if the run dies; renewed with every chunk, so only an abandoned build expires. */
const BUILD_EXPIRY_MS = 60 * 60 * 1000;
/**
 * Failures that mean the key read was replaced on the source mid-copy (deleted and written again, renamed over,
 * renamed away and back): XSETID refusing a stream whose last ID or count of entries ever added went back below
 * what the build holds, or a read that found no key where one is again.
 */
const REPLACED_MEANWHILE = /XSETID is smaller than the target stream top item|entries_added specified in XSETID is smaller than the target stream length|no such key/i;
const REPLACED_COPY_ATTEMPTS = 3;

/**
 * Copies one big key in bounded chunks from `from` (a source server, or a value decoded from a file), built under
 * a temporary name (see buildInChunks). Nothing is read of a key the target has already, unless overwriting.
 */
export async function writeInChunks(ctx: WriteContext, key: Buffer, from: ChunkReader): Promise<KeyOutcome> {
  for (let attempt = 1; ; attempt++) {
    const outcome = await writeInChunksOnce(ctx, key, from);
    // A key replaced on the source while its chunks were read (deleted and written again, renamed away and back):
    // a stream's last ID went back below what was copied, or a read found no key where there is one again. The
    // build is gone; the key is copied again from the start.
    if (outcome.status !== 'failed' || !REPLACED_MEANWHILE.test(outcome.reason) || attempt >= REPLACED_COPY_ATTEMPTS) return outcome;
  }
}

async function writeInChunksOnce(ctx: WriteContext, key: Buffer, from: ChunkReader): Promise<KeyOutcome> {
  let outcome: KeyOutcome;
  // Read under the source's name, written under the target's (KEY_PREFIX_*), counted under the source's.
  const targetKey = ctx.settings.names.toTarget(key);
  try {
    const found = await from.open(key);
    if (!found) return { key, status: 'vanished' };
    // Nothing is read for a key that is there already; the final RENAMENX still decides, atomically.
    if (!ctx.settings.overwrite && (await exists(ctx.target, targetKey))) return { key, status: 'skipped' };
    outcome = { ...(await buildInChunks(ctx, targetKey, await found.content())), key };
  } catch (err) {
    outcome = failed(key, err);
  }
  return outcome.status === 'failed' && (await from.goneMeanwhile(key, outcome.reason)) ? { key, status: 'vanished' } : outcome;
}

/** What a hash lost on a target with no field expiries, for the log. */
export function fieldExpiriesDropped(count: number, target: Connection): string {
  return `${count} hash-field ${count === 1 ? 'expiry' : 'expiries'} (${target.label} has no field expiries: Redis 7.4 or later has)`;
}

/**
 * Builds one key from its chunks under a temporary name in the key's own hash slot (see buildingName) that
 * expires by itself if the run dies. Only a complete key is moved into place, in one atomic step with its
 * final expiry: RENAMENX in skip-existing mode, RENAME when overwriting. A killed run therefore leaves no
 * partial key under the real name, and a rerun copies the key whole.
 */
export async function buildInChunks(ctx: WriteContext, key: Buffer, content: ChunkedContent): Promise<KeyOutcome> {
  const { target, settings } = ctx;
  // A name of its own for each attempt: two copies of one key (a retry, a key SCAN returned twice) never mix.
  const building = buildingName(key, randomBytes(4).toString('hex'));
  let written = false;
  let dropped = 0;
  try {
    let mode: WriteMode = 'create';
    for await (const values of content.chunks) {
      await ctx.throttle?.();
      const [answer] = await writeTyped(target, mode, [{ key: building, kind: content.kind, expireAt: -1, expireIn: BUILD_EXPIRY_MS, values }]);
      written = true;
      ctx.stats.bytesMoved += values.reduce((sum, v) => sum + v.length, 0);
      if (answer?.status !== 'restored') return await dropBuilding(ctx, building, { ...chunkOutcome(answer), key });
      if (content.fieldExpiries) dropped += await copyFieldExpiries(target, building, values, content.fieldExpiries);
      mode = 'append';
    }
    if (!written || !(await content.stillThere())) return await dropBuilding(ctx, building, { key, status: 'vanished' });
    if (content.streamState) await writeStreamState(target, building, await content.streamState(), settings.chunkSize);
    const placed = await moveIntoPlace(target, building, key, content.expireAt, settings.overwrite);
    // Refused (the cluster down, the slot moved): the key is tried again under a new build name.
    if (placed.status === 'failed') return await dropBuilding(ctx, building, placed);
    return dropped > 0 && placed.status === 'restored' ? { ...placed, dropped: fieldExpiriesDropped(dropped, target) } : placed;
  } catch (err) {
    // Even with no chunk confirmed: a chunk whose reply was lost may have been written. Where the connection
    // is gone, the build is removed once the run has reconnected (else it expires).
    await dropBuilding(ctx, building, { key, status: 'vanished' }).catch(() => ctx.abandoned?.push(building));
    return failed(key, err);
  }
}

/**
 * A chunk's hash-field expiries onto the build, as absolute times grouped by time (Redis 7.4+); on a target that
 * has none, counted (the return), so the key's outcome can say what it lost. `values`: field, value pairs.
 */
async function copyFieldExpiries(target: Connection, building: Buffer, values: readonly Buffer[], expiriesOf: (fields: Buffer[]) => Promise<number[]>): Promise<number> {
  const fields = values.filter((_, i) => i % 2 === 0);
  if (fields.length === 0) return 0;
  const times = await expiriesOf(fields);
  const byTime = new Map<number, Buffer[]>();
  times.forEach((at, i) => at >= 0 && byTime.set(at, [...(byTime.get(at) ?? []), fields[i] as Buffer]));
  if (!target.capabilities.fieldExpiry) return [...byTime.values()].reduce((sum, group) => sum + group.length, 0);
  await Promise.all([...byTime].map(([at, group]) => target.send(['HPEXPIREAT', building, String(at), 'FIELDS', String(group.length), ...group])));
  return 0;
}

/**
 * Each group with its consumers and pending entries (delivery count, and idle or delivery time); then the
 * placeholders go, and XSETID sets the last ID and counters as the source has them.
 */
async function writeStreamState(target: Connection, building: Buffer, state: StreamState, size: number): Promise<void> {
  const modern = (target.capabilities.version[0] ?? 0) >= 7 && state.entriesAdded !== undefined;
  for (const group of state.groups) {
    const create: Arg[] = ['XGROUP', 'CREATE', building, group.name, group.lastDeliveredId];
    if (modern && group.entriesRead !== null && group.entriesRead !== undefined) create.push('ENTRIESREAD', group.entriesRead);
    await target.send(create);
    for (const consumer of group.consumers) await target.send(['XGROUP', 'CREATECONSUMER', building, group.name, consumer]);
    for await (const page of group.pending) {
      await Promise.all(
        page.map((claim) => {
          const when = claim.idleMs !== undefined ? ['IDLE', String(claim.idleMs)] : ['TIME', String(claim.deliveryTime ?? 0)];
          return target.send(['XCLAIM', building, group.name, claim.consumer, '0', claim.id, ...when, 'RETRYCOUNT', String(claim.deliveries), 'FORCE', 'JUSTID']);
        }),
      );
    }
  }
  for (let i = 0; i < state.dangling.length; i += size) await target.send(['XDEL', building, ...state.dangling.slice(i, i + size)]);
  const setId: Arg[] = ['XSETID', building, state.lastId];
  if (modern) setId.push('ENTRIESADDED', state.entriesAdded ?? '0', 'MAXDELETEDID', state.maxDeletedId ?? '0-0');
  await target.send(setId);
}

/** Temporary keys: `redis-keys-migrator:tmp:{<tag>}:<attempt>:<key>`. */
export const BUILDING_PREFIX = 'redis-keys-migrator:tmp:';

/**
 * The temporary name a big key is built under: the prefix, a short hash tag chosen to fall in the key's own
 * slot (so RENAME works in a cluster, even for keys whose own braces are not a hash tag), the attempt, the key.
 */
export function buildingName(key: Buffer, attempt: string): Buffer {
  return Buffer.concat([Buffer.from(`${BUILDING_PREFIX}{${slotTag(keySlot(key))}}:${attempt}:`), key]);
}

/**
 * A build given up (a failed chunk, a source key gone): removed here. A DEL refused too (the cluster down) is
 * left to the run, which removes such builds again at the end of the copy; a lost connection throws.
 */
async function dropBuilding(ctx: WriteContext, building: Buffer, outcome: KeyOutcome): Promise<KeyOutcome> {
  try {
    await ctx.target.send(['DEL', building]);
  } catch (err) {
    if (!(err instanceof ErrorReply)) throw err;
    ctx.abandoned?.push(building);
  }
  return outcome;
}

/** A chunk write answers like a whole key; it never asks for chunking itself. */
function chunkOutcome(answer: WriteAnswer | undefined): KeyOutcome {
  if (answer === undefined || answer.status === 'chunked') throw new KeyProblem('the target gave no answer for a chunk');
  return answer;
}

/** The finished build takes the key's name and final expiry in one script call (lib/net/scripts.ts MOVE_INTO_PLACE). */
async function moveIntoPlace(target: Connection, building: Buffer, key: Buffer, expireAt: number, overwrite: boolean): Promise<KeyOutcome> {
  const script = withFlags(MOVE_INTO_PLACE, flagsFor(target, WRITE_FLAGS));
  const answer = answerOf(key, await target.evalScript(script, [building, key], [overwrite ? '1' : '0', String(expireAt)]));
  return chunkOutcome(answer);
}
