// Function libraries (Redis 7 FUNCTION): read from the source's masters or an .rdb file's FUNCTION2 records, and
// loaded with FUNCTION LOAD on every target master that lacks them; told in one line, each failure in the error log.
import { readRdb } from '../rdb/reader.js';
import type { ErrorLog } from '../run/error-log.js';
import type { Endpoint } from '../settings.js';
import { asArray, asText, type Reply } from '../net/reply.js';
import { Side } from '../net/side.js';
import { type Connection, ConnectionError, describeError } from '../net/connections.js';

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

export interface LibraryOptions {
  mode: 'copy' | 'dry-run' | 'compare';
  /** COPY_FUNCTIONS */
  enabled: boolean;
  /** OVERWRITE_EXISTING_KEYS: a library of the same name with other code is replaced (FUNCTION LOAD REPLACE). */
  overwrite: boolean;
}

/** What the run's exit status must reflect: libraries that could not be loaded, or differ (compare). */
export interface LibrariesOutcome {
  failed: number;
  differences: number;
}

const NOTHING: LibrariesOutcome = { failed: 0, differences: 0 };

/** The most code a file's libraries may hold in memory; past it they are refused, pointing at RDB_READER=server. */
export const FILE_LIBRARY_BYTES = 16 * 1024 * 1024;

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
async function listEverywhere(masters: readonly Connection[]): Promise<{ listings: Map<string, Buffer>[] } | { refused: string }> {
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

const count = (n: number): string => `${n} librar${n === 1 ? 'y' : 'ies'}`;
const replacingText = (n: number): string => (n > 0 ? ` (${n} replacing the target's library of that name, OVERWRITE_EXISTING_KEYS=true)` : '');
const shownName = (name: string): string => (name === '' ? '(unnamed)' : name);
const namesOf = (list: readonly Library[]): string => {
  const names = list.slice(0, 5).map((l) => shownName(l.name)).join(', ');
  return list.length > 5 ? `${names}, …` : names;
};

/**
 * What the run does with the source's libraries on the target, by mode: copy loads the missing ones, a dry run
 * says what a copy would load, compare names those missing or different. Says nothing when there are none.
 */
export async function applyLibraries(found: Libraries, target: Side, options: LibraryOptions, log: ErrorLog, say: (line: string) => void): Promise<LibrariesOutcome> {
  return withoutTarget(found, options, say) ?? (await onTarget(found.found, found.origin, target, options, log, say));
}

/** The outcome when the target need not be asked: nothing to copy, COPY_FUNCTIONS=false, an unreadable source. */
function withoutTarget(found: Libraries, options: LibraryOptions, say: (line: string) => void): LibrariesOutcome | undefined {
  const held = found.found.length;
  if (found.unreadable !== undefined) {
    if (!options.enabled) return NOTHING;
    if (found.notHeld > 0) {
      say(`Functions: ${found.origin}'s ${count(found.notHeld)} were not ${options.mode === 'copy' ? 'loaded' : 'checked'}: ${found.unreadable}`);
      return problems(options.mode, found.notHeld);
    }
    // Whether the source has any is unknown, so nothing counts as failed; but it is said.
    say(`Functions: could not read ${found.origin}'s function libraries, so none was copied: ${found.unreadable} (grant its user FUNCTION LIST with ACL +function|list, or set COPY_FUNCTIONS=false)`);
    return NOTHING;
  }
  if (held === 0) return NOTHING;
  if (!options.enabled) {
    say(`Functions: ${found.origin} holds ${count(held)} (${namesOf(found.found)}), not ${options.mode === 'compare' ? 'compared' : 'copied'} (COPY_FUNCTIONS=false)`);
    return NOTHING;
  }
  return undefined;
}

/** `n` libraries that could not be loaded (copy) or checked (compare); a dry run only tells. */
function problems(mode: LibraryOptions['mode'], n: number): LibrariesOutcome {
  if (mode === 'copy') return { failed: n, differences: 0 };
  return mode === 'compare' ? { failed: 0, differences: n } : NOTHING;
}

async function onTarget(found: readonly Library[], origin: string, target: Side, options: LibraryOptions, log: ErrorLog, say: (line: string) => void): Promise<LibrariesOutcome> {
  const masters = target.masters;
  const listed = await listEverywhere(masters);
  if ('refused' in listed) {
    const verb = options.mode === 'copy' ? 'not loaded' : options.mode === 'compare' ? 'not compared' : 'not checked';
    const where = options.mode === 'copy' ? `; see |${log.path}|` : '';
    say(`Functions: ${count(found.length)} of ${origin} ${verb}: ${listed.refused} (grant the target user FUNCTION with ACL +function, or set COPY_FUNCTIONS=false${where})`);
    if (options.mode === 'copy') for (const library of found) log.libraryFailed(shownName(library.name), listed.refused);
    return problems(options.mode, found.length);
  }
  // Compare tells other code from the same, whatever OVERWRITE_EXISTING_KEYS says.
  const overwrite = options.overwrite || options.mode === 'compare';
  const plans = found.map((library) => ({ library, steps: listed.listings.map((listing) => stepFor(library, listing.get(library.name), overwrite)) }));
  if (options.mode === 'compare') return compareLine(plans, say);
  if (options.mode === 'dry-run') {
    const replacing = plans.filter((p) => p.steps.includes('replace')).length;
    const loading = plans.filter((p) => p.steps.some((s) => s !== 'skip')).length;
    say(`Functions: would load ${count(loading)}${replacingText(replacing)}, ${found.length - loading} skipped (already on the target)`);
    return NOTHING;
  }
  return loadAll(plans, masters, target.cluster, log, say);
}

/** What one master needs for one library: nothing (it has that code, or a library of that name without OVERWRITE), a LOAD, or a LOAD REPLACE. */
type Step = 'skip' | 'load' | 'replace';

function stepFor(library: Library, there: Buffer | undefined, overwrite: boolean): Step {
  if (there === undefined) return 'load';
  return overwrite && !there.equals(library.code) ? 'replace' : 'skip';
}

interface Plan {
  library: Library;
  /** One per target master, in `target.masters` order. */
  steps: Step[];
}

/** Compare mode: libraries some target master lacks, or holds with other code, are differences. */
function compareLine(plans: readonly Plan[], say: (line: string) => void): LibrariesOutcome {
  const missing = plans.filter((p) => p.steps.includes('load')).map((p) => p.library);
  const other = plans.filter((p) => !p.steps.includes('load') && p.steps.includes('replace')).map((p) => p.library);
  const same = plans.length - missing.length - other.length;
  const listed = (list: readonly Library[]): string => (list.length > 0 ? ` (${namesOf(list)})` : '');
  say(`Functions: ${count(missing.length)} missing on the target${listed(missing)}, ${other.length} with other code than the source's${listed(other)}, ${same} identical`);
  return { failed: 0, differences: missing.length + other.length };
}

/** FUNCTION LOAD (REPLACE) on each master that needs it; one line with the counts, each failure in the error log. */
async function loadAll(plans: readonly Plan[], masters: readonly Connection[], cluster: boolean, log: ErrorLog, say: (line: string) => void): Promise<LibrariesOutcome> {
  let [loaded, replaced, skipped, failed] = [0, 0, 0, 0];
  for (const { library, steps } of plans) {
    const outcomes = await Promise.all(masters.map((master, i) => loadOn(master, library, steps[i] ?? 'load')));
    const reasons = outcomes.flatMap((o, i) => (typeof o === 'object' ? [cluster ? `${masters[i]?.label}: ${o.failed}` : o.failed] : []));
    if (reasons.length > 0) {
      failed += 1;
      for (const reason of reasons) log.libraryFailed(shownName(library.name), reason);
    } else if (outcomes.includes('replace')) [loaded, replaced] = [loaded + 1, replaced + 1];
    else if (outcomes.includes('load')) loaded += 1;
    else skipped += 1;
  }
  const where = failed > 0 ? ` (see |${log.path}|)` : '';
  say(`Functions: ${count(loaded)} loaded${replacingText(replaced)}, ${skipped} skipped (already on the target), ${failed} failed${where}`);
  return { failed, differences: 0 };
}

/** One library on one master. A library of that name that appeared since FUNCTION LIST is left alone, as skipped. */
async function loadOn(master: Connection, library: Library, step: Step): Promise<Step | { failed: string }> {
  if (step === 'skip') return 'skip';
  try {
    await master.send(step === 'replace' ? ['FUNCTION', 'LOAD', 'REPLACE', library.code] : ['FUNCTION', 'LOAD', library.code]);
    return step;
  } catch (err) {
    const reason = describeError(err);
    if (step === 'load' && /^ERR Library '.*' already exists/.test(reason)) return 'skip';
    return { failed: reason };
  }
}

/**
 * An .rdb file's libraries onto the target (RDB_READER=native), before its keys: the file read up to its first
 * key, and the target connected only when there is something to load.
 */
export async function applyFileLibraries(path: string, destination: Endpoint, options: LibraryOptions, log: ErrorLog, say: (line: string) => void): Promise<LibrariesOutcome> {
  const found = await fileLibraries(path);
  const early = withoutTarget(found, options, say);
  if (early) return early;
  let target: Side | undefined;
  try {
    target = await Side.open(destination);
    return await onTarget(found.found, found.origin, target, options, log, say);
  } catch (err) {
    if (!(err instanceof ConnectionError)) throw err;
    say(`Functions: ${count(found.found.length)} of the file not loaded: ${err.message}`);
    for (const library of found.found) log.libraryFailed(shownName(library.name), err.message);
    return { failed: found.found.length, differences: 0 };
  } finally {
    await target?.close();
  }
}
