// The repair sweep: source and target compared key by key, whatever differs queued to be copied again (or
// deleted); every repair is counted and logged, since each one means pub/sub lost an event.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Connection } from '../net/connections.js';
import { compareInto } from '../verify/comparison.js';
import type { CompareOptions, KeyVerdict } from '../verify/compare-key.js';
import type { ChangeQueue } from './queue.js';
import { PROBE_PREFIX } from './events.js';
import { BUILDING_PREFIX } from '../copy/by-type.js';
import type { Side } from '../net/side.js';
import { scanPage } from '../net/scan-pages.js';
import { displayKey, type KeyNames } from '../records.js';
import { matchTest } from '../sources/glob.js';
import type { ErrorLog } from '../report/error-log.js';

/** A difference waits this long for its event before it counts as a repair: the event may still be on its way. */
const SUSPECT_WAIT_MS = 2000;
/** Differences waiting for their events at most; past it they are repaired at once. */
const SUSPECTS_MAX = 10_000;
/** Keys whose latest event time is kept, newest last; past it the oldest are forgotten (bounded memory). */
const RECENT_EVENTS_MAX = 100_000;
const STEP_MS = 100;

interface SweepOptions {
  match: string;
  /** Keys of other shards, and excluded ones (lib/sources/scan.ts leftOutTest). */
  leftOut: (key: Uint8Array) => boolean;
  /** KEY_PREFIX_STRIP and KEY_PREFIX_ADD: the target's keys are walked under its names and looked at under the source's. */
  names: KeyNames;
  /** Keys per second while nothing is wrong (0: none); a sweep after a gap goes at full speed. */
  rate: number;
  compare: CompareOptions;
}

interface Suspect {
  key: Buffer;
  foundAt: number;
  detail: string;
}

/** One side's SCAN, master by master, resumable a page at a time. */
class Walk {
  private index = 0;
  private cursor = '0';

  constructor(private readonly side: Side, private readonly match: string) {}

  /** The next page of keys, and whether the walk just went round once. */
  async page(count: number): Promise<{ keys: Buffer[]; wrapped: boolean }> {
    const masters = this.side.masters;
    const master = masters[this.index % masters.length] as Connection;
    const { next, keys } = await scanPage(master, this.cursor, { match: this.match, count });
    this.cursor = next;
    let wrapped = false;
    if (this.cursor === '0') {
      this.index += 1;
      wrapped = this.index % masters.length === 0;
    }
    return { keys, wrapped };
  }
}

/** A stream that differs only in its consumer groups' state (what a consumer read or acknowledged). */
function isGroupDrift(detail: string): boolean {
  return /^group .*: (last-delivered-id|pending|consumers) /.test(detail);
}

export class RepairSweep {
  repairs = 0;
  /** Full passes done (after gaps) and background rounds completed. */
  passes = 0;
  private readonly suspects = new Map<string, Suspect>();
  /**
   * When each key's latest event came: a key changed again while it was being looked at has its newest event
   * on the way, and that difference is the change, not a lost event (a busy source changes a key every second).
   */
  private readonly lastEvent = new Map<string, number>();
  /** Full passes asked for (gaps, a full queue, a lost round) and how many of those asks a completed pass covers. */
  private fullAsked = 0;
  private fullCovered = 0;
  private readonly compare: (keys: readonly Buffer[]) => Promise<KeyVerdict[]>;
  private readonly matches: ((key: Uint8Array) => boolean) | undefined;

  constructor(
    private readonly source: Side,
    private readonly target: Side,
    private readonly queue: ChangeQueue,
    private readonly options: SweepOptions,
    private readonly log: ErrorLog,
  ) {
    this.compare = compareInto(source, target, options.compare);
    this.matches = matchTest(options.match);
  }

  /** A gap was detected: the next pass covers everything, at full speed. */
  requestFull(): void {
    this.fullAsked += 1;
  }

