// SCAN on one server: a page at a time (a walk that resumes where it stopped), or every page of a whole pass.
import type { Connection } from './connections.js';
import { asArray, asText } from './reply.js';

/** What a SCAN asks for: the server's MATCH, COUNT and, where given, TYPE. */
export interface ScanFilter {
  match: string;
  count: number;
  type?: string;
}

/** SCAN's arguments for `cursor`. */
export function scanCommand(cursor: string, filter: ScanFilter): string[] {
  const command = ['SCAN', cursor, 'MATCH', filter.match, 'COUNT', String(filter.count)];
  if (filter.type) command.push('TYPE', filter.type);
  return command;
}

/** One SCAN call: the page's keys and the cursor to go on from ('0' once the pass is over). */
export async function scanPage(node: Connection, cursor: string, filter: ScanFilter): Promise<{ next: string; keys: Buffer[] }> {
  const [next, keys] = asArray(await node.send(scanCommand(cursor, filter)));
  return { next: asText(next ?? null), keys: asArray(keys ?? null) as Buffer[] };
}

/** Every page of one pass over the server's keys, in order; the caller may stop early by returning. */
export async function* scanPages(node: Connection, filter: ScanFilter): AsyncGenerator<Buffer[]> {
  let cursor = '0';
  do {
    const page = await scanPage(node, cursor, filter);
    cursor = page.next;
    yield page.keys;
  } while (cursor !== '0');
}
