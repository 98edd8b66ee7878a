// Function libraries (Redis 7 FUNCTION) onto the target: loaded with FUNCTION LOAD on every target master that
// lacks them (what the source holds: lib/sources/libraries.ts); told in one line, each failure in the error log.
import { listEverywhere, type Libraries, type Library } from '../sources/libraries.js';
import type { ErrorLog } from '../report/error-log.js';
import type { Side } from '../net/side.js';
import { type Connection, describeError } from '../net/connections.js';

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
