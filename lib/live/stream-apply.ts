// Live mode on a source read as its replica: after the snapshot, each master's replication stream applied to the
// target in its order, command by command (transactions as transactions), no keyspace events needed. What cannot
// go as it is (a key outside the selection feeding one inside, keys in several target slots, a command the target
// refuses, a lost reply) becomes a re-copy of the keys it wrote, read from the source as it is then; such a key
// stays on the re-copy path for the rest of the run, so it never meets a command applied twice.
import { ErrorReply } from '@redis/client';
import { keySlot } from '../net/cluster.js';
import { isConnectionLoss, type Connection } from '../net/connections.js';
import type { Arg } from '../net/reply.js';
import { scanPages } from '../net/scan-pages.js';
import type { RespWriter, PipeReply } from '../net/resp.js';
import type { Side } from '../net/side.js';
import type { ErrorLog } from '../report/error-log.js';
import { displayKey, type RecordBatch } from '../records.js';
import type { Settings } from '../settings.js';
import { matchTest } from '../sources/glob.js';
import type { ReplicaLink, StreamCommand, StreamPosition } from '../sources/replica-link.js';
import { leftOutTest } from '../sources/scan.js';
import { CommandKeys } from './command-keys.js';
import type { LagStats } from './lag.js';

/** Stream commands taken and applied at a time. */
const BATCH_COMMANDS = 2000;
/** Bytes of commands pipelined to one target node before their replies are awaited. */
const WRITER_BYTES = 256 * 1024;

/** Why keys were re-copied rather than their commands applied: said in the summary, with counts. */
export type RecopyReason = 'outside' | 'slots' | 'refused' | 'lost' | 'moved' | 'undeclared' | 'resumed';
const REASONS: Record<RecopyReason, string> = {
  outside: 'fed by keys outside the selection',
  slots: 'keys in several target slots',
  refused: 'refused by the target',
  lost: 'a reply lost with the target\'s connection',
  moved: 'moved or copied between databases',
  undeclared: 'written from keys the command does not name (SORT … BY/GET)',
  resumed: 'written again after the checkpoint\'s offset (a resumed run may have applied them already)',
};

/** Commands the applier handles itself, never forwarded as they are (nor inside a transaction); COPY … DB too (handledApart). */
const OWN = new Set(['select', 'ping', 'replconf', 'flushall', 'flushdb', 'swapdb', 'function', 'move']);

/** What the live phase applied, per run (all masters' appliers add up here). */
export class StreamTally {
  commands = 0;
  applied = 0;
  transactions = 0;
  /** Commands on keys outside the selection, or on no key (PUBLISH), left alone. */
  skipped = 0;
  failed = 0;
  /** Keys copied from new snapshots (a master started over). */
  resnapshotted = 0;
  readonly recopied = new Map<RecopyReason, number>();
  /** Keys on the re-copy path (a command on one of them re-copies its keys), by latin1 name. */
  readonly dirty = new Set<string>();
  /** Keys the stream touched, for the verification at the cutover (bounded; past it every key is verified). */
  readonly changed = new Map<string, Buffer>();
  changedOverflow = false;
  firstRefusal: string | undefined;

  touched(key: Buffer, max: number): void {
    const id = key.toString('latin1');
    if (this.changed.has(id)) return;
    // A copy: the key is a view of the stream's chunk, which would stay in memory as long as the key is kept.
    if (this.changed.size < max) this.changed.set(id, Buffer.from(key));
    else this.changedOverflow = true;
  }

  reasonsLine(): string {
    return [...this.recopied].map(([reason, n]) => `${n} ${REASONS[reason]}`).join(', ');
  }

  get recopiedTotal(): number {
    let n = 0;
    for (const count of this.recopied.values()) n += count;
    return n;
  }
}

