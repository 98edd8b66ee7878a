// Redis Cluster's rules, as plain functions: a key's hash slot (CRC16), a hash tag for a slot, and the per-key
// errors that mean the slot moved or the cluster is down. Which node serves a slot is lib/net/side.ts's.

import type { Sharding, SlotRanges } from '../settings.js';

export const SLOT_COUNT = 16384;

/** CRC16/XMODEM (polynomial 0x1021), as the cluster spec uses for key slots. */
const CRC16_TABLE = Array.from({ length: 256 }, (_, byte) => {
  let crc = byte << 8;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  return crc;
});

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ byte) & 0xff] as number);
  return crc;
}

/** The key's hash slot: only the part between the first '{' and the next '}' counts, when that is not empty. */
export function keySlot(key: Uint8Array): number {
  const open = key.indexOf(0x7b);
  if (open >= 0) {
    const close = key.indexOf(0x7d, open + 1);
    if (close > open + 1) return crc16(key.subarray(open + 1, close)) % SLOT_COUNT;
  }
  return crc16(key) % SLOT_COUNT;
}

/** A set of hash slots (SOURCE_SLOTS and a shard's range): which keys a run covers. */
export class SlotSet {
  private readonly member = new Uint8Array(SLOT_COUNT);
  readonly size: number;

  constructor(readonly ranges: SlotRanges) {
    let size = 0;
    for (const [low, high] of ranges) {
      this.member.fill(1, low, high + 1);
      size += high - low + 1;
    }
    this.size = size;
  }

  has(slot: number): boolean {
    return this.member[slot] === 1;
  }

  hasKey(key: Uint8Array): boolean {
    return this.member[keySlot(key)] === 1;
  }
}

/** The run's slots as a set; undefined when it covers every slot. */
export function slotSetOf(sharding: Sharding): SlotSet | undefined {
  return sharding.slots ? new SlotSet(sharding.slots) : undefined;
}

let slotTags: string[] | undefined;

/** A short hash tag whose key slot is `slot`: the smallest decimal number that hashes there. */
export function slotTag(slot: number): string {
  if (!slotTags) {
    const tags = new Array<string>(SLOT_COUNT);
    let found = 0;
    for (let n = 0; found < SLOT_COUNT; n++) {
      const tag = String(n);
      const s = crc16(Buffer.from(tag)) % SLOT_COUNT;
      if (tags[s] === undefined) {
        tags[s] = tag;
        found++;
      }
    }
    slotTags = tags;
  }
  return slotTags[slot] as string;
}

/** A per-key error that means "this node does not hold that key now": the slot moved, or is moving. */
export function isRedirect(reason: string): boolean {
  return /non local key|^(ERR )?(MOVED|ASK) \d+ /.test(reason) || isClusterDown(reason);
}

/**
 * A per-key error that means "the cluster cannot serve this now": a failover under way, a slot no master
 * serves. Scripts say it in words of their own ("… while the cluster is down"); a reason may name its command first.
 */
export function isClusterDown(reason: string): boolean {
  return /(^|: )(TRYAGAIN|CLUSTERDOWN)\b|while the cluster is down/.test(reason);
}
