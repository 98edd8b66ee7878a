// The copy methods for keys of one source node: each takes the node's reads as they come (lib/sources/server.ts,
// as a batch carries them) and has a writer write them (restore.ts, by-type.ts); big keys go alone in chunks, read
// from the same node; keys the target cannot RESTORE go by type. COPY_METHOD picks: dump, type, or auto (dump
// until refused).
import { mapLimited } from '../concurrency.js';
import type { KeyOutcome, NodeReads } from '../records.js';
import { CHUNKED_KEYS_AT_ONCE, settleChunked, underTargetNames, type WriteAnswer, type WriteContext } from './context.js';
import { writeInChunks, writeTypedBatch } from './by-type.js';
import { crossed, isRestoreRefused, nameModuleRefusals, writeDumps } from './restore.js';

/** Thrown when the target refuses RESTORE itself, carrying the keys of the batch not yet settled. */
export class RestoreRefused extends Error {
  constructor(readonly reason: string, readonly settled: KeyOutcome[], readonly unsettled: Buffer[]) {
    super(reason);
  }
}

/** By DUMP and RESTORE, a read budget's worth of keys at a time; throws RestoreRefused if the target cannot RESTORE. */
export async function copyByDump(ctx: WriteContext, values: NodeReads, keys: readonly Buffer[]): Promise<KeyOutcome[]> {
  const outcomes: KeyOutcome[] = [];
  let rest = keys;
  for await (const { batch, from } of values.dumps(keys)) {
    rest = rest.slice(batch.keys.length);
    const answers = await underTargetNames(ctx.settings.names, batch.keys, (keys) => writeDumps(ctx, { ...batch, keys }));
    const byType = answers.flatMap((a, i) => (a.status === 'byType' ? [i] : []));
    const copied = byType.length > 0 ? await copyByType(ctx, values, byType.map((i) => batch.keys[i] as Buffer)) : [];
    const written = answers as WriteAnswer[];
    byType.forEach((index, j) => (written[index] = crossed(copied[j] as KeyOutcome, 'byType')));
    const settled = await settleChunked(nameModuleRefusals(batch, written, ctx.target), (key) => writeInChunks(ctx, key, from));
    const refused = settled.filter((o) => o.status === 'failed' && isRestoreRefused(o.reason));
    if (refused.length > 0) {
      const reason = refused[0]?.status === 'failed' ? refused[0].reason : '';
      throw new RestoreRefused(reason, [...outcomes, ...settled.filter((o) => !refused.includes(o))], [...refused.map((o) => o.key), ...rest]);
    }
    outcomes.push(...settled);
  }
  return outcomes;
}

/** By type: small keys a read budget at a time, big keys and streams alone in chunks; all in chunks where the source refuses scripts. */
export async function copyByType(ctx: WriteContext, values: NodeReads, keys: readonly Buffer[]): Promise<KeyOutcome[]> {
  const outcomes: KeyOutcome[] = [];
  for await (const read of values.typed(keys)) {
    if ('chunked' in read) {
      outcomes.push(...(await mapLimited(read.chunked, CHUNKED_KEYS_AT_ONCE, (key) => writeInChunks(ctx, key, read.from))));
      continue;
    }
    const { batch, from } = read;
    const mode = ctx.settings.overwrite ? 'replace' : 'create';
    const answers = await underTargetNames(ctx.settings.names, batch.keys, (keys) => writeTypedBatch(ctx.target, mode, { ...batch, keys }));
    ctx.stats.bytesMoved += batch.values.length;
    outcomes.push(...(await settleChunked(answers, (key) => writeInChunks(ctx, key, from))));
  }
  return outcomes;
}

/** `auto`: dump until the target refuses RESTORE, then type for the refused keys and the rest of the run. */
export async function copyAuto(ctx: WriteContext, values: NodeReads, keys: readonly Buffer[], onFallback: (reason: string) => void): Promise<KeyOutcome[]> {
  try {
    return await copyByDump(ctx, values, keys);
  } catch (err) {
    if (!(err instanceof RestoreRefused)) throw err;
    onFallback(err.reason);
    return [...err.settled, ...(await copyByType(ctx, values, err.unsettled))];
  }
}