  /**
   * A gap not yet covered: no full pass has walked both sides to the end since it was asked for. True while a
   * pass is under way, so an idle cutover waits for it (a pass cut short by a stop leaves it true).
   */
  get pendingFull(): boolean {
    return this.fullCovered < this.fullAsked;
  }

  /** An event arrived for `key`: a difference seen for it was that change on its way, not a missed event. */
  sawEvent(key: Buffer): void {
    const id = key.toString('latin1');
    if (this.suspects.size > 0) this.suspects.delete(id);
    this.lastEvent.delete(id);
    this.lastEvent.set(id, Date.now());
    if (this.lastEvent.size > RECENT_EVENTS_MAX) this.lastEvent.delete(this.lastEvent.keys().next().value as string);
  }

  /** Sweeps until `stopped()`: full passes when asked, else background rounds at the rate. */
  async run(stopped: () => boolean): Promise<void> {
    // The background rounds walk on from where they were; a full pass walks both sides from the start.
    const background = { source: new Walk(this.source, this.options.match), target: new Walk(this.target, this.targetMatch) };
    while (!stopped()) {
      try {
        await this.round(background.source, background.target, stopped);
      } catch {
        // A lost connection: the run's recovery brings it back; what this round did not cover, a full pass will.
        this.requestFull();
        await sleep(500);
      }
      await sleep(STEP_MS);
    }
  }

  private async round(source: Walk, target: Walk, stopped: () => boolean): Promise<void> {
    if (this.pendingFull) {
      // Asks made while this pass runs (a full queue) need another: it may have walked past their keys.
      const asked = this.fullAsked;
      if (await this.fullPass(new Walk(this.source, this.options.match), new Walk(this.target, this.targetMatch), stopped)) this.fullCovered = asked;
      this.passes += 1;
    } else if (this.options.rate > 0) {
      const count = Math.max(1, Math.round((this.options.rate * STEP_MS) / 1000));
      const [a, b] = await Promise.all([this.step(source, count, 'source'), this.step(target, count, 'target')]);
      if (a && b) this.passes += 1;
    }
    await this.settleSuspects(false);
  }

  /** Before the final verification: suspects still waiting are settled now. */
  async finish(): Promise<void> {
    await this.settleSuspects(true);
  }

  /** Both sides walked end to end; false when `stopped()` cut the pass short. */
  private async fullPass(source: Walk, target: Walk, stopped: () => boolean): Promise<boolean> {
    let [sourceDone, targetDone] = [false, false];
    while (!(sourceDone && targetDone)) {
      if (stopped()) return false;
      const [a, b] = await Promise.all([sourceDone ? true : this.step(source, 1000, 'source'), targetDone ? true : this.step(target, 1000, 'target')]);
      [sourceDone, targetDone] = [a, b];
      await this.settleSuspects(false);
    }
    return true;
  }

  /** One page of one side compared; true when that side's walk went round. */
  private async step(walk: Walk, count: number, side: 'source' | 'target'): Promise<boolean> {
    const page = await walk.page(count);
    const { wrapped } = page;
    const keys = side === 'target' ? this.underSourceNames(page.keys) : page.keys;
    const open = keys.filter((key) => this.selected(key) && !this.queue.has(key));
    if (open.length > 0) await (side === 'source' ? this.checkSourceKeys(open) : this.checkTargetKeys(open));
    return wrapped;
  }

  /** The MATCH of the target's walk: the run's pattern is the source's names', so a renaming run walks every key. */
  private get targetMatch(): string {
    return this.options.names.renames ? '*' : this.options.match;
  }

  /** Target keys under their source names: only those a source key of the run becomes, and MATCH applied to that. */
  private underSourceNames(keys: Buffer[]): Buffer[] {
    const { names } = this.options;
    if (!names.renames) return keys;
    return keys.flatMap((key) => {
      const source = names.toSource(key);
      return source && (!this.matches || this.matches(source)) ? [source] : [];
    });
  }

