// Where each key lives on one side: a standalone server is a single node; a Redis Cluster maps each key's
// hash slot to the master that owns it, read from CLUSTER SLOTS and read again after a MOVED redirection.
import { isIP } from 'node:net';
import { keySlot, SLOT_COUNT, type SlotSet } from './cluster.js';
import { Connection, ConnectionError, describeError } from './connections.js';
import { asArray, asNumber, asText, type Reply } from './reply.js';
import type { Endpoint } from '../settings.js';

/** The nodes of one side and which of them owns each key. */
export class Side {
  /** Every connection opened, by host:port; a promise, so two lookups racing for a new node share one connection. */
  private readonly nodes = new Map<string, Promise<Connection>>();
  private slots: Connection[] = [];
  /** A slot map being read; concurrent MOVED redirections wait for the same read. */
  private reading: Promise<void> | undefined;
  /** Each slot's shard (master and replica addresses) as CLUSTER SLOTS named it at the start of the run. */
  private openedWith: ReadonlySet<string>[] = [];
  private shards: ReadonlySet<string>[] = [];
  readonly cluster: boolean;
  /** SOURCE_READ_FROM: the node each master's reads go to (itself, or a replica), by the master's address. */
  private readonly readers = new Map<string, Promise<Connection>>();
  /** A replica read from, and the master it copies (live mode's probe keys are written there). */
  private readonly primaries = new Map<Connection, Connection>();
  /** What the run should say about where it reads (a replica chosen, its lag, a master read for want of one). */
  readonly notes: string[] = [];

  private constructor(readonly endpoint: Endpoint, private readonly only: SlotSet | undefined) {
    this.cluster = endpoint.cluster === true;
  }

  /**
   * Connects to the server or, for a cluster, to every master the seed node names. With `only` (a source limited
   * to some slots: SOURCE_SLOTS, a shard), `masters` are those serving any of them: no other master is read.
   */
  static async open(endpoint: Endpoint, only?: SlotSet): Promise<Side> {
    if (endpoint.tls?.verify === 'none') {
      process.stderr.write(`Warning: TLS to the ${endpoint.side} checks no certificate (TLS_VERIFY=none): anyone in between can read the data\n`);
    }
    const side = new Side(endpoint, only);
    const seed = await side.nodeAt(endpoint.host, endpoint.port, endpoint);
    try {
      if (!side.cluster) {
        if (seed.capabilities.clusterNode) throw new ConnectionError(`${seed.label}: this is a Redis Cluster node; set ${clusterSetting(endpoint)}=true to reach the whole cluster`);
        if (endpoint.side === 'destination' && seed.capabilities.replica) {
          throw new ConnectionError(`${seed.label}: this is a read-only replica (INFO replication role:slave); point the DESTINATION_REDIS_* settings at the primary`);
        }
        side.slots = new Array<Connection>(SLOT_COUNT).fill(await side.readerFor(seed));
      } else {
        if (!seed.capabilities.clusterNode) throw new ConnectionError(`${seed.label}: not a Redis Cluster node (cluster support disabled); set ${clusterSetting(endpoint)}=false`);
        await side.readSlots(seed);
        side.openedWith = side.shards;
      }
    } catch (err) {
      await side.close();
      throw err;
    }
    side.openedRunIds = new Set(side.masters.map((m) => m.capabilities.runId));
    return side;
  }

  /** Every master (the one server, for a standalone side); only those serving the side's slots, if it has some. */
  get masters(): Connection[] {
    const { only } = this;
    return [...new Set(only ? this.slots.filter((_, slot) => only.has(slot)) : this.slots)];
  }

  /** The share of the slots `master` serves that are the side's own (1 without a slot selection): for estimates. */
  shareOf(master: Connection): number {
    const { only } = this;
    if (!only) return 1;
    let served = 0;
    let ours = 0;
    this.slots.forEach((node, slot) => {
      if (node !== master) return;
      served++;
      if (only.has(slot)) ours++;
    });
    return served === 0 ? 0 : ours / served;
  }

  nodeFor(key: Buffer): Connection {
    return this.slots[keySlot(key)] as Connection;
  }

