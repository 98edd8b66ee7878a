// Load generator for live-mode tests and the bench: a seeded mix of writes (every type, binary keys, big lists, streams with pending
// entries) at a fixed rate over raw RESP. Run: tsx test/helpers/load-writer.ts port=6379 rate=20000 [name=value ...] (names in DEFAULTS).
import { connect, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { keySlot, SLOT_COUNT } from '../../lib/net/cluster.js';

/** Commands the mix picks from, with their default weights. */
export const MIX_DEFAULTS = {
  set: 15, append: 8, incr: 8, hset: 10, rpush: 10, sadd: 8, zadd: 8, xadd: 8, xreadgroup: 5,
  del: 5, expire: 3, pexpire: 3, rename: 9,
} as const;
export type MixCommand = keyof typeof MIX_DEFAULTS;
const MIX_NAMES = Object.keys(MIX_DEFAULTS) as MixCommand[];
/** Every command sent: the mix, plus the follow-ups it needs (LTRIM caps a big list, XGROUP CREATE starts a group). */
const SENT_NAMES = [...MIX_NAMES, 'ltrim', 'xgroup'] as const;
type SentName = (typeof SENT_NAMES)[number];
const CODE = Object.fromEntries(SENT_NAMES.map((name, i) => [name, i])) as Record<SentName, number>;

export const DEFAULTS = {
  host: '127.0.0.1',
  port: 6379,
  cluster: false,
  /** Operations per second. */
  rate: 1000,
  /** Seconds to run; 0 = until SIGTERM/SIGINT (or `count`). */
  duration: 0,
  /** Operations to send; 0 = no limit. */
  count: 0,
  /** Key names are `{prefix:N}:type:a|b`; must not contain braces. */
  prefix: 'load',
  /** Distinct key names, in pairs sharing a hash tag (RENAME goes between the two); big lists come on top. */
  keys: 10_000,
  seed: 1,
  /** Weights as `set:20,del:0,...`; unnamed commands keep their default weight. */
  mix: '',
  /** Lists that only grow (by `bigListBatch` per RPUSH, one RPUSH in four) until `bigListMax`, then LTRIM back to half. */
  bigLists: 2,
  bigListBatch: 20,
  bigListMax: 5000,
  /** Share of SETs that carry PX. */
  pxPercent: 20,
  /** Mean value size in bytes. */
  valueBytes: 32,
  /** How long a lost connection may take to come back before the run gives up (exit 2). */
  reconnectMs: 5000,
  /** Every this many ms a `progress {json}` line goes to stderr; 0 = none. */
  progressMs: 0,
  /** Exit when stdin closes: a parent that dies leaves no writer behind (load.ts sets it). */
  watchStdin: false,
};
export type WriterOptions = typeof DEFAULTS;

export interface WriterStats {
  ops: number;
  seconds: number;
  rate: number;
  errors: number;
  byCommand: Record<string, number>;
  /** Error replies by their first word (WRONGTYPE, MOVED, ERR...). */
  errorKinds: Record<string, number>;
  /** Commands sent on a connection that dropped before they were answered. */
  lost: number;
  /** Why the run gave up, when it did. */
  aborted?: string;
}

/** A bad argument: reported by its message alone. */
class UsageError extends Error {}

function parseArgs(argv: string[]): WriterOptions {
  const options: WriterOptions = { ...DEFAULTS };
  const record = options as unknown as Record<string, string | number | boolean>;
  for (const arg of argv) {
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq).replace(/^--/, '') : '';
    const text = arg.slice(eq + 1);
    const current = record[name];
    if (current === undefined) throw new UsageError(`unknown argument "${arg}"; use name=value with a name of: ${Object.keys(DEFAULTS).join(', ')}`);
    if (typeof current === 'boolean') record[name] = text === 'true' || text === '1';
    else if (typeof current === 'number') {
      const value = Number(text.replace(/_/g, ''));
      if (!Number.isFinite(value) || value < 0) throw new UsageError(`${name} must be a number of 0 or more, got "${text}"`);
      record[name] = value;
    } else record[name] = text;
  }
  if (options.rate <= 0) throw new UsageError('rate must be above 0');
  if (/[{}]/.test(options.prefix)) throw new UsageError('prefix must not contain braces: it goes inside the hash tag');
  return options;
}

