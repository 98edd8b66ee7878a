// The source's changes as keyspace notifications, from every master: proven on before anything is copied,
// filtered as SCAN would filter, and every way events can be lost (a dropped subscriber, a flush, new masters) reported as a gap.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError, isRefusal, openSubscriber, type Connection, type Subscriber } from '../net/connections.js';
import type { Side } from '../net/side.js';
import { keySlot, slotTag } from '../net/cluster.js';
import { matchTest } from '../sources/glob.js';
import { asText } from '../net/reply.js';

/** Keyevent channels name the event and carry the key; keyspace channels name the key and carry the event. */
type EventClass = 'keyevent' | 'keyspace';

/** The classes of notify-keyspace-events live mode needs, and what each covers (A is all of them, and d). */
const NEEDED_CLASSES: readonly [string, string][] = [
  ['g', 'DEL, EXPIRE, RENAME…'], ['$', 'strings'], ['l', 'lists'], ['s', 'sets'], ['h', 'hashes'], ['z', 'sorted sets'], ['t', 'streams'], ['x', 'expiries'], ['e', 'evictions'],
];

export const PROBE_PREFIX = 'redis-keys-migrator:probe:';

export class LiveRefusal extends Error {}

interface FeedOptions {
  db: number;
  match: string;
  /** Keys of other shards, and excluded ones (lib/sources/scan.ts leftOutTest). */
  leftOut: (key: Uint8Array) => boolean;
  /** Where CONFIG is refused: write probe keys to prove events arrive (else trust the setting). */
  probe: boolean;
  reconnectTimeoutMs: number;
  say: (line: string) => void;
}

/** How often masters and flush counters are looked at. */
const WATCH_EVERY_MS = 1000;

export class ChangeFeed {
  /** Events taken (after the filters). */
  events = 0;
  private readonly subscribers = new Map<string, Subscriber>();
  /** Masters whose subscription is being set up again after a loss. */
  private readonly resubscribing = new Set<string>();
  private eventClass: EventClass = 'keyevent';
  private readonly match: ((key: Uint8Array) => boolean) | undefined;
  private readonly flushCalls = new Map<string, number>();
  private watcher: NodeJS.Timeout | undefined;
  private probeWaiter: ((channel: Buffer, message: Buffer) => void) | undefined;
  private stopped = false;
  /** Set when a subscriber could not be brought back within RECONNECT_TIMEOUT: the run must stop. */
  fatal: string | undefined;

  constructor(
    private readonly source: Side,
    private readonly options: FeedOptions,
    /** `event`: the event's name (set, del, xadd...). */
    private readonly onKey: (key: Buffer, event: string) => void,
    /** `counts` false: no gap of its own, only a sweep to run (a subscription back after its loss). */
    private readonly onGap: (reason: string, counts?: boolean) => void,
  ) {
    this.match = matchTest(options.match);
  }

  /**
   * Proves notifications are on (CONFIG GET where allowed, probe keys where not), then subscribes on every
   * master before the caller's first SCAN, so no change during the copy is missed.
   */
  async start(): Promise<void> {
    const configured = await Promise.all(this.source.masters.map((m) => configuredClass(m)));
    const unknown = configured.some((c) => c === undefined);
    const known = configured.filter((c): c is EventClass => c !== undefined);
    this.eventClass = known.length > 0 && known.every((c) => c === 'keyspace') ? 'keyspace' : 'keyevent';
    if (unknown && !this.options.probe) {
      this.options.say('Warning: CONFIG is refused on the source, so notify-keyspace-events cannot be read, and LIVE_NOTIFY_PROBE=false: changes are trusted to arrive');
    }
    const probing = unknown && this.options.probe;
    await Promise.all(this.source.masters.map((m) => this.subscribe(m, probing ? ['keyevent', 'keyspace'] : [this.eventClass])));
    if (probing) await this.prove(configured);
    for (const master of this.source.masters) this.flushCalls.set(address(master), await flushCount(master));
    this.watcher = setInterval(() => void this.watch(), WATCH_EVERY_MS);
    this.watcher.unref();
  }

  /** Stops taking changes (cutover): nothing more is queued. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watcher) clearInterval(this.watcher);
    await Promise.all([...this.subscribers.values()].map((s) => s.close()));
    this.subscribers.clear();
  }

  private pattern(kind: EventClass): string {
    return `__${kind}@${this.options.db}__:*`;
  }

  private async subscribe(master: Connection, kinds: EventClass[]): Promise<void> {
    const where = address(master);
    const subscriber = await openSubscriber(
      master.endpoint,
      kinds.map((k) => this.pattern(k)),
      (channel, message) => this.received(channel, message),
      (reason) => void this.resubscribe(master, where, `the event connection to ${master.label} was lost (${reason})`),
    );
    this.subscribers.set(where, subscriber);
  }

  /** A lost subscription: a gap; subscribe again (with backoff) until RECONNECT_TIMEOUT, then give up. */
  private async resubscribe(master: Connection, where: string, reason: string): Promise<void> {
    // One attempt at a time per master: RECONNECT_TIMEOUT counts from the loss, not from each try.
    if (this.stopped || this.resubscribing.has(where)) return;
    this.resubscribing.add(where);
    try {
      await this.subscribeAgain(master, where, reason);
    } finally {
      this.resubscribing.delete(where);
    }
  }

