// Keys an .rdb file holds more than once. redis-server refuses such a file when it loads it ("Duplicated key found
// in RDB file"); a copy would keep one value and lose the others without a word. Candidates are found as the copy
// goes, in bounded memory: the keys the target answered as existing (the later copies of a repeated key, which
// RESTORE without REPLACE refuses) or, with OVERWRITE_EXISTING_KEYS=true, where no answer tells, the keys a Bloom
// filter may have seen. Once the copy is done, the file's keys are read again to count each candidate exactly.
import { readRdbBatches } from '../rdb/reader.js';
import { isEmptyCollection } from '../rdb/empty.js';
import { displayKey, type KeyOutcome, type RecordBatch } from '../records.js';
import type { SourceEnding } from './source.js';

/** The filter's size: 16 MiB, touched page by page as keys come, so a small file costs little. */
const FILTER_BLOCKS = 1 << 18;
/** One block is one 64-byte cache line (16 words): the bits of a key are all in it, one memory miss a key. */
const BLOCK_WORDS = 16;
/** Candidates kept to count in the second read: any beyond it are said to be unchecked. */
const MAX_CANDIDATES = 10_000;
/** Keys named on the console; the error log names each. */
const KEYS_NAMED = 3;

/** A key the file holds more than once, where the server would load it (not empty, not expired). */
export interface RepeatedKey {
  db: number;
  key: Buffer;
  times: number;
}

/**
 * Watches the keys the copy takes from the file for ones that may have come before. Without overwriting, the
 * target tells: a later copy of a key is refused as existing (a key that was on the target before is a candidate
 * too, and the count clears it). Overwriting, a Bloom filter of 16 MiB sees every key (it costs about 0.3 µs a key;
 * its false positives cost a second read of the file's keys, rare below a few million keys).
 */
export class RepeatWatch {
  private filter: Uint32Array | undefined;
  /** Candidates by database, by key (latin1: one char a byte). */
  private readonly candidates = new Map<number, Set<string>>();
  private candidateCount = 0;
  /** Candidates past MAX_CANDIDATES, not counted. */
  unchecked = 0;

  constructor(private readonly overwrite: boolean) {}

  /** Watches a batch of `db` the copy is about to take (a file's batches have no `settled` of their own to keep). */
  watch(db: number, batch: RecordBatch): void {
    if (this.overwrite) this.addAll(db, batch.keys);
    else batch.settled = (outcomes) => outcomes && this.addSkipped(db, outcomes);
  }

  private addSkipped(db: number, outcomes: readonly KeyOutcome[]): void {
    for (const outcome of outcomes) if (outcome.status === 'skipped') this.addCandidate(db, outcome.key);
  }

  /** A batch's keys, all of one database: hashed first, then looked up, so that the lookups' memory misses overlap. */
  addAll(db: number, keys: readonly Buffer[]): void {
    this.filter ??= new Uint32Array(FILTER_BLOCKS * BLOCK_WORDS);
    if (this.hashes.length < keys.length * 4) this.hashes = new Uint32Array(keys.length * 4);
    const { hashes } = this;
    keys.forEach((key, i) => hashInto(db, key, hashes, i * 4));
    for (let i = 0; i < keys.length; i++) {
      if (this.setBits(hashes[i * 4] as number, hashes[i * 4 + 1] as number, hashes[i * 4 + 2] as number, hashes[i * 4 + 3] as number)) this.addCandidate(db, keys[i] as Buffer);
    }
  }

  /** Scratch for addAll: per key, its block's first word and three hashes. */
  private hashes = new Uint32Array(0);

  get candidateTotal(): number {
    return this.candidateCount;
  }

  /** Whether `key` of `db` is a candidate (for the second read). */
  isCandidate(db: number, key: Buffer): boolean {
    return this.candidates.get(db)?.has(key.toString('latin1')) ?? false;
  }

  /** Sets a key's 8 bits in its block; true when all of them were set already (the key may have come before). */
  private setBits(base: number, h1: number, h2: number, h3: number): boolean {
    const seen = this.setBit(base, h2) & this.setBit(base, h2 >>> 9) & this.setBit(base, h2 >>> 18) & this.setBit(base, h2 >>> 23);
    return (seen & this.setBit(base, h1) & this.setBit(base, h3) & this.setBit(base, h3 >>> 9) & this.setBit(base, h3 >>> 18)) === 1;
  }

  /** Sets the bit the low 9 bits of `position` name in the block at `base`; 1 if it was set already, else 0. */
  private setBit(base: number, position: number): number {
    const word = base + ((position >>> 5) & (BLOCK_WORDS - 1));
    const mask = 1 << (position & 31);
    const filter = this.filter as Uint32Array;
    const was = filter[word] as number;
    filter[word] = was | mask;
    return (was & mask) === 0 ? 0 : 1;
  }