function parseMix(text: string): number[] {
  const weights = new Map<string, number>(Object.entries(MIX_DEFAULTS));
  for (const part of text.split(',').filter((p) => p.trim() !== '')) {
    const [name = '', value = ''] = part.split(':').map((s) => s.trim().toLowerCase());
    const weight = Number(value);
    if (!weights.has(name) || !Number.isFinite(weight) || weight < 0) throw new UsageError(`bad mix entry "${part}"; use name:weight with a name of: ${MIX_NAMES.join(', ')}`);
    weights.set(name, weight);
  }
  const list = MIX_NAMES.map((name) => weights.get(name) ?? 0);
  if (list.every((w) => w === 0)) throw new UsageError('the mix has no command with a weight above 0');
  return list;
}

/** mulberry32: small, fast and seeded, so a run's command sequence depends on the seed alone. */
function makeRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- RESP ----

function readInt(buf: Buffer, from: number, to: number): number {
  let n = 0;
  let sign = 1;
  for (let i = from; i < to; i++) {
    const c = buf[i] as number;
    if (c === 45) sign = -1;
    else n = n * 10 + (c - 48);
  }
  return n * sign;
}

/** The index just past the RESP2 reply at `pos`, or -1 when `buf` ends before it does. Nothing is decoded. */
function skipReply(buf: Buffer, pos: number): number {
  if (pos >= buf.length) return -1;
  const cr = buf.indexOf(13, pos + 1);
  if (cr < 0 || cr + 1 >= buf.length) return -1;
  const next = cr + 2;
  const type = buf[pos];
  if (type === 36) { // $
    const len = readInt(buf, pos + 1, cr);
    if (len < 0) return next;
    return next + len + 2 <= buf.length ? next + len + 2 : -1;
  }
  if (type === 42) { // *
    let p = next;
    for (let i = readInt(buf, pos + 1, cr); i > 0; i--) {
      p = skipReply(buf, p);
      if (p < 0) return -1;
    }
    return p;
  }
  return next;
}

type Value = string | number | null | Error | Value[];

/** Decodes the reply at `pos` (setup only: CLUSTER SLOTS). */
function parseValue(buf: Buffer, pos: number): [Value, number] {
  const cr = buf.indexOf(13, pos + 1);
  const line = buf.toString('latin1', pos + 1, cr);
  const next = cr + 2;
  switch (buf[pos]) {
    case 43: return [line, next];
    case 45: return [new Error(line), next];
    case 58: return [Number(line), next];
    case 36: {
      const len = Number(line);
      return len < 0 ? [null, next] : [buf.toString('latin1', next, next + len), next + len + 2];
    }
    default: {
      const items: Value[] = [];
      let p = next;
      for (let i = Number(line); i > 0; i--) {
        const [item, after] = parseValue(buf, p);
        items.push(item);
        p = after;
      }
      return [items, p];
    }
  }
}

