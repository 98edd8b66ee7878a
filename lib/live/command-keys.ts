// Where a command's keys are: the source's own command table (COMMAND), read once, so each command of the
// replication stream can be filtered, renamed and routed by its keys. Commands whose keys move with their
// arguments (ZUNIONSTORE, SORT … STORE, EVAL as older servers propagate it) are asked of the source (COMMAND GETKEYS).
import { isConnectionLoss, type Connection } from '../net/connections.js';
import { asArray, asText, type Reply } from '../net/reply.js';

interface KeySpec {
  first: number;
  last: number;
  step: number;
  movable: boolean;
}

type Recover = (label: string, err: unknown, lostSince: number) => Promise<void>;

export class CommandKeys {
  private constructor(
    private readonly table: ReadonlyMap<string, KeySpec>,
    /** Commands whose entry is a container (XGROUP, FUNCTION): their subcommands are in the table as "xgroup|create". */
    private readonly containers: ReadonlySet<string>,
    /** The source master asked now (a failover changes it). */
    private readonly source: () => Connection,
    /** Waits out a lost connection to it: RECONNECT_TIMEOUT, counted from `lostSince`, the first loss of the same ask. */
    private readonly recover: Recover,
  ) {}

  static async learn(source: () => Connection, recover: Recover): Promise<CommandKeys> {
    const table = new Map<string, KeySpec>();
    const containers = new Set<string>();
    const add = (entry: Reply): void => {
      const fields = asArray(entry);
      const name = asText(fields[0] ?? null).toLowerCase();
      const flags = asArray(fields[2] ?? []).map((flag) => asText(flag));
      table.set(name, { first: Number(fields[3]), last: Number(fields[4]), step: Number(fields[5]), movable: flags.includes('movablekeys') });
      // Redis 7 lists subcommands tenth, each an entry of its own.
      const subcommands = asArray(fields[9] ?? []);
      if (subcommands.length > 0) containers.add(name);
      for (const sub of subcommands) add(sub);
    };
    for (const entry of asArray(await source().send(['COMMAND']))) add(entry);
    return new CommandKeys(table, containers, source, recover);
  }

  /** The lower-case name the table knows the command by ("set", or "xgroup|create"). */
  nameOf(args: readonly Buffer[]): string {
    const name = (args[0] ?? Buffer.alloc(0)).toString('latin1').toLowerCase();
    if (!this.containers.has(name) || args.length < 2) return name;
    return `${name}|${(args[1] as Buffer).toString('latin1').toLowerCase()}`;
  }

  /** The indexes of the command's keys in `args`; 'ask' when only the source can tell (COMMAND GETKEYS). */
  positions(args: readonly Buffer[]): number[] | 'ask' {
    const spec = this.table.get(this.nameOf(args));
    if (!spec || spec.movable) return 'ask';
    if (spec.first <= 0) return [];
    const last = spec.last < 0 ? args.length + spec.last : Math.min(spec.last, args.length - 1);
    const positions: number[] = [];
    for (let i = spec.first; i <= last; i += Math.max(spec.step, 1)) positions.push(i);
    return positions;
  }

  /** The key indexes as the source finds them; undefined when it cannot say (then the command's keys are unknown). */
  async ask(args: readonly Buffer[]): Promise<number[] | undefined> {
    let keys: Reply;
    let lostSince: number | undefined;
    for (;;) {
      const node = this.source();
      try {
        keys = await node.send(['COMMAND', 'GETKEYS', ...args]);
        break;
      } catch (err) {
        // A lost connection is waited out, then asked again; RECONNECT_TIMEOUT counts from the first loss, so a
        // server that answers PING but never this does not hold the stream for ever.
        if (isConnectionLoss(err)) {
          lostSince ??= Date.now();
          await this.recover(node.label, err, lostSince);
          continue;
        }
        // "The command has no key arguments" is an answer; any other refusal leaves the keys unknown.
        return /no key arguments/i.test(err instanceof Error ? err.message : '') ? [] : undefined;
      }
    }
    // Keys come back in the order of their positions: each is looked for after the one before.
    const positions: number[] = [];
    let from = 1;
    for (const key of asArray(keys) as Buffer[]) {
      const at = args.findIndex((arg, i) => i >= from && arg.equals(key));
      if (at < 0) return undefined;
      positions.push(at);
      from = at + 1;
    }
    return positions;
  }
}