  /** The slot ranges `master` serves now, as "0-5460,10923-16383"; empty for a standalone server. */
  slotRangesOf(master: Connection): string {
    if (!this.cluster) return '';
    const ranges: string[] = [];
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
      if (this.slots[slot] !== master) continue;
      const first = slot;
      while (slot + 1 < SLOT_COUNT && this.slots[slot + 1] === master) slot++;
      ranges.push(first === slot ? String(first) : `${first}-${slot}`);
    }
    return ranges.join(',');
  }

  /** The master serving `slot` now. */
  nodeForSlot(slot: number): Connection {
    return this.slots[slot] as Connection;
  }

  /** A slot each master serves (one of the side's own, if it has some): where its scan goes on after a failover. */
  get mastersBySlot(): { slot: number; master: Connection }[] {
    const { only } = this;
    return this.masters.map((master) => ({ slot: this.slots.findIndex((node, slot) => node === master && (!only || only.has(slot))), master }));
  }

  /** run_ids of the masters at the start: another one at the end means a restart or a failover. */
  private openedRunIds = new Set<string>();

  /** Some master now is another server process than any at the start (restarted, or a replica promoted). */
  get mastersReplacedSinceStart(): boolean {
    return this.masters.some((m) => !this.openedRunIds.has(m.capabilities.runId));
  }

  /**
   * Whether a slot is now served outside the shard that served it at the start (resharding). A failover
   * within a shard (a replica promoted) is not a move: the scan follows it and starts that master over.
   */
  async slotsMovedSinceStart(): Promise<boolean> {
    if (!this.cluster) return false;
    await this.refreshSlots();
    return this.slots.some((node, slot) => !this.openedWith[slot]?.has(address(node.endpoint)));
  }

  /** Reads the slot map again from a master that answers (live mode watches for new or failed-over masters). */
  async refreshSlots(): Promise<void> {
    if (!this.cluster) return;
    await this.readSlots(this.masters.find((m) => m.lostBecause === undefined) ?? (this.masters[0] as Connection));
  }

  /**
   * After a lost connection: reconnects what was lost and, for a cluster, reads the slot map again from any
   * node that answers (a failover promotes a replica elsewhere). Throws while the side is not whole again;
   * the caller waits and tries again.
   */
  async reconnect(): Promise<boolean> {
    if (!this.cluster) return reconnectNode(this.slots[0] as Connection);
    const known = await Promise.allSettled(this.nodes.values());
    const nodes = known.flatMap((c) => (c.status === 'fulfilled' ? [c.value] : []));
    const lost = nodes.filter((node) => node.lostBecause !== undefined);
    await Promise.allSettled(lost.map(reconnectNode));
    if (lost.length === 0) return false;
    // Any node that answers, until one gives a whole map: one that has not seen the failover yet names the dead master.
    let lastError: unknown = new Error('no node of the cluster answers');
    for (const node of nodes.filter((n) => n.lostBecause === undefined)) {
      try {
        await this.readSlots(node);
        const stillLost = this.lost;
        if (!stillLost) return true;
        lastError = new Error(`${stillLost.label}: ${stillLost.lostBecause ?? 'lost'}`);
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  /**
   * Where `key` lives now, asked of the node the map names: it answers for itself, redirects with MOVED
   * (the map is read again) or, while its slot migrates, with ASK (the next command goes with ASKING).
   */
  async locate(key: Buffer): Promise<Connection> {
    const node = this.nodeFor(key);
    if (!this.cluster) return node;
    try {
      await node.send(['EXISTS', key]);
      return node;
    } catch (err) {
      const reason = describeError(err);
      // The cluster is failing over, or the slot is mid-move: the same node, after the caller's pause.
      if (/^(CLUSTERDOWN|TRYAGAIN)/.test(reason)) return node;
      const redirect = /^(MOVED|ASK) \d+ (\S+):(\d+)/.exec(reason);
      if (!redirect) throw err;
      const to = await this.nodeAt(redirect[2] as string, Number(redirect[3]));
      if (redirect[1] === 'ASK') return to.asking();
      await this.readSlots(to);
      return to;
    }
  }

  /** A master whose connection went away, if any did (connections no slot points at are not asked). */
  get lost(): Connection | undefined {
    return this.masters.find((c) => c.lostBecause !== undefined);
  }

  async close(): Promise<void> {
    const opened = await Promise.allSettled(this.nodes.values());
    await Promise.all(opened.map((c) => (c.status === 'fulfilled' ? c.value.close() : undefined)));
  }

  private readSlots(from: Connection): Promise<void> {
    this.reading ??= this.readSlotsFrom(from).finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async readSlotsFrom(from: Connection): Promise<void> {
    const slots = new Array<Connection>(SLOT_COUNT);
    const shards = new Array<ReadonlySet<string>>(SLOT_COUNT);
    for (const range of asArray(await from.send(['CLUSTER', 'SLOTS']))) {
      const [first, last, ...members] = asArray(range);
      // An empty host means "the node you asked".
      const addresses = members.map((member) => {
        const [host, port] = asArray(member as Reply);
        return { host: asText(host) || from.endpoint.host, port: asNumber(port) };
      });
      const master = addresses[0] as { host: string; port: number };
      // With SOURCE_READ_FROM, one of the replicas this map lists (its address as the cluster announces it).
      const node = await this.readerFor(await this.nodeAt(master.host, master.port), addresses.slice(1));
      slots.fill(node, asNumber(first), asNumber(last) + 1);
      shards.fill(new Set(addresses.map(address)), asNumber(first), asNumber(last) + 1);
    }
    // findIndex visits the holes of the sparse array too.
    const uncovered = slots.findIndex((node) => node === undefined);
    if (uncovered >= 0) throw new ConnectionError(`${from.label}: no node serves slot ${uncovered} (CLUSTER SLOTS); is the cluster fully set up?`);
    this.slots = slots;
    this.shards = shards;
  }

  /** The master a node read from copies (itself, for a master). */
  primaryOf(node: Connection): Connection {
    return this.primaries.get(node) ?? node;
  }

  /**
   * Where `master`'s reads go (SOURCE_READ_FROM): the master; or its online replica that has the most of its
   * stream (INFO replication), said with how far behind it is. Chosen once per master address.
   */
  private readerFor(master: Connection, listed?: readonly { host: string; port: number }[]): Promise<Connection> {
    const readFrom = this.endpoint.readFrom ?? 'master';
    if (readFrom === 'master' || master.capabilities.replica) return Promise.resolve(master);
    const key = address(master.endpoint);
    const known = this.readers.get(key);
    if (known) return known;
    const choosing = this.chooseReplica(master, readFrom, listed);
    this.readers.set(key, choosing);
    choosing.catch(() => this.readers.delete(key));
    return choosing;
  }

  /**
   * `listed`: a cluster's replicas of this master as CLUSTER SLOTS names them; INFO's own address for a replica
   * (as the master sees its connection) is used only where the map names none with its port.
   */
  private async chooseReplica(master: Connection, readFrom: 'replica' | 'replica_preferred', listed?: readonly { host: string; port: number }[]): Promise<Connection> {
    const info = asText(await master.send(['INFO', 'replication']));
    const replicas = onlineReplicas(info)
      .map((r) => ({ ...r, host: (listed?.find((a) => a.port === r.port && a.host === r.host) ?? listed?.find((a) => a.port === r.port))?.host ?? r.host }))
      .sort((a, b) => b.offset - a.offset);
    const masterOffset = Number(/^master_repl_offset:(\d+)/m.exec(info)?.[1] ?? 0);
    for (const replica of replicas) {
      try {
        const endpoint = { ...nodeEndpoint(this.endpoint, replica.host, replica.port), readonlyReplica: this.cluster };
        const node = await this.nodeAt(replica.host, replica.port, endpoint);
        this.primaries.set(node, master);
        const behind = Math.max(0, masterOffset - replica.offset);
        // A busy master is always a few bytes ahead of the offset its replica last acknowledged (once a second).
        const lagging = replica.lag > 1 || behind > LAGGING_BYTES;
        this.notes.push(
          lagging
            ? `Warning: reading ${node.label}, a replica of ${master.label} that lags it by ${behind} bytes of its stream (last heard from ${replica.lag} s ago): keys written on the master since may be missed or older`
            : `Reading ${node.label}, a replica of ${master.label} (SOURCE_READ_FROM=${readFrom}; ${behind} bytes behind)`,
        );
        return node;
      } catch {
        // A replica that INFO names but that does not answer us: the next one.
      }
    }
    if (readFrom === 'replica') {
      throw new ConnectionError(`${master.label} has no replica online that answers (INFO replication), and SOURCE_READ_FROM=replica; set SOURCE_READ_FROM=replica_preferred to read the master then`);
    }
    this.notes.push(`Warning: ${master.label} has no replica online that answers: reading the master itself (SOURCE_READ_FROM=replica_preferred)`);
    return master;
  }

  private nodeAt(host: string, port: number, endpoint = nodeEndpoint(this.endpoint, host, port)): Promise<Connection> {
    const name = `${host}:${port}`;
    const known = this.nodes.get(name);
    if (known) return known;
    const opening = Connection.open(endpoint);
    this.nodes.set(name, opening);
    // A failed open is not kept: the next lookup tries again, and close() passes over it.
    opening.catch(() => this.nodes.delete(name));
    return opening;
  }
}

const address = (at: { host: string; port: number }): string => `${at.host}:${at.port}`;

/** A replica further behind its master than this (or silent for over a second) is said to lag. */
const LAGGING_BYTES = 1024 * 1024;

/** INFO replication's `slaveN:ip=…,port=…,state=online,offset=…,lag=…` lines, online ones only. */
export function onlineReplicas(info: string): { host: string; port: number; offset: number; lag: number }[] {
  return [...info.matchAll(/^slave\d+:(.*)$/gm)].flatMap((line) => {
    const fields = new Map((line[1] ?? '').trim().split(',').map((pair) => pair.split('=') as [string, string]));
    if (fields.get('state') !== 'online' || !fields.get('ip') || !fields.get('port')) return [];
    return [{ host: fields.get('ip') as string, port: Number(fields.get('port')), offset: Number(fields.get('offset') ?? 0), lag: Number(fields.get('lag') ?? 0) }];
  });
}

/**
 * A lost node connected again (true), or found up (false); a target that came back as a replica (mid-failover)
 * is not back yet.
 */
async function reconnectNode(node: Connection): Promise<boolean> {
  const wasLost = node.lostBecause !== undefined;
  if (wasLost) await node.reconnect();
  if (node.endpoint.side === 'destination' && node.capabilities.replica) {
    node.drop(`READONLY: ${node.label} is a replica now`);
    throw new Error(`${node.label} is a replica now (a failover under way?)`);
  }
  return wasLost;
}

/**
 * The same server on both sides (the same run_id, or a cluster master shared) and the same database: a copy
 * would find every key present and do nothing.
 */
export function sameServer(source: Side, target: Side): boolean {
  if (source.endpoint.db !== target.endpoint.db) return false;
  const ids = new Set(source.masters.map((m) => m.capabilities.runId));
  return target.masters.some((m) => m.capabilities.runId !== '' && ids.has(m.capabilities.runId));
}

/** Why a run between the same server and database is refused: nothing would be copied. */
export const sameServerRefusal = (source: Side, db: number): string =>
  `the source and the target are the same server (run_id ${source.masters[0]?.capabilities.runId}) and database ${db}: nothing would be copied`;

function clusterSetting(endpoint: Endpoint): string {
  return endpoint.side === 'source' ? 'SOURCE_REDIS_CLUSTER' : 'DESTINATION_REDIS_CLUSTER';
}

/**
 * A master as the seed's settings reach it: same credentials and TLS. A node announced by IP address is
 * checked against the seed's host name, as one certificate usually covers every node of a managed cluster.
 */
function nodeEndpoint(seed: Endpoint, host: string, port: number): Endpoint {
  const endpoint: Endpoint = { ...seed, host, port };
  if (seed.tls && !seed.tls.servername && isIP(host) && !isIP(seed.host)) endpoint.tls = { ...seed.tls, servername: seed.host };
  return endpoint;
}