function encode(args: string[]): Buffer {
  const parts = [`*${args.length}\r\n`, ...args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`)];
  return Buffer.from(parts.join(''));
}

function openSocket(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.setNoDelay(true);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** One command on a fresh connection, for setup. */
async function query(host: string, port: number, args: string[]): Promise<Value> {
  const socket = await openSocket(host, port);
  try {
    return await new Promise<Value>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (skipReply(buf, 0) >= 0) resolve(parseValue(buf, 0)[0]);
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new Error(`connection to ${host}:${port} closed before a reply to ${args.join(' ')}`)));
      socket.write(encode(args));
    });
  } finally {
    socket.destroy();
  }
}

// ---- connections ----

const RING = 1 << 16;

/** A connection to one server (one master of a cluster): commands go out in order, so replies come back in that order. */
class Node {
  socket: Socket | undefined;
  out = Buffer.allocUnsafe(1 << 16);
  len = 0;
  /** Command codes of the commands awaiting a reply, oldest at `tail`. */
  ring = new Uint8Array(RING);
  head = 0;
  tail = 0;
  inflight = 0;
  pending: Buffer | undefined;
  downSince = 0;

  constructor(readonly host: string, readonly port: number) {}

  get name(): string {
    return `${this.host}:${this.port}`;
  }

  ensure(bytes: number): void {
    if (this.len + bytes <= this.out.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.out.length * 2, this.len + bytes));
    this.out.copy(bigger, 0, 0, this.len);
    this.out = bigger;
  }

  /** Writes `*n\r\n`, counts one command of `code` in flight. */
  begin(argc: number, code: number): void {
    this.ensure(16);
    this.len += this.out.write(`*${argc}\r\n`, this.len, 'latin1');
    this.ring[this.head] = code;
    this.head = (this.head + 1) & (RING - 1);
    this.inflight++;
  }

  /** A pre-encoded bulk string (command names). */
  raw(bytes: Buffer): void {
    this.ensure(bytes.length);
    this.len += bytes.copy(this.out, this.len);
  }

  bulk(bytes: Buffer, start = 0, end = bytes.length): void {
    this.ensure(end - start + 16);
    this.len += this.out.write(`$${end - start}\r\n`, this.len, 'latin1');
    this.len += bytes.copy(this.out, this.len, start, end);
    this.out[this.len++] = 13;
    this.out[this.len++] = 10;
  }

  text(value: string | number): void {
    const s = String(value);
    this.ensure(s.length + 16);
    this.len += this.out.write(`$${s.length}\r\n${s}\r\n`, this.len, 'latin1');
  }

  flush(): void {
    if (this.len === 0 || !this.socket) return;
    // write() keeps the buffer until it is sent, so it gets a copy and `out` is reused.
    this.socket.write(Buffer.from(this.out.subarray(0, this.len)));
    this.len = 0;
  }
}

const NAMES = Object.fromEntries(
  ['SET', 'APPEND', 'INCR', 'HSET', 'RPUSH', 'SADD', 'ZADD', 'XADD', 'XREADGROUP', 'DEL', 'EXPIRE', 'PEXPIRE', 'RENAME', 'LTRIM', 'XGROUP', 'PX', 'MAXLEN', '~', '*',
    'GROUP', 'COUNT', 'STREAMS', '>', 'CREATE', 'MKSTREAM', '0', '3', 'g', 'c0', 'c1', 'c2']
    .map((name) => [name, Buffer.from(`$${name.length}\r\n${name}\r\n`)]),
) as Record<string, Buffer>;
const N = (name: string): Buffer => NAMES[name] as Buffer;

// ---- the key space ----

/** Each pair of names shares a family; the family decides which commands write it, so no WRONGTYPE by design. */
const FAMILIES = ['string', 'counter', 'hash', 'list', 'set', 'zset', 'stream', 'gstream'] as const;
type Family = (typeof FAMILIES)[number];
const F = FAMILIES.length;
const FAMILY_INDEX = Object.fromEntries(FAMILIES.map((f, i) => [f, i])) as Record<Family, number>;
const EXISTS = 1;
/** Has a TTL, so may be gone already: not renamed (it would be "no such key"). */
const VOLATILE = 2;
/** A stream with group `g`. */
const GROUP = 4;
/** Not valid UTF-8, with CR LF and NUL in the middle. */
const BINARY_BYTES = Buffer.from([0xff, 0xfe, 0x00, 0x0d, 0x0a, 0x80, 0xc3, 0x28]);

class Writer {
  readonly random: () => number;
  readonly groups: number;
  readonly flags: Uint8Array;
  readonly slots: Int16Array;
  readonly bigLengths: number[];
  readonly weights: number[];
  readonly totalWeight: number;
  readonly binaryPool: Buffer;
  readonly textPool: Buffer;
  readonly nameBuf = Buffer.allocUnsafe(512);
  nodes: Node[] = [];
  /** Index into `nodes` for each slot (cluster), or all 0. */
  slotNode: Uint8Array = new Uint8Array(SLOT_COUNT);

  constructor(readonly o: WriterOptions) {
    this.random = makeRandom(o.seed);
    this.groups = Math.max(F, Math.ceil(o.keys / 2));
    this.flags = new Uint8Array(this.groups * 2);
    this.slots = new Int16Array(this.groups + o.bigLists).fill(-1);
    this.bigLengths = new Array<number>(o.bigLists).fill(0);
    this.weights = parseMix(o.mix);
    this.totalWeight = this.weights.reduce((a, b) => a + b, 0);
    this.binaryPool = Buffer.allocUnsafe(1 << 16);
    this.textPool = Buffer.allocUnsafe(1 << 16);
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    for (let i = 0; i < this.binaryPool.length; i++) {
      this.binaryPool[i] = this.int(256);
      this.textPool[i] = alphabet.charCodeAt(this.int(alphabet.length));
    }
  }

  int(n: number): number {
    return Math.floor(this.random() * n);
  }

  /** A group of `family`: groups cycle through the families. */
  groupOf(family: Family): number {
    const f = FAMILY_INDEX[family];
    return f + F * this.int(Math.floor((this.groups - 1 - f) / F) + 1);
  }

  familyOf(group: number): Family {
    return FAMILIES[group % F] as Family;
  }

  /** One group in four of each family has binary key names and values. */
  isBinary(group: number): boolean {
    return Math.floor(group / F) % 4 === 3;
  }

  /** Writes the key name of key `k` (group k>>1, variant k&1) into `nameBuf`; returns its length. */
  name(k: number): number {
    const group = k >> 1;
    let len = this.nameBuf.write(`{${this.o.prefix}:${group}}:${this.familyOf(group)}:`, 0, 'latin1');
    if (this.isBinary(group)) len += BINARY_BYTES.copy(this.nameBuf, len);
    this.nameBuf[len++] = k & 1 ? 0x62 : 0x61;
    return len;
  }

  bigName(i: number): number {
    return this.nameBuf.write(`{${this.o.prefix}:big:${i}}:list`, 0, 'latin1');
  }

  /** The node for the key now in `nameBuf`; `slotIndex` caches its slot (group, or groups + big list). */
  nodeFor(slotIndex: number, nameLen: number): Node {
    if (this.nodes.length === 1) return this.nodes[0] as Node;
    let slot = this.slots[slotIndex] as number;
    if (slot < 0) {
      slot = keySlot(this.nameBuf.subarray(0, nameLen));
      this.slots[slotIndex] = slot;
    }
    return this.nodes[this.slotNode[slot] as number] as Node;
  }

  /** Starts a command on key `k`'s node: `*argc`, the pre-encoded tokens before the key (command name first), the key. */
  start(k: number, argc: number, sent: SentName, ...before: string[]): Node {
    const len = this.name(k);
    const node = this.nodeFor(k >> 1, len);
    node.begin(argc, CODE[sent]);
    for (const token of before) node.raw(N(token));
    node.bulk(this.nameBuf, 0, len);
    return node;
  }

  value(node: Node, binary: boolean, mean = this.o.valueBytes): void {
    const len = Math.max(1, Math.floor(mean / 2) + this.int(mean + 1));
    const pool = binary ? this.binaryPool : this.textPool;
    const at = this.int(pool.length - len);
    node.bulk(pool, at, at + len);
  }

  member(node: Node, binary: boolean, prefix: string, n: number): void {
    if (!binary) return node.text(`${prefix}${n}`);
    const len = this.nameBuf.write(`${prefix}${n}`, 0, 'latin1');
    node.bulk(Buffer.concat([this.nameBuf.subarray(0, len), BINARY_BYTES]));
  }

  /** Picks the next command by weight and appends it to its node's buffer. */
  next(): void {
    let r = this.random() * this.totalWeight;
    let i = 0;
    while (i < this.weights.length - 1 && r >= (this.weights[i] as number)) r -= this.weights[i++] as number;
    switch (MIX_NAMES[i] as MixCommand) {
      case 'set': return this.set(this.key('string'));
      case 'append': return this.append(this.key('string'));
      case 'incr': return this.incr(this.key('counter'));
      case 'hset': return this.hset(this.key('hash'));
      case 'rpush': return this.o.bigLists > 0 && this.int(4) === 0 ? this.bigPush(this.int(this.o.bigLists)) : this.rpush(this.key('list'));
      case 'sadd': return this.sadd(this.key('set'));
      case 'zadd': return this.zadd(this.key('zset'));
      case 'xadd': return this.xadd(this.key(this.int(2) ? 'stream' : 'gstream'));
      case 'xreadgroup': return this.xreadgroup(this.key('gstream'));
      case 'del': return this.del(this.key(this.anyFamily()));
      case 'expire': return this.expire(this.key(this.anyFamily(true)), false);
      case 'pexpire': return this.expire(this.key(this.anyFamily(true)), true);
      case 'rename': return this.rename();
    }
  }

  key(family: Family): number {
    return this.groupOf(family) * 2 + this.int(2);
  }

  /** Streams with a group get no TTL: the group vanishing unseen would make XREADGROUP fail. */
  anyFamily(noGroups = false): Family {
    return FAMILIES[this.int(noGroups ? F - 1 : F)] as Family;
  }

  mark(k: number): void {
    this.flags[k] = (this.flags[k] as number) | EXISTS;
  }

  /** The family's own write, so RENAME with nothing to rename still writes something. */
  write(k: number): void {
    switch (this.familyOf(k >> 1)) {
      case 'string': return this.set(k);
      case 'counter': return this.incr(k);
      case 'hash': return this.hset(k);
      case 'list': return this.rpush(k);
      case 'set': return this.sadd(k);
      case 'zset': return this.zadd(k);
      case 'stream': return this.xadd(k);
      case 'gstream': return this.xadd(k);
    }
  }

  set(k: number): void {
    const px = this.int(100) < this.o.pxPercent;
    const node = this.start(k, px ? 5 : 3, 'set', 'SET');
    this.value(node, this.isBinary(k >> 1));
    if (px) {
      node.raw(N('PX'));
      node.text(500 + this.int(9500));
    }
    this.flags[k] = EXISTS | (px ? VOLATILE : 0); // SET drops any TTL
  }

  append(k: number): void {
    this.value(this.start(k, 3, 'append', 'APPEND'), this.isBinary(k >> 1), 8);
    this.mark(k);
  }

  incr(k: number): void {
    this.start(k, 2, 'incr', 'INCR');
    this.mark(k);
  }

  hset(k: number): void {
    const fields = 1 + this.int(3);
    const node = this.start(k, 2 + fields * 2, 'hset', 'HSET');
    const binary = this.isBinary(k >> 1);
    for (let i = 0; i < fields; i++) {
      this.member(node, binary, 'f', this.int(20));
      this.value(node, binary);
    }
    this.mark(k);
  }

  rpush(k: number): void {
    const items = 1 + this.int(3);
    const node = this.start(k, 2 + items, 'rpush', 'RPUSH');
    for (let i = 0; i < items; i++) this.value(node, this.isBinary(k >> 1), 16);
    this.mark(k);
  }

  bigPush(i: number): void {
    const len = this.bigName(i);
    const node = this.nodeFor(this.groups + i, len);
    const length = this.bigLengths[i] as number;
    if (length >= this.o.bigListMax) {
      const keep = Math.max(1, Math.floor(this.o.bigListMax / 2));
      node.begin(4, CODE.ltrim);
      node.raw(N('LTRIM'));
      node.bulk(this.nameBuf, 0, len);
      node.text(-keep);
      node.text(-1);
      this.bigLengths[i] = keep;
      return;
    }
    const batch = Math.max(1, this.o.bigListBatch);
    node.begin(2 + batch, CODE.rpush);
    node.raw(N('RPUSH'));
    node.bulk(this.nameBuf, 0, len);
    for (let j = 0; j < batch; j++) this.value(node, j % 2 === 1, 16);
    this.bigLengths[i] = length + batch;
  }

  sadd(k: number): void {
    this.member(this.start(k, 3, 'sadd', 'SADD'), this.isBinary(k >> 1), 'm', this.int(100));
    this.mark(k);
  }

  zadd(k: number): void {
    const node = this.start(k, 4, 'zadd', 'ZADD');
    node.text(this.int(10_000) / 100);
    this.member(node, this.isBinary(k >> 1), 'm', this.int(100));
    this.mark(k);
  }

  xadd(k: number): void {
    const node = this.start(k, 8, 'xadd', 'XADD');
    node.raw(N('MAXLEN'));
    node.raw(N('~'));
    node.text(1000);
    node.raw(N('*'));
    this.member(node, this.isBinary(k >> 1), 'f', this.int(4));
    this.value(node, this.isBinary(k >> 1));
    this.mark(k);
  }

  /** Reads new entries without XACK, so the group keeps pending entries; creates the group (and stream) first. */
  xreadgroup(k: number): void {
    if (!((this.flags[k] as number) & GROUP)) {
      const node = this.start(k, 6, 'xgroup', 'XGROUP', 'CREATE');
      node.raw(N('g'));
      node.raw(N('0'));
      node.raw(N('MKSTREAM'));
      this.flags[k] = (this.flags[k] as number) | EXISTS | GROUP;
      return;
    }
    const node = this.start(k, 9, 'xreadgroup', 'XREADGROUP', 'GROUP', 'g', `c${this.int(3)}`, 'COUNT', '3', 'STREAMS');
    node.raw(N('>'));
  }

  del(k: number): void {
    this.start(k, 2, 'del', 'DEL');
    this.flags[k] = 0;
  }

  expire(k: number, ms: boolean): void {
    const node = this.start(k, 3, ms ? 'pexpire' : 'expire', ms ? 'PEXPIRE' : 'EXPIRE');
    node.text(ms ? 200 + this.int(4800) : 1 + this.int(10));
    if ((this.flags[k] as number) & EXISTS) this.flags[k] = (this.flags[k] as number) | VOLATILE;
  }

  /** RENAME a key that surely exists to its pair (same hash tag, same family); otherwise write to it instead. */
  rename(): void {
    const k = this.key(this.anyFamily());
    const other = k ^ 1;
    const sure = (key: number): boolean => ((this.flags[key] as number) & (EXISTS | VOLATILE)) === EXISTS;
    const from = sure(k) ? k : sure(other) ? other : -1;
    if (from < 0) return this.write(k);
    const to = from ^ 1;
    const node = this.start(from, 3, 'rename', 'RENAME');
    const len = this.name(to);
    node.bulk(this.nameBuf, 0, len);
    this.flags[to] = this.flags[from] as number;
    this.flags[from] = 0;
  }
}

// ---- the run ----

const say = (line: string): void => void process.stderr.write(`load-writer: ${line}\n`);

/** Masters and the slots they serve, from CLUSTER SLOTS. */
async function clusterMap(host: string, port: number): Promise<{ masters: { host: string; port: number }[]; slotMaster: Uint8Array }> {
  const reply = await query(host, port, ['CLUSTER', 'SLOTS']);
  if (!Array.isArray(reply)) throw new Error(`CLUSTER SLOTS on ${host}:${port} answered ${String(reply)}`);
  const masters: { host: string; port: number }[] = [];
  const slotMaster = new Uint8Array(SLOT_COUNT);
  for (const range of reply) {
    if (!Array.isArray(range)) continue;
    const [first, last, master] = range;
    if (typeof first !== 'number' || typeof last !== 'number' || !Array.isArray(master)) continue;
    const node = { host: typeof master[0] === 'string' && master[0] !== '' ? master[0] : host, port: Number(master[1]) };
    let index = masters.findIndex((m) => m.host === node.host && m.port === node.port);
    if (index < 0) index = masters.push(node) - 1;
    slotMaster.fill(index, first, last + 1);
  }
  if (masters.length === 0) throw new Error(`CLUSTER SLOTS on ${host}:${port} names no master`);
  return { masters, slotMaster };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const writer = new Writer(o);
  const byCode = new Array<number>(SENT_NAMES.length).fill(0);
  const errorKinds = new Map<string, number>();
  const shownErrors = new Set<string>();
  let ops = 0;
  let errors = 0;
  let lost = 0;
  let sent = 0;
  let startedAt = 0;
  let lastReplyAt = 0;
  let stopping = false;
  let refreshing = false;

  const onReply = (node: Node, buf: Buffer, pos: number, end: number): void => {
    const code = node.ring[node.tail] as number;
    node.tail = (node.tail + 1) & (RING - 1);
    node.inflight--;
    ops++;
    byCode[code] = (byCode[code] as number) + 1;
    if (buf[pos] !== 45) return; // not '-'
    errors++;
    const message = buf.toString('latin1', pos + 1, end - 2);
    const kind = /^\S+/.exec(message)?.[0] ?? 'ERR';
    errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
    if (!shownErrors.has(kind) && shownErrors.size < 10) {
      shownErrors.add(kind);
      say(`error reply to ${SENT_NAMES[code]} from ${node.name}: ${message} (counted; later ones of this kind are not shown)`);
    }
    if (o.cluster && (kind === 'MOVED' || kind === 'ASK') && !refreshing) void refresh();
  };

  const attach = (node: Node, socket: Socket): void => {
    node.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      const buf = node.pending ? Buffer.concat([node.pending, chunk]) : chunk;
      let pos = 0;
      for (;;) {
        const end = skipReply(buf, pos);
        if (end < 0) break;
        onReply(node, buf, pos, end);
        pos = end;
      }
      node.pending = pos < buf.length ? buf.subarray(pos) : undefined;
      lastReplyAt = performance.now();
    });
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => {
      if (node.socket !== socket) return;
      node.socket = undefined;
      lost += node.inflight;
      node.inflight = 0;
      node.tail = node.head;
      node.pending = undefined;
      node.len = 0;
      if (stopping) return;
      node.downSince = performance.now();
      say(`lost the connection to ${node.name}; reconnecting for up to ${o.reconnectMs} ms`);
      void reconnect(node);
    });
  };

  const reconnect = async (node: Node): Promise<void> => {
    while (!stopping) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        attach(node, await openSocket(node.host, node.port));
        say(`reconnected to ${node.name} after ${Math.round(performance.now() - node.downSince)} ms`);
        return;
      } catch {
        if (performance.now() - node.downSince > o.reconnectMs) {
          return finish(2, `${node.name} unreachable for more than ${o.reconnectMs} ms`);
        }
      }
    }
  };

  const connectAll = async (targets: { host: string; port: number }[]): Promise<Node[]> =>
    Promise.all(targets.map(async (t) => {
      const existing = writer.nodes.find((n) => n.host === t.host && n.port === t.port);
      if (existing) return existing;
      const node = new Node(t.host, t.port);
      attach(node, await openSocket(t.host, t.port));
      return node;
    }));

  /** After a MOVED: the slot map again, from any master that answers; new masters get a connection. */
  const refresh = async (): Promise<void> => {
    refreshing = true;
    try {
      for (const node of writer.nodes) {
        try {
          const map = await clusterMap(node.host, node.port);
          writer.nodes = [...writer.nodes, ...(await connectAll(map.masters)).filter((n) => !writer.nodes.includes(n))];
          const indexes = map.masters.map((m) => writer.nodes.findIndex((n) => n.host === m.host && n.port === m.port));
          for (let slot = 0; slot < SLOT_COUNT; slot++) writer.slotNode[slot] = indexes[map.slotMaster[slot] as number] as number;
          say(`slot map read again from ${node.name}`);
          return;
        } catch {
          // The next master.
        }
      }
    } finally {
      refreshing = false;
    }
  };

  const stats = (): WriterStats => {
    const end = lastReplyAt > startedAt ? lastReplyAt : performance.now();
    const seconds = startedAt ? (end - startedAt) / 1000 : 0;
    const byCommand: Record<string, number> = {};
    SENT_NAMES.forEach((name, i) => {
      if (byCode[i]) byCommand[name] = byCode[i] as number;
    });
    return {
      ops, seconds: Math.round(seconds * 1000) / 1000, rate: seconds > 0 ? Math.round(ops / seconds) : 0, errors, byCommand,
      errorKinds: Object.fromEntries(errorKinds), lost,
    };
  };

  let ticker: NodeJS.Timeout | undefined;
  let progress: NodeJS.Timeout | undefined;
  let finishing = false;
  /** Stops sending, waits (briefly) for the replies in flight, prints the totals and exits. */
  async function finish(code: number, aborted?: string): Promise<void> {
    if (finishing) return;
    finishing = true;
    clearInterval(ticker);
    clearInterval(progress);
    const deadline = performance.now() + 3000;
    while (writer.nodes.some((n) => n.socket && n.inflight > 0) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    stopping = true;
    const result = stats();
    if (aborted) {
      result.aborted = aborted;
      say(`giving up: ${aborted}`);
    }
    process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
    for (const node of writer.nodes) node.socket?.destroy();
  }

  try {
    if (o.cluster) {
      const map = await clusterMap(o.host, o.port);
      writer.nodes = await connectAll(map.masters);
      writer.slotNode = map.slotMaster;
    } else {
      writer.nodes = await connectAll([{ host: o.host, port: o.port }]);
    }
  } catch (err) {
    say(`cannot start against ${o.host}:${o.port}${o.cluster ? ' (cluster)' : ''}: ${(err as Error).message}`);
    process.exit(1);
  }

  // npx does not pass a kill on to its child: scripts signal this process itself (load.ts runs node --import tsx).
  process.once('SIGTERM', () => void finish(0));
  process.once('SIGINT', () => void finish(0));
  if (o.watchStdin) {
    process.stdin.on('end', () => void finish(0));
    process.stdin.resume();
  }

  // Token bucket: tokens accrue at `rate` (up to 1 s worth, so a stalled process catches up) and go out as one pipelined
  // burst per 10 ms tick, at most 50 ms worth, so catching up is spread over a few ticks.
  const perMs = o.rate / 1000;
  const cap = Math.max(1, o.rate);
  const burst = Math.max(1, Math.min(Math.ceil(o.rate * 0.05), RING / 4));
  const maxInflight = Math.min(RING - 1 - burst, Math.max(1000, o.rate));
  let tokens = 0;
  startedAt = performance.now();
  let last = startedAt;
  say(`writing to ${o.host}:${o.port}${o.cluster ? ` (cluster, ${writer.nodes.length} masters)` : ''} at ${o.rate} ops/s, seed ${o.seed}`);
  const tick = (): void => {
    const now = performance.now();
    tokens = Math.min(cap, tokens + (now - last) * perMs);
    last = now;
    if (o.duration > 0 && now - startedAt >= o.duration * 1000) return void finish(0);
    if (o.count > 0 && sent >= o.count) {
      if (writer.nodes.every((n) => n.inflight === 0)) void finish(0);
      return;
    }
    if (writer.nodes.some((n) => !n.socket)) return; // a node is down: wait for it
    let inflight = 0;
    for (const node of writer.nodes) inflight += node.inflight;
    let n = Math.min(Math.floor(tokens), burst, maxInflight - inflight);
    if (o.count > 0) n = Math.min(n, o.count - sent);
    if (n <= 0) return;
    for (let i = 0; i < n; i++) writer.next();
    for (const node of writer.nodes) node.flush();
    tokens -= n;
    sent += n;
  };
  ticker = setInterval(tick, 10);
  if (o.progressMs > 0) progress = setInterval(() => process.stderr.write(`progress ${JSON.stringify(stats())}\n`), o.progressMs);
  tick();
}

// Only when run as a script: load.ts imports its types, and anything may import MIX_DEFAULTS.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    say(err instanceof UsageError ? err.message : `failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exit(1);
  });
}