  private async subscribeAgain(master: Connection, where: string, reason: string): Promise<void> {
    this.subscribers.delete(where);
    this.onGap(reason);
    const deadline = Date.now() + this.options.reconnectTimeoutMs;
    for (let wait = 100; !this.stopped && this.fatal === undefined; wait = Math.min(wait * 2, 2000)) {
      try {
        // A failed-over master is another node now: the watch subscribes to it; this one may be gone.
        if (!this.source.masters.some((m) => address(m) === where)) return;
        await this.subscribe(master, [this.eventClass]);
        this.onGap(`subscribed again to ${master.label}`, false);
        return;
      } catch (err) {
        if (Date.now() + wait > deadline) {
          this.fatal = `${reason}, and subscribing again failed for ${this.options.reconnectTimeoutMs / 1000} s (RECONNECT_TIMEOUT): ${describeError(err)}`;
          return;
        }
        await sleep(wait);
      }
    }
  }

  private received(channel: Buffer, message: Buffer): void {
    this.probeWaiter?.(channel, message);
    const change = this.changeOf(channel, message);
    if (change === undefined || this.stopped) return;
    const { key, event } = change;
    if (key.subarray(0, PROBE_PREFIX.length).toString('latin1') === PROBE_PREFIX) return;
    if ((this.match && !this.match(key)) || this.options.leftOut(key)) return;
    this.events += 1;
    this.onKey(key, event);
  }

  /** The key an event is about and the event's name, or undefined for a message of the class not in use. */
  private changeOf(channel: Buffer, message: Buffer): { key: Buffer; event: string } | undefined {
    const prefix = `__${this.eventClass}@${this.options.db}__:`;
    if (channel.length < prefix.length || channel.subarray(0, prefix.length).toString('latin1') !== prefix) return undefined;
    const rest = channel.subarray(prefix.length);
    return this.eventClass === 'keyevent' ? { key: message, event: rest.toString('latin1') } : { key: Buffer.from(rest), event: message.toString('latin1') };
  }

  /**
   * Where CONFIG is refused: on each master, a probe key (in a slot that master serves) goes through one
   * write of each kind of event, and each class must arrive within two seconds, or live mode is refused.
   */
  private async prove(configured: (EventClass | undefined)[]): Promise<void> {
    const masters = this.source.masters.filter((_, i) => configured[i] === undefined);
    const seen = new Map<string, Set<string>>();
    this.probeWaiter = (channel, message) => {
      const text = channel.toString('latin1');
      const event = /^__keyevent@\d+__:(.*)$/.exec(text)?.[1];
      const probeKey = event ? message.toString('latin1') : /^__keyspace@\d+__:(.*)$/.exec(text)?.[1];
      if (!probeKey?.startsWith(PROBE_PREFIX)) return;
      const kinds = seen.get(probeKey) ?? new Set<string>();
      kinds.add(`${event ? 'E' : 'K'}:${event ?? message.toString('latin1')}`);
      seen.set(probeKey, kinds);
    };
    try {
      const keys = await Promise.all(masters.map((m) => writeProbes(m, this.source)));
      await sleep(300);
      const expected = masters.map((m) => probeEventsOf(this.source, m));
      for (let waited = 300; waited < 2000 && !keys.every((k, i) => probeComplete(seen.get(k), expected[i] ?? PROBE_EVENTS)); waited += 100) await sleep(100);
      masters.forEach((master, i) => {
        const kinds = seen.get(keys[i] as string) ?? new Set<string>();
        const eventClass: EventClass | undefined = [...kinds].some((k) => k.startsWith('E:')) ? 'keyevent' : [...kinds].some((k) => k.startsWith('K:')) ? 'keyspace' : undefined;
        const missing = (expected[i] ?? PROBE_EVENTS).filter(([event]) => !kinds.has(`${eventClass === 'keyspace' ? 'K' : 'E'}:${event}`)).map(([, cls]) => cls);
        if (eventClass === undefined || missing.length > 0) {
          throw new LiveRefusal(
            `no keyspace events ${eventClass === undefined ? 'arrived' : `of the classes ${[...new Set(missing)].join('')} arrived`} from ${master.label} within 2 s of writing probe keys: ` +
            `set its notify-keyspace-events to at least "KEA" (ElastiCache: in the parameter group), or LIVE_NOTIFY_PROBE=false to skip this proof`,
          );
        }
        if (i === 0) this.eventClass = eventClass;
      });
    } finally {
      this.probeWaiter = undefined;
    }
    await Promise.all([...this.subscribers.values()].map((s) => s.drop([this.pattern(this.eventClass === 'keyevent' ? 'keyspace' : 'keyevent')])));
  }