/** What each master's applier needs from the run. */
export interface ApplyContext {
  settings: Settings;
  origin: Side;
  target: Side;
  log: ErrorLog;
  lag: LagStats;
  tally: StreamTally;
  /** Re-copies `keys` from the source as it is now (deleting those gone); false when the copy stopped first. */
  recopy: (keys: Buffer[]) => Promise<boolean>;
  /** Whether a source key is this master's (its slot, for a cluster source): what its FLUSHALL empties. */
  owns: (key: Buffer) => boolean;
  /** This master's FUNCTION commands are applied (a cluster's masters each run them: one applies them). */
  appliesFunctions: boolean;
  /** A resumed run: commands up to this offset may already be on the target, so their keys are re-copied. */
  recopyUntil: number;
  /** Waits for a lost target node to answer again (RECONNECT_TIMEOUT), or throws. */
  recover: (label: string, err: unknown) => Promise<void>;
  /** Stop once the stream is applied up to this offset (the cutover); undefined: go on. */
  stopAt: () => number | undefined;
  /** A data command was applied (for LIVE_IDLE_TIMEOUT). */
  active: () => void;
  changedMax: number;
}

/** The run cannot go on from the stream (SWAPDB on its database): one line, exit 1. */
export class StreamStop extends Error {}

/** One command planned for a target node, its keys (as the source names them), and its replies' place. */
interface Planned {
  keys: Buffer[];
  replies: number;
  transaction: boolean;
  what: string;
}

/** Commands pipelined per target node until `send`: then each reply checked, failures re-copied. */
class NodeBatch {
  readonly planned: Planned[] = [];
  constructor(readonly node: Connection, readonly writer: RespWriter) {}
}

/** Applies one master's stream, from the offset its snapshot stands at, until the cutover. */
export class StreamApplier {
  /** The database the stream has SELECTed (-1 until it says), and as of the offset applied. */
  private db: number;
  private appliedDb: number;
  /** A transaction being read (MULTI seen, EXEC not yet), and the bytes it takes. */
  private transaction: StreamCommand[] | undefined;
  private transactionBytes = 0;
  private batches = new Map<Connection, NodeBatch>();
  /** The command being applied ends at or before ctx.recopyUntil: its keys are re-copied, not written again. */
  private replaying = false;
  private readonly recopies = new Map<string, Buffer>();
  private readonly selected: (key: Buffer) => boolean;

  constructor(private link: ReplicaLink, private readonly keys: CommandKeys, private readonly ctx: ApplyContext, db = -1) {
    this.db = this.appliedDb = db;
    const leftOut = leftOutTest(ctx.settings);
    const matches = matchTest(ctx.settings.matchPattern);
    this.selected = (key) => !leftOut(key) && (!matches || matches(key));
  }

  /**
   * The stream goes on on a new link (a partial resync from the offset applied): a transaction read only in
   * part is dropped, as its MULTI is not counted in the offset; the new link sends it again whole.
   */
  follow(link: ReplicaLink): void {
    this.link = link;
    this.transaction = undefined;
    this.transactionBytes = 0;
  }

  /** Where this master's stream stands as applied to the target (for CHECKPOINT_FILE); none while a new snapshot is copied. */
  position(): StreamPosition | undefined {
    const { link } = this;
    return link.streaming ? { address: link.address, replicationId: link.replicationId, offset: link.offset, db: this.appliedDb } : undefined;
  }

  /** Applies commands as they come until the cutover's offset is reached. */
  async run(): Promise<void> {
    for (;;) {
      const stopAt = this.ctx.stopAt();
      if (stopAt !== undefined && this.link.offset >= stopAt) return;
      if (this.link.behind === 0) {
        await this.link.arrival(100);
        continue;
      }
      const { commands, sizes } = await this.link.commands(BATCH_COMMANDS);
      await this.applyAll(commands, sizes);
    }
  }