  private addCandidate(db: number, key: Buffer): void {
    let keys = this.candidates.get(db);
    if (!keys) this.candidates.set(db, (keys = new Set()));
    const name = key.toString('latin1');
    if (keys.has(name)) return;
    if (this.candidateCount >= MAX_CANDIDATES) {
      this.unchecked += 1;
      return;
    }
    keys.add(name);
    this.candidateCount += 1;
  }
}

/**
 * Two 32-bit hashes of the database and the key's bytes (FNV-1a and a multiply-rotate), each finalised by murmur3's
 * mix: 64 bits, so distinct keys rarely share both. Written at `at`: the block's first word (h1's top 18 bits), h1,
 * h2, and h3 drawn from h2 and h1's low 14 bits: the 8 bits in the block come from all 46 bits not naming the block,
 * so two keys share a pattern only when they share all 64 (positions drawn from fewer bits repeat by chance).
 */
function hashInto(db: number, key: Buffer, out: Uint32Array, at: number): void {
  let h1 = 0x811c9dc5 ^ db;
  let h2 = 0x9747b28c + db;
  for (let i = 0; i < key.length; i++) {
    const byte = key[i] as number;
    h1 = Math.imul(h1 ^ byte, 0x01000193);
    h2 = Math.imul(((h2 ^ byte) << 5) | ((h2 ^ byte) >>> 27), 0x5bd1e995);
  }
  h1 = mix(h1 ^ key.length);
  h2 = mix(h2 ^ key.length);
  out[at] = (h1 >>> 14) * BLOCK_WORDS;
  out[at + 1] = h1;
  out[at + 2] = h2;
  out[at + 3] = mix(h2 ^ Math.imul(h1 & 0x3fff, 0x9e3779b1));
}

/** murmur3's 32-bit finaliser: every input bit moves every output bit. */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The second read: the file's keys again, each candidate counted where redis-server would load it (not an empty
 * collection, not expired by now). Those counted twice or more are the file's repeated keys. Undefined when
 * stopped (Ctrl-C) before the end.
 */
export async function countRepeats(path: string, watch: RepeatWatch, stopped: () => boolean): Promise<RepeatedKey[] | undefined> {
  const counts = new Map<string, RepeatedKey>();
  const now = Date.now();
  for await (const batch of readRdbBatches(path, { checksum: false })) {
    if (stopped()) return undefined;
    for (const record of batch) {
      if (!watch.isCandidate(record.db, record.key) || isEmptyCollection(record.value) || (record.expireAt > 0 && record.expireAt <= now)) continue;
      const id = `${record.db}:${record.key.toString('latin1')}`;
      const seen = counts.get(id);
      if (seen) seen.times += 1;
      else counts.set(id, { db: record.db, key: record.key, times: 1 });
    }
  }
  return [...counts.values()].filter((repeat) => repeat.times > 1);
}

/**
 * What the run says of repeated keys: one line naming a few, each in the error log, and each a failure (exit 2),
 * as redis-server fails the whole file. Which value the target kept depends on OVERWRITE_EXISTING_KEYS. Suspects
 * past MAX_CANDIDATES (a target that held many of the file's keys already) are said to be unchecked.
 */
export function repeatsEnding(repeats: readonly RepeatedKey[], overwrite: boolean, unchecked: number): SourceEnding {
  const lines = unchecked > 0 ? [`Not checked for keys the file holds more than once: ${unchecked} keys the target answered as existing, past the first ${MAX_CANDIDATES.toLocaleString('en-US')} (those were counted)`] : [];
  if (repeats.length === 0) return { lines, failed: 0 };
  const named = repeats.slice(0, KEYS_NAMED).map(({ db, key, times }) => `|${displayKey(key)}| (database ${db}, ${times} times)`);
  const more = repeats.length > KEYS_NAMED ? ` and ${repeats.length - KEYS_NAMED} more` : '';
  const kept = overwrite ? 'the last value of each was written over the ones before it' : 'the first value of each was copied and the later ones skipped as existing';
  const count = `${repeats.length} ${repeats.length === 1 ? 'key appears' : 'keys appear'}`;
  const reason = (times: number): string => `the file holds this key ${times} times, which redis-server refuses when it loads a file ("Duplicated key found in RDB file"): ${overwrite ? 'the last value was kept' : 'the first value was kept'}`;
  return {
    lines: [`Not as redis-server loads it: ${count} more than once in the file, which redis-server refuses ("Duplicated key found in RDB file"): ${named.join(', ')}${more}; ${kept}. Each is in the error log`, ...lines],
    failed: repeats.length,
    failedKeys: repeats.map(({ key, times }) => ({ key, reason: reason(times) })),
  };
}
