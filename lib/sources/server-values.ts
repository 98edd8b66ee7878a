// A source server's values for the copy: the keys of a batch read on the nodes that hold them (by DUMP, or by
// type), a read budget at a time, each read with the reader its big keys are read from in chunks. Reads start
// when the copy takes them, so no more than a read per node is held in memory for a batch in flight.
import type { Connection } from '../net/connections.js';
import { byNode } from '../net/routing.js';
import type { Side } from '../net/side.js';
import { mergeStreams } from '../concurrency.js';
import type { DumpRead, NodeState, RecordBatch, ServerValues, TypedRead } from '../records.js';
import { ServerReader } from './server.js';

interface ReadLimits {
  dumpMaxBytes: number;
  chunkSize: number;
}

/** The values of a source side's keys, read where each lives (a cluster's keys from their slot's node, or its replica). */
class SourceValues implements ServerValues {
  /** Every node read from: the one lost, when a read fails, is among them. */
  private readonly used = new Set<Connection>();

  constructor(private readonly source: Side, private readonly limits: ReadLimits) {}

  dumps(keys: readonly Buffer[], relocate = false): AsyncIterable<DumpRead> {
    return this.onNodes(keys, relocate, dumpReads);
  }

  typed(keys: readonly Buffer[], relocate = false): AsyncIterable<TypedRead> {
    return this.onNodes(keys, relocate, typedReads);
  }

  get lost(): NodeState | undefined {
    for (const node of this.used) if (node.lostBecause !== undefined) return node;
    return undefined;
  }

  /** `reads` on each node's share of the keys, the nodes read at once; located first when `relocate`. */
  private async *onNodes<T>(keys: readonly Buffer[], relocate: boolean, reads: (reader: ServerReader, keys: Buffer[]) => AsyncIterable<T>): AsyncGenerator<T> {
    const groups = relocate ? await this.located(keys) : byNode(this.source, keys, keys);
    const streams = groups.map(({ node, keys: share }) => {
      this.used.add(node);
      return reads(new ServerReader(node, this.limits), share);
    });
    yield* streams.length === 1 ? (streams[0] as AsyncIterable<T>) : mergeStreams(streams);
  }

  /** Keys by the node that holds them now, asked of the cluster (MOVED re-reads the slot map, ASK reads with ASKING). */
  private async located(keys: readonly Buffer[]): Promise<{ node: Connection; keys: Buffer[] }[]> {
    const nodes = await Promise.all(keys.map((key) => this.source.locate(key)));
    const groups = new Map<Connection, Buffer[]>();
    keys.forEach((key, i) => {
      const node = nodes[i] as Connection;
      groups.set(node, [...(groups.get(node) ?? []), key]);
    });
    return [...groups].map(([node, share]) => ({ node, keys: share }));
  }
}

/** A node's DUMP payloads of `keys`, a read budget at a time. */
async function* dumpReads(reader: ServerReader, keys: Buffer[]): AsyncGenerator<DumpRead> {
  for (let rest: readonly Buffer[] = keys; rest.length > 0; ) {
    const batch = await reader.dumps(rest);
    rest = rest.slice(batch.keys.length);
    yield { from: reader, batch };
  }
}

/** A node's values by type of `keys`, a read budget at a time; all the rest to read in chunks where it refuses scripts. */
async function* typedReads(reader: ServerReader, keys: Buffer[]): AsyncGenerator<TypedRead> {
  for (let rest: readonly Buffer[] = keys; rest.length > 0; ) {
    const batch = await reader.typed(rest);
    if (!batch) {
      yield { from: reader, chunked: [...rest] };
      return;
    }
    rest = rest.slice(batch.keys.length);
    yield { from: reader, batch };
  }
}

/** A source server's key batches (its scan, or live changes), each with the values the copy reads of them. */
export async function* withValues(batches: AsyncIterable<RecordBatch>, source: Side, limits: ReadLimits): AsyncGenerator<RecordBatch> {
  const values: ServerValues = new SourceValues(source, limits);
  for await (const batch of batches) yield { ...batch, server: values };
}