  private async applyAll(commands: StreamCommand[], sizes: number[]): Promise<void> {
    let bytes = 0;
    let getack = false;
    const arrivals: number[] = [];
    for (let i = 0; i < commands.length; i++) {
      const command = commands[i] as StreamCommand;
      const size = sizes[i] as number;
      this.replaying = this.link.offset + bytes + (this.transaction ? this.transactionBytes : 0) + size <= this.ctx.recopyUntil;
      if (this.transaction) {
        this.transactionBytes += size;
        if (nameIs(command.args[0], 'exec')) {
          const transaction = this.transaction;
          this.transaction = undefined;
          await this.applyTransaction(transaction);
          bytes += this.transactionBytes;
          arrivals.push(command.arrivedAt);
        } else this.transaction.push(command);
        continue;
      }
      if (nameIs(command.args[0], 'multi')) {
        this.transaction = [];
        this.transactionBytes = size;
        continue;
      }
      bytes += size;
      const kind = await this.applyOne(command);
      if (kind === 'getack') getack = true;
      if (kind !== 'data') continue;
      this.ctx.tally.commands += 1;
      arrivals.push(command.arrivedAt);
    }
    await this.sendOrStop();
    this.link.applied(bytes);
    this.appliedDb = this.db;
    this.ctx.lag.add(arrivals);
    if (arrivals.length > 0) this.ctx.active();
    if (getack) this.link.ack();
  }

  /** One command (outside a transaction, or one of a transaction that cannot go whole); what it was, for the offset, the lag and GETACK. */
  private async applyOne(command: StreamCommand): Promise<'data' | 'control' | 'getack'> {
    const { args } = command;
    const name = (args[0] as Buffer).toString('latin1').toLowerCase();
    switch (name) {
      case 'select':
        this.db = Number((args[1] as Buffer).toString('latin1'));
        return 'control';
      case 'ping':
        return 'control';
      case 'replconf':
        return nameIs(args[1], 'getack') ? 'getack' : 'control';
      case 'flushall':
        await this.flushTarget();
        this.ctx.tally.applied += 1;
        return 'data';
      case 'flushdb':
        if (this.db !== this.ourDb) return 'data';
        await this.flushTarget();
        this.ctx.tally.applied += 1;
        return 'data';
      case 'swapdb':
        if (args.slice(1, 3).some((db) => Number(db.toString('latin1')) === this.ourDb)) {
          throw new StreamStop(`the source ran SWAPDB on database ${this.ourDb}, which replaces its keys all at once: run the migration again for a new snapshot`);
        }
        return 'data';
      case 'function':
        await this.applyEverywhere(args);
        return 'data';
      case 'move':
        this.acrossDatabases(args[1], this.db === this.ourDb || Number((args[2] ?? Buffer.alloc(0)).toString('latin1')) === this.ourDb);
        return 'data';
      default: {
        const intoDb = name === 'copy' ? copyDatabase(args) : undefined;
        if (intoDb !== undefined) this.acrossDatabases(args[2], intoDb === this.ourDb);
        else if (this.db === this.ourDb) await this.applyKeyed([command]);
        else this.ctx.tally.skipped += 1;
        return 'data';
      }
    }
  }

  private get ourDb(): number {
    return this.ctx.settings.source.db;
  }

  /**
   * MOVE, or COPY … DB: a key leaves or enters our database (the target's database is another number, so the
   * command cannot go as it is): when `ours`, the key in our database is re-copied (gone: deleted).
   */
  private acrossDatabases(key: Buffer | undefined, ours: boolean): void {
    if (key && ours && this.selected(key)) {
      this.ctx.tally.touched(key, this.ctx.changedMax);
      this.recopy([key], 'moved');
    } else this.ctx.tally.skipped += 1;
  }

  /** A transaction: whole, when all its commands are plain keyed ones; else command by command, in order. */
  private async applyTransaction(commands: StreamCommand[]): Promise<void> {
    this.ctx.tally.commands += commands.length;
    const plain = commands.every(({ args }) => !handledApart(args));
    if (plain && this.db === this.ourDb) return this.applyKeyed(commands);
    for (const command of commands) await this.applyOne(command);
  }