  /** Once a second: masters added or replaced (subscribed, a gap), and FLUSHALL/FLUSHDB/SWAPDB (no per-key events: a gap). */
  private async watch(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.source.refreshSlots();
      for (const master of this.source.masters) {
        const where = address(master);
        if (!this.subscribers.has(where) && !this.flushCalls.has(where)) {
          this.flushCalls.set(where, await flushCount(master));
          this.onGap(`${master.label} is a new master (failover or resharding)`);
          await this.subscribe(master, [this.eventClass]).catch((err: unknown) => this.resubscribe(master, where, describeError(err)));
          continue;
        }
        const calls = await flushCount(master);
        const before = this.flushCalls.get(where) ?? calls;
        this.flushCalls.set(where, calls);
        if (calls !== before) this.onGap(`FLUSHALL, FLUSHDB or SWAPDB ran on ${master.label} (no per-key events exist for it)`);
      }
    } catch (err) {
      // A master lost: its subscriber reports the gap, and the run's own reconnection brings the side back.
      if (!isRefusal(err) && !(err instanceof Error)) throw err;
    }
  }
}

const address = (master: Connection): string => `${master.endpoint.host}:${master.endpoint.port}`;

/** The event class CONFIG GET says is on, a refusal when the flags cannot serve, or undefined where CONFIG is refused. */
async function configuredClass(master: Connection): Promise<EventClass | undefined> {
  let flags: string;
  try {
    const reply = await master.send(['CONFIG', 'GET', 'notify-keyspace-events']);
    flags = Array.isArray(reply) ? asText(reply[1]) : '';
  } catch (err) {
    if (isRefusal(err)) return undefined;
    throw err;
  }
  const classes = flags.includes('A') ? `${flags}g$lshzxet` : flags;
  const missing = NEEDED_CLASSES.filter(([c]) => !classes.includes(c));
  const eventClass: EventClass | undefined = flags.includes('E') ? 'keyevent' : flags.includes('K') ? 'keyspace' : undefined;
  if (eventClass === undefined || missing.length > 0) {
    const lacking = [...(eventClass ? [] : ['E (or K)']), ...missing.map(([c, what]) => `${c} (${what})`)].join(', ');
    throw new LiveRefusal(`${master.label} has notify-keyspace-events "${flags}", which lacks ${lacking}: live mode would miss changes. Set it to at least "KEA" (CONFIG SET notify-keyspace-events KEA; on ElastiCache, in the parameter group)`);
  }
  return eventClass;
}

/** One write per class to prove, and the event each must bring. */
const PROBE_EVENTS: readonly [string, string][] = [
  ['set', '$'], ['del', 'g'], ['hset', 'h'], ['rpush', 'l'], ['sadd', 's'], ['zadd', 'z'], ['xadd', 't'], ['expired', 'x'],
];

/**
 * The events a probe must bring from `node`. A replica read from (SOURCE_READ_FROM) has no `expired` of its own:
 * its master's expiries reach it as deletions, `del` events.
 */
function probeEventsOf(source: Side, node: Connection): readonly [string, string][] {
  return source.primaryOf(node) === node ? PROBE_EVENTS : PROBE_EVENTS.filter(([event]) => event !== 'expired');
}

function probeComplete(kinds: Set<string> | undefined, events: readonly [string, string][]): boolean {
  if (!kinds) return false;
  return ['E', 'K'].some((c) => events.every(([event]) => kinds.has(`${c}:${event}`)));
}

/** Writes the probe key through each kind of change on `master`, in a slot it serves; gone within a second whatever happens. */
async function writeProbes(master: Connection, source: Side): Promise<string> {
  const slot = source.cluster ? source.mastersBySlot.find((m) => m.master === master)?.slot ?? 0 : 0;
  const key = `${PROBE_PREFIX}{${slotTag(slot)}}:${randomBytes(4).toString('hex')}`;
  if (source.cluster && keySlot(Buffer.from(key)) !== slot) throw new Error('probe key outside its slot');
  const steps: string[][] = [
    ['SET', key, '1', 'PX', '1000'], ['DEL', key], ['HSET', key, 'f', 'v'], ['DEL', key], ['RPUSH', key, 'v'], ['DEL', key],
    ['SADD', key, 'v'], ['DEL', key], ['ZADD', key, '1', 'v'], ['DEL', key], ['XADD', key, '*', 'f', 'v'], ['DEL', key], ['SET', key, '1', 'PX', '1'],
  ];
  // Written on the master even where reads go to its replica (SOURCE_READ_FROM): the events come through it.
  const writer = source.primaryOf(master);
  for (const step of steps) await writer.send(step);
  // Reading an expired key expires it at once: the `expired` event comes without waiting for the active cycle.
  await sleep(5);
  await writer.send(['EXISTS', key]);
  return key;
}

/** FLUSHALL + FLUSHDB + SWAPDB calls so far (INFO commandstats), -1 where INFO is refused. */
async function flushCount(master: Connection): Promise<number> {
  let info: string;
  try {
    info = asText(await master.send(['INFO', 'commandstats']));
  } catch (err) {
    if (isRefusal(err)) return -1;
    throw err;
  }
  let total = 0;
  for (const match of info.matchAll(/^cmdstat_(?:flushall|flushdb|swapdb):calls=(\d+)/gm)) total += Number(match[1]);
  return total;
}