  private selected(key: Buffer): boolean {
    // Our own keys: live mode's probes, and big keys being built under a temporary name.
    if (key.subarray(0, PROBE_PREFIX.length).toString('latin1') === PROBE_PREFIX) return false;
    if (key.subarray(0, BUILDING_PREFIX.length).toString('latin1') === BUILDING_PREFIX) return false;
    return !this.options.leftOut(key);
  }

  /** Source keys the target does not hold the same. */
  private async checkSourceKeys(keys: Buffer[]): Promise<void> {
    const lookedAt = Date.now();
    for (const verdict of await this.compare(keys)) {
      if (verdict.verdict !== 'different') continue;
      // Consumer-group reads (XREADGROUP, XACK) send no events at all: such drift is copied again, not counted as a loss.
      if (isGroupDrift(verdict.detail)) this.queue.add(verdict.key);
      else this.suspect(verdict.key, `${verdict.category}: ${verdict.detail}`, lookedAt);
    }
  }

  /** Target keys gone from the source: deletions whose events were missed. */
  private async checkTargetKeys(keys: Buffer[]): Promise<void> {
    const lookedAt = Date.now();
    const present = await Promise.all(keys.map((key) => this.source.nodeFor(key).send(['EXISTS', key])));
    keys.forEach((key, i) => present[i] === 0 && this.suspect(key, 'gone from the source, still on the target', lookedAt));
  }

  /** Whether an event for `key` came at `at` or later. */
  private changedSince(key: Buffer, at: number): boolean {
    return (this.lastEvent.get(key.toString('latin1')) ?? -Infinity) >= at;
  }

  /** A difference seen by a look that began at `lookedAt`; one whose event came meanwhile is that change. */
  private suspect(key: Buffer, detail: string, lookedAt: number): void {
    const id = key.toString('latin1');
    if (this.suspects.has(id) || this.changedSince(key, lookedAt) || this.queue.has(key)) return;
    if (this.suspects.size >= SUSPECTS_MAX) return void this.repair({ key, foundAt: lookedAt, detail });
    this.suspects.set(id, { key, foundAt: lookedAt, detail });
  }

  /** Differences that waited long enough with no event are looked at again; those that stand are repaired. */
  private async settleSuspects(all: boolean): Promise<void> {
    const now = Date.now();
    const due = [...this.suspects.values()].filter((s) => all || now - s.foundAt >= SUSPECT_WAIT_MS);
    if (due.length === 0) return;
    for (const s of due) this.suspects.delete(s.key.toString('latin1'));
    const open = due.filter((s) => !this.queue.has(s.key));
    // Verdicts come back grouped by node pair (a cluster side): matched to their keys by name, not by position.
    const verdicts = new Map((await this.compare(open.map((s) => s.key))).map((v) => [v.key.toString('latin1'), v]));
    const { names } = this.options;
    const present = await Promise.all(open.map((s) => {
      const onTarget = names.toTarget(s.key);
      return this.target.nodeFor(onTarget).send(['EXISTS', onTarget]);
    }));
    open.forEach((s, i) => {
      const verdict = verdicts.get(s.key.toString('latin1'));
      // Changed since it was first seen, up to this second look: its event came, and the queue has it or had it.
      if (this.changedSince(s.key, s.foundAt) || this.queue.has(s.key)) return;
      if (verdict?.verdict === 'different' && isGroupDrift(verdict.detail)) this.queue.add(s.key);
      else if (verdict?.verdict === 'different' || (verdict?.verdict === 'vanished' && present[i] === 1)) this.repair(s);
    });
  }

  private repair(s: Suspect): void {
    this.repairs += 1;
    // A full queue takes no more: another full pass will find the key again.
    if (!this.queue.add(s.key)) this.requestFull();
    this.log.write(`Repaired key |${displayKey(s.key)}| (${s.detail}): a change whose event never arrived`, 'WARNING');
  }
}