  /**
   * Commands on our database (one, or a transaction's): forwarded when every key is selected, none is on
   * the re-copy path and they all go to one target slot (or one server); otherwise their selected keys are
   * re-copied.
   */
  private async applyKeyed(commands: StreamCommand[]): Promise<void> {
    const { tally } = this.ctx;
    const { names } = this.ctx.settings;
    const keyed: { args: Buffer[]; positions: number[] }[] = [];
    for (const { args } of commands) {
      const known = this.keys.positions(args);
      const positions = known === 'ask' ? await this.keys.ask(args) : known;
      // A command on no key (PUBLISH) is left alone; one whose keys the source would not name, a failure.
      if (!positions) this.notApplied(args);
      else if (positions.length > 0) keyed.push({ args, positions });
      else tally.skipped += 1;
    }
    const keys = keyed.flatMap(({ args, positions }) => positions.map((p) => args[p] as Buffer));
    const selected = keys.filter(this.selected);
    if (selected.length === 0) {
      tally.skipped += keyed.length;
      return;
    }
    for (const key of selected) tally.touched(key, this.ctx.changedMax);
    if (selected.length < keys.length) return this.recopy(selected, 'outside');
    if (this.replaying) return this.recopy(selected, 'resumed');
    if (keyed.some(({ args }) => readsUndeclaredKeys(args))) return this.recopy(selected, 'undeclared');
    if (selected.some((key) => tally.dirty.has(key.toString('latin1')))) return this.recopy(selected);
    const targetKeys = selected.map((key) => names.toTarget(key));
    const node = this.nodeFor(targetKeys);
    if (!node) return this.recopy(selected, 'slots');
    const batch = this.batchFor(node);
    const transaction = keyed.length > 1;
    if (transaction) batch.writer.command(['MULTI']);
    for (const { args, positions } of keyed) batch.writer.command(names.renames ? renamed(args, positions, (key) => names.toTarget(key)) : args);
    if (transaction) batch.writer.command(['EXEC']);
    batch.planned.push({ keys: selected, replies: transaction ? keyed.length + 2 : 1, transaction, what: transaction ? 'a transaction (MULTI/EXEC)' : (keyed[0]?.args[0] ?? Buffer.alloc(0)).toString('latin1') });
    if (transaction) tally.transactions += 1;
    if (batch.writer.at >= WRITER_BYTES) await this.sendOrStop();
  }

  /** A command whose keys the source would not name: a failure, logged (nothing is known to re-copy). */
  private notApplied(args: Buffer[]): void {
    const name = args[0]?.toString('latin1') ?? '?';
    this.ctx.tally.failed += 1;
    this.ctx.tally.firstRefusal ??= `${name}: its keys are unknown (COMMAND GETKEYS refused)`;
    this.ctx.log.write(`Not applied: a ${name} command from the replication stream, whose keys the source would not name (COMMAND GETKEYS); compare the target with the source`, 'ERROR');
  }

  /** The one target node all the keys go to; undefined when a cluster target would take them in several slots. */
  private nodeFor(keys: Buffer[]): Connection | undefined {
    const { target } = this.ctx;
    if (!target.cluster) return target.nodeForSlot(0);
    const slot = keySlot(keys[0] as Buffer);
    return keys.every((key) => keySlot(key) === slot) ? target.nodeForSlot(slot) : undefined;
  }

  private batchFor(node: Connection): NodeBatch {
    let batch = this.batches.get(node);
    if (!batch) {
      batch = new NodeBatch(node, node.writer(WRITER_BYTES + 64 * 1024));
      this.batches.set(node, batch);
    }
    return batch;
  }

  /** Keys to copy again from the source (after what is pipelined now), and on the re-copy path from now on. */
  private recopy(keys: Buffer[], reason?: RecopyReason): void {
    const { tally } = this.ctx;
    for (const key of keys) {
      const name = key.toString('latin1');
      tally.dirty.add(name);
      this.recopies.set(name, key);
    }
    if (reason) tally.recopied.set(reason, (tally.recopied.get(reason) ?? 0) + keys.length);
  }

