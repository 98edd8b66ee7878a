// A source server's values for the copy: a batch's keys grouped by the node that holds them (a cluster's keys by
// slot, or a master's replica read from), each group read there by a ServerReader (server.ts) as the copy takes
// the reads, so a batch in flight holds no more than one read per group.
import type { Connection } from '../net/connections.js';
import { byNode } from '../net/routing.js';
import type { Side } from '../net/side.js';
import type { NodeReads, RecordBatch, ServerValues } from '../records.js';
import { ServerReader } from './server.js';

interface ReadLimits {
  dumpMaxBytes: number;
  chunkSize: number;
}

/** The values of a source side's keys, read where each lives. */
class SourceValues implements ServerValues {
  constructor(private readonly source: Side, private readonly limits: ReadLimits) {}

  onNodes(keys: readonly Buffer[]): { reads: NodeReads; keys: Buffer[] }[] {
    return byNode(this.source, keys, keys).map(({ node, keys: share }) => ({ reads: this.readerOf(node), keys: share }));
  }

  async locate(key: Buffer): Promise<NodeReads> {
    return this.readerOf(await this.source.locate(key));
  }

  private readerOf(node: Connection): ServerReader {
    return new ServerReader(node, this.limits);
  }
}

/** A source server's key batches (its scan, or live changes), each with the values the copy reads of them. */
export async function* withValues(batches: AsyncIterable<RecordBatch>, source: Side, limits: ReadLimits): AsyncGenerator<RecordBatch> {
  const values: ServerValues = new SourceValues(source, limits);
  for await (const batch of batches) yield { ...batch, server: values };
}
