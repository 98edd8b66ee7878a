// Function libraries (Redis 7 FUNCTION) as a source holds them: every master's FUNCTION LIST, or an .rdb file's
// FUNCTION2 records (read up to the file's first key).
import { readRdb } from '../rdb/reader.js';
import type { Connection } from '../net/connections.js';
import { describeError } from '../net/connections.js';
import { asArray, asText, type Reply } from '../net/reply.js';
import type { Side } from '../net/side.js';

export interface Library {
  /** From FUNCTION LIST, or the code's `#!lua name=<name>` line; empty when the code names none. */
  name: string;
  /** The library's source text, as FUNCTION LOAD takes it. */
  code: Buffer;
}

/** What the source (a server, or an .rdb file) holds. */
export interface Libraries {
  /** 'the source' or 'the file', for the lines. */
  origin: string;
  found: Library[];
  /** Why the origin's libraries could not be read (FUNCTION LIST refused, too much code in a file). */
  unreadable?: string;
  /** Libraries known to be there but not held (a file's, past the cap): each counts as failed. */
  notHeld: number;
}


/** The most code a file's libraries may hold in memory; past it they are refused, pointing at RDB_READER=server. */
const FILE_LIBRARY_BYTES = 16 * 1024 * 1024;

/** A server that has no FUNCTION (Redis 6.x), or a managed service that disabled it: no libraries there. */
const UNKNOWN = /unknown command|unknown subcommand|can't run this command or subcommand/i;

type Listing = { libraries: Map<string, Buffer> } | { refused: string };

/** One server's libraries by name, from FUNCTION LIST WITHCODE (RESP2: a flat field/value array per library). */
async function listLibraries(node: Connection): Promise<Listing> {
  let reply: Reply;
  try {
    reply = await node.send(['FUNCTION', 'LIST', 'WITHCODE']);
  } catch (err) {
    const reason = describeError(err);
    if (UNKNOWN.test(reason)) return { libraries: new Map() };
    return { refused: `${node.label} answered FUNCTION LIST with ${reason}` };
  }
  const libraries = new Map<string, Buffer>();
  for (const entry of asArray(reply)) {
    const fields = asArray(entry);
    const field = (name: string): Reply | undefined => fields[fields.findIndex((f, i) => i % 2 === 0 && asText(f) === name) + 1];
    const code = field('library_code');
    libraries.set(asText(field('library_name')), Buffer.isBuffer(code) ? code : Buffer.from(asText(code)));
  }
  return { libraries };
}

/** Every master's listing; the first refusal, if any, stands for all. */
export async function listEverywhere(masters: readonly Connection[]): Promise<{ listings: Map<string, Buffer>[] } | { refused: string }> {
  const listings = await Promise.all(masters.map(listLibraries));
  const refusal = listings.find((l): l is { refused: string } => 'refused' in l);
  if (refusal) return refusal;
  return { listings: listings.map((l) => ('libraries' in l ? l.libraries : new Map<string, Buffer>())) };
}

/** The source's libraries: every master's (a cluster's should agree; the first master's code wins a name). */
export async function sourceLibraries(source: Side): Promise<Libraries> {
  const listed = await listEverywhere(source.masters);
  if ('refused' in listed) return { origin: 'the source', found: [], unreadable: listed.refused, notHeld: 0 };
  const byName = new Map<string, Buffer>();
  for (const listing of listed.listings) for (const [name, code] of listing) if (!byName.has(name)) byName.set(name, code);
  return { origin: 'the source', found: [...byName].map(([name, code]) => ({ name, code })), notHeld: 0 };
}

/** The name in a library's first line, `#!lua name=<name> …`; empty when there is none. */
export function libraryName(code: Buffer): string {
  const end = code.indexOf(0x0a);
  const first = code.subarray(0, end < 0 ? code.length : end).toString('utf8');
  if (!first.startsWith('#!')) return '';
  return first.split(/\s+/).find((part) => part.startsWith('name='))?.slice('name='.length) ?? '';
}

/**
 * An .rdb file's FUNCTION2 records. Redis writes them before the first database, so the file is read only up
 * to its first key. At most `maxBytes` of code is held; past that, none is loaded.
 */
export async function fileLibraries(path: string, maxBytes = FILE_LIBRARY_BYTES): Promise<Libraries> {
  const found: Library[] = [];
  let bytes = 0;
  let seen = 0;
  const onFunction = (code: Buffer): void => {
    seen += 1;
    bytes += code.length;
    if (bytes <= maxBytes) found.push({ name: libraryName(code), code });
  };
  const keys = readRdb(path, { onFunction })[Symbol.asyncIterator]();
  try {
    await keys.next();
  } finally {
    await keys.return?.(undefined);
  }
  if (bytes <= maxBytes) return { origin: 'the file', found, notHeld: 0 };
  const mb = (n: number): string => (n / 1024 / 1024).toFixed(1);
  const unreadable = `they hold ${mb(bytes)} MB of code, more than the ${mb(maxBytes)} MB this reader keeps in memory for them (RDB_READER=server copies them)`;
  return { origin: 'the file', found: [], unreadable, notHeld: seen };
}