  /** `send`, or a stop when the copy behind the re-copies stopped first: the offset must not move past them. */
  private async sendOrStop(): Promise<void> {
    if (!(await this.send())) throw new StreamStop('the copy behind the live phase stopped (see above), so the stream is not applied past the last command it took');
  }

  /**
   * Sends what is pipelined, node by node, and checks every reply: a refusal, or a reply lost with its
   * connection (the command may or may not have run), sends its keys to be re-copied. Then the re-copies,
   * after every command before them, so none overtakes a command on its key.
   */
  private async send(): Promise<boolean> {
    const batches = [...this.batches.values()];
    this.batches = new Map();
    await Promise.all(batches.map((batch) => this.sendBatch(batch)));
    if (this.recopies.size === 0) return true;
    const keys = [...this.recopies.values()];
    this.recopies.clear();
    return this.ctx.recopy(keys);
  }

  private async sendBatch(batch: NodeBatch): Promise<void> {
    const { tally } = this.ctx;
    let replies: PipeReply[];
    try {
      replies = await batch.node.sendPipelined(batch.writer);
    } catch (err) {
      if (!isConnectionLoss(err) && batch.node.lostBecause === undefined) throw err;
      await this.ctx.recover(batch.node.label, err);
      this.recopy(batch.planned.flatMap((p) => p.keys), 'lost');
      return;
    }
    let at = 0;
    for (const planned of batch.planned) {
      const own = replies.slice(at, at + planned.replies);
      at += planned.replies;
      const refusal = refusalIn(own, planned.transaction);
      if (refusal === undefined) {
        tally.applied += planned.transaction ? planned.replies - 2 : 1;
        continue;
      }
      tally.firstRefusal ??= `${planned.what}: ${refusal}`;
      this.ctx.log.write(`The target refused ${planned.what} on |${planned.keys.map((k) => displayKey(k)).join('|, |')}|: ${refusal}; the keys are copied again from the source`, 'WARNING');
      this.recopy(planned.keys, 'refused');
    }
  }

  /**
   * FLUSHALL, FLUSHDB on our database, or this master starting over from a new snapshot: what is pipelined goes
   * first, then every selected key on the target this master holds (`owns`: on a cluster source, its slots') is
   * deleted, and only those: the target may hold other keys of its own.
   */
  async flushTarget(): Promise<void> {
    await this.sendOrStop();
    const { names, matchPattern } = this.ctx.settings;
    const pattern = names.renames ? '*' : matchPattern;
    for (const master of this.ctx.target.masters) {
      for await (const found of scanPages(master, { match: pattern, count: 1000 })) {
        const ours = found.filter((key) => {
          const source = names.toSource(key);
          return source !== undefined && this.selected(source) && this.ctx.owns(source);
        });
        // A cluster target takes a multi-key UNLINK within one slot only.
        if (ours.length > 0) for (const group of this.ctx.target.cluster ? bySlot(ours) : [ours]) await master.send(['UNLINK', ...group]);
      }
    }
  }

  /** FUNCTION LOAD, DELETE, FLUSH, RESTORE: the libraries follow the source's, on every target master. */
  private async applyEverywhere(args: Buffer[]): Promise<void> {
    await this.sendOrStop();
    if (!this.ctx.settings.copyFunctions || !this.ctx.appliesFunctions) {
      this.ctx.tally.skipped += 1;
      return;
    }
    const replies = await Promise.all(this.ctx.target.masters.map((master) => master.send(args as Arg[]).then(() => undefined, (err: unknown) => (err instanceof Error ? err.message : String(err)))));
    const refusal = replies.find((r) => r !== undefined);
    if (refusal === undefined) {
      this.ctx.tally.applied += 1;
      return;
    }
    this.ctx.tally.failed += 1;
    this.ctx.tally.firstRefusal ??= `FUNCTION ${(args[1] ?? Buffer.alloc(0)).toString('latin1')}: ${refusal}`;
    this.ctx.log.write(`The target refused FUNCTION ${(args[1] ?? Buffer.alloc(0)).toString('latin1')} from the replication stream: ${refusal}`, 'ERROR');
  }
}

