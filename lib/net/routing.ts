// A batch's keys split by the nodes that hold them: the pair of source and target nodes, or the target's node alone.
import type { Connection } from './connections.js';
import type { Side } from './side.js';
import { concatAll } from '../concurrency.js';

/** Keys of a batch grouped by the pair of nodes that hold them, in first-seen order. */
export interface NodePair {
  source: Connection;
  target: Connection;
  keys: Buffer[];
}

/** The name a key has on the target (KEY_PREFIX_STRIP, KEY_PREFIX_ADD): its slot there is that name's. */
type TargetName = (key: Buffer) => Buffer;
const sameName: TargetName = (key) => key;

/** The keys by the source node that holds them, then by the target node that takes them (under `targetName`). */
function routeKeys(source: Side, target: Side, keys: readonly Buffer[], targetName: TargetName): NodePair[] {
  return byNode(source, keys, keys).flatMap(({ node: from, keys: share }) => byNode(target, share, share, targetName).map(({ node: to, keys: pair }) => ({ source: from, target: to, keys: pair })));
}

/**
 * A batch's keys, each with what goes with it (a value from a file), grouped by the node of `side` holding them
 * (under `name`, for a target that renames).
 */
export function byNode<T>(side: Side, keys: readonly Buffer[], values: readonly T[], name: TargetName = sameName): { node: Connection; keys: Buffer[]; values: T[] }[] {
  // One server holds them all: no slot is worked out per key.
  if (!side.cluster) return keys.length === 0 ? [] : [{ node: side.nodeFor(name(keys[0] as Buffer)), keys: [...keys], values: [...values] }];
  const groups = new Map<Connection, { node: Connection; keys: Buffer[]; values: T[] }>();
  keys.forEach((key, i) => {
    const node = side.nodeFor(name(key));
    const group = groups.get(node) ?? { node, keys: [], values: [] };
    groups.set(node, group);
    group.keys.push(key);
    group.values.push(values[i] as T);
  });
  return [...groups.values()];
}

/** Runs `work` on each node pair of a batch at once; results come back grouped by pair. */
export async function forEachPair<R>(
  source: Side,
  target: Side,
  keys: readonly Buffer[],
  work: (pair: NodePair) => Promise<R[]>,
  targetName: TargetName = sameName,
): Promise<R[]> {
  const results = await Promise.all(routeKeys(source, target, keys, targetName).map(work));
  return concatAll(results);
}