/** A refusal among a command's replies (a transaction's: MULTI's, each QUEUED, and EXEC's array); undefined if none. */
function refusalIn(replies: PipeReply[], transaction: boolean): string | undefined {
  for (const reply of replies) if (reply instanceof ErrorReply) return reply.message;
  if (!transaction) return undefined;
  const exec = replies[replies.length - 1];
  if (exec === null) return 'the transaction was aborted';
  for (const item of Array.isArray(exec) ? (exec as unknown[]) : []) if (item instanceof ErrorReply) return item.message;
  return undefined;
}

/** A command applyOne handles itself (OWN, or COPY … DB): never forwarded as it is, nor as part of a transaction. */
function handledApart(args: Buffer[]): boolean {
  const name = (args[0] as Buffer).toString('latin1').toLowerCase();
  return OWN.has(name) || (name === 'copy' && copyDatabase(args) !== undefined);
}

/** COPY's DB option: the database the copy goes into, or undefined without one. */
function copyDatabase(args: Buffer[]): number | undefined {
  const at = args.findIndex((arg, i) => i > 2 && nameIs(arg, 'db'));
  return at > 0 ? Number((args[at + 1] ?? Buffer.alloc(0)).toString('latin1')) : undefined;
}

/** SORT … BY or GET reads keys by pattern, which no key list names (nor renames): its result is re-copied. */
function readsUndeclaredKeys(args: Buffer[]): boolean {
  if (!nameIs(args[0], 'sort') && !nameIs(args[0], 'sort_ro')) return false;
  return args.some((arg, i) => i > 1 && (nameIs(arg, 'by') || nameIs(arg, 'get')));
}

/** Keys grouped by hash slot. */
function bySlot(keys: Buffer[]): Buffer[][] {
  const groups = new Map<number, Buffer[]>();
  for (const key of keys) {
    const slot = keySlot(key);
    const group = groups.get(slot);
    if (group) group.push(key);
    else groups.set(slot, [key]);
  }
  return [...groups.values()];
}

/** The arguments with the keys at `positions` renamed for the target. */
function renamed(args: Buffer[], positions: number[], toTarget: (key: Buffer) => Buffer): Buffer[] {
  const out = args.slice();
  for (const p of positions) out[p] = toTarget(args[p] as Buffer);
  return out;
}

function nameIs(arg: Buffer | undefined, name: string): boolean {
  return arg !== undefined && arg.length === name.length && arg.toString('latin1').toLowerCase() === name;
}

/** Feeds re-copies to one long copy of the live phase: each batch resolves once it is written (or abandoned). */
export class RecopyFeed {
  private readonly waiting: RecordBatch[] = [];
  private wake: (() => void) | undefined;
  private closed = false;
  private done: Promise<unknown> = new Promise(() => undefined);

  /** The copy that takes the batches: once it ends, nothing waits on it any more. */
  servedBy(copy: Promise<unknown>): void {
    this.done = copy;
  }

  /** True once every batch of `keys` is written; false when the copy ended first (stopped: the keys may not be). */
  recopy(keys: Buffer[], size: number): Promise<boolean> {
    const settled: Promise<void>[] = [];
    for (let i = 0; i < keys.length; i += size) {
      settled.push(new Promise<void>((resolve) => this.waiting.push({ keys: keys.slice(i, i + size), settled: () => resolve() })));
    }
    this.wake?.();
    return Promise.race([Promise.all(settled).then(() => !this.stopped()), this.done.then(() => false)]);
  }

  /** The copy stopped taking batches (the error limit, a lost server): settled batches may not have been written. */
  stopped: () => boolean = () => false;

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *batches(): AsyncGenerator<RecordBatch> {
    for (;;) {
      const next = this.waiting.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}
