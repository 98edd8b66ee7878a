// The numbers of the RDB format, as in Redis's and Valkey's src/rdb.h: value types, opcodes, module opcodes,
// and which RDB versions this reader knows. The names are for messages.

/** Redis 2.0 and 2.2 wrote RDB 1; each release since reads every older version. */
export const OLDEST_RDB_VERSION = 1;
export const NEWEST_RDB_VERSION = 13;
/** Files and DUMP payloads carry a CRC-64 from this version on (Redis 2.6). */
export const FIRST_CHECKSUMMED_VERSION = 5;
/**
 * Valkey 9's RDB version (magic VALKEY, 3 digits). Valkey numbers its own formats from 80 and refuses Redis's
 * 12 to 79; in its files type byte 22 is HASH_2 (not Redis's 22) and 23 to 25 do not exist.
 */
export const VALKEY_RDB_VERSION = 80;
export const isValkeyFormat = (version: number): boolean => version >= VALKEY_RDB_VERSION;
/** Valkey 9's hash with field expiries: per field its name, value and absolute expiry (int64 ms, -1 none). */
export const VALKEY_HASH_2 = 22;
/** Valkey 9's opcode for a cluster slot import in progress: a job name and slot ranges (Redis 8.6 uses 0xf3 otherwise). */
export const VALKEY_SLOT_IMPORT = 0xf3;

export const RDB_TYPE = {
  STRING: 0,
  LIST: 1,
  SET: 2,
  ZSET: 3,
  HASH: 4,
  ZSET_2: 5,
  MODULE_PRE_GA: 6,
  MODULE_2: 7,
  HASH_ZIPMAP: 9,
  LIST_ZIPLIST: 10,
  SET_INTSET: 11,
  ZSET_ZIPLIST: 12,
  HASH_ZIPLIST: 13,
  LIST_QUICKLIST: 14,
  STREAM_LISTPACKS: 15,
  HASH_LISTPACK: 16,
  ZSET_LISTPACK: 17,
  LIST_QUICKLIST_2: 18,
  STREAM_LISTPACKS_2: 19,
  SET_LISTPACK: 20,
  STREAM_LISTPACKS_3: 21,
  /** Redis 7.4 release candidates: a hash table hash with absolute field expiries. */
  HASH_METADATA_PRE_GA: 22,
  /** Redis 7.4 release candidates: a listpack hash of field, value, expiry triples. */
  HASH_LISTPACK_EX_PRE_GA: 23,
  /** Redis 7.4: the minimum field expiry, then field expiries relative to it. */
  HASH_METADATA: 24,
  /** Redis 7.4: the minimum field expiry, then a listpack of triples. */
  HASH_LISTPACK_EX: 25,
  /** Redis 8.6: every stream, as STREAM_LISTPACKS_3 and then its IDMP state (idempotent producers). */
  STREAM_LISTPACKS_4: 26,
} as const;

export const RDB_OPCODE = {
  /** Redis 8.6: module metadata before a key's type byte. */
  KEY_META: 0xf3,
  SLOT_INFO: 0xf4,
  FUNCTION2: 0xf5,
  FUNCTION_PRE_GA: 0xf6,
  MODULE_AUX: 0xf7,
  IDLE: 0xf8,
  FREQ: 0xf9,
  AUX: 0xfa,
  RESIZEDB: 0xfb,
  EXPIRETIME_MS: 0xfc,
  EXPIRETIME: 0xfd,
  SELECTDB: 0xfe,
  EOF: 0xff,
} as const;

export const MODULE_OPCODE = {
  EOF: 0,
  SINT: 1,
  UINT: 2,
  FLOAT: 3,
  DOUBLE: 4,
  STRING: 5,
} as const;

/** The quicklist node containers of RDB_TYPE_LIST_QUICKLIST_2. */
export const QUICKLIST_NODE = { PLAIN: 1, PACKED: 2 } as const;

type LogicalType = 'string' | 'list' | 'set' | 'zset' | 'hash' | 'stream' | 'module';

const LOGICAL: Record<number, LogicalType> = {
  0: 'string',
  1: 'list', 10: 'list', 14: 'list', 18: 'list',
  2: 'set', 11: 'set', 20: 'set',
  3: 'zset', 5: 'zset', 12: 'zset', 17: 'zset',
  4: 'hash', 9: 'hash', 13: 'hash', 16: 'hash', 22: 'hash', 23: 'hash', 24: 'hash', 25: 'hash',
  15: 'stream', 19: 'stream', 21: 'stream', 26: 'stream',
  6: 'module', 7: 'module',
};

/** What TYPE would answer for a key saved with this type byte, or undefined for an unknown byte. */
export function logicalType(rdbType: number): LogicalType | undefined {
  return LOGICAL[rdbType];
}

/** The characters Redis spells module type names with (module.c, ModuleTypeNameCharSet). */
const MODULE_NAME_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** A module type id: a 9-character name in the top 54 bits, the encoding version in the low 10. */
export function moduleTypeName(id: bigint): { name: string; encodingVersion: number } {
  let name = '';
  for (let i = 0; i < 9; i++) name += MODULE_NAME_CHARS[Number((id >> BigInt(10 + (8 - i) * 6)) & 63n)];
  return { name, encodingVersion: Number(id & 1023n) };
}

/** The value type bytes each RDB version added (rdb.h of each release; 3 to 5 were development versions of 2.6). */
const TYPES_ADDED_IN: Readonly<Record<number, readonly number[]>> = {
  1: [RDB_TYPE.STRING, RDB_TYPE.LIST, RDB_TYPE.SET, RDB_TYPE.ZSET, RDB_TYPE.HASH],
  2: [RDB_TYPE.HASH_ZIPMAP, RDB_TYPE.LIST_ZIPLIST, RDB_TYPE.SET_INTSET, RDB_TYPE.ZSET_ZIPLIST],
  6: [RDB_TYPE.HASH_ZIPLIST],
  7: [RDB_TYPE.LIST_QUICKLIST],
  8: [RDB_TYPE.ZSET_2, RDB_TYPE.MODULE_2],
  9: [RDB_TYPE.STREAM_LISTPACKS],
  10: [RDB_TYPE.HASH_LISTPACK, RDB_TYPE.ZSET_LISTPACK, RDB_TYPE.LIST_QUICKLIST_2, RDB_TYPE.STREAM_LISTPACKS_2],
  11: [RDB_TYPE.SET_LISTPACK, RDB_TYPE.STREAM_LISTPACKS_3],
  12: [RDB_TYPE.HASH_METADATA_PRE_GA, RDB_TYPE.HASH_LISTPACK_EX_PRE_GA, RDB_TYPE.HASH_METADATA, RDB_TYPE.HASH_LISTPACK_EX],
  13: [RDB_TYPE.STREAM_LISTPACKS_4],
};

/** The RDB version that added each type byte. */
const VERSION_ADDING = new Map<number, number>(Object.entries(TYPES_ADDED_IN).flatMap(([version, types]) => types.map((type) => [type, Number(version)] as const)));

/**
 * Whether a server that reads RDB `version` can RESTORE a value of this type byte written in RDB `writtenIn`
 * (stamped with a version it reads): the encodings of a type are fixed by its byte, and by whether the format is
 * Redis's or Valkey 9's, which read each other's types 0 to 21 and differ from 22 on. Module values are their modules' business.
 */
export function typeReadableBy(type: number, version: number, writtenIn = 0): boolean {
  if (isValkeyFormat(writtenIn) && type === VALKEY_HASH_2) return isValkeyFormat(version);
  const added = VERSION_ADDING.get(type);
  if (added === undefined) return false;
  return isValkeyFormat(version) ? type < VALKEY_HASH_2 : added <= version;
}

/**
 * The version stamp a payload written in RDB `writtenIn` gets for a target reading RDB `target`: its own where the
 * target reads it, else the target's. Valkey 9 takes Redis's 1 to 11 and its own 80, not Redis's 12 to 79.
 */
export function stampFor(writtenIn: number, target: number): number {
  if (isValkeyFormat(target)) return writtenIn <= 11 || writtenIn === target ? writtenIn : target;
  return Math.min(writtenIn, target);
}

/** The oldest RDB version whose servers read this type byte (NEWEST_RDB_VERSION + 1 for none). */
export function oldestVersionReading(type: number): number {
  return VERSION_ADDING.get(type) ?? NEWEST_RDB_VERSION + 1;
}

/** The newest RDB format each redis-server release reads (from Redis's rdb.h, RDB_VERSION). */
const RDB_VERSION_OF_RELEASE: readonly [number, number, number][] = [
  [2, 0, 1], [2, 4, 2], [2, 6, 6], [3, 2, 7], [4, 0, 8], [5, 0, 9], [7, 0, 10], [7, 2, 11], [7, 4, 12], [8, 6, 13], [8, 8, 14],
];

/** Valkey's releases by the RDB version they read: Valkey 7.2 to 8.x read Redis 7.2's, Valkey 9 its own 80. */
const RDB_VERSION_OF_VALKEY: readonly [number, number, number][] = [[7, 2, 11], [9, 0, VALKEY_RDB_VERSION]];

const newestOf = (releases: readonly [number, number, number][], [major = 0, minor = 0]: readonly number[]): number | undefined => {
  let readable: number | undefined;
  for (const [ma, mi, rdb] of releases) if (major > ma || (major === ma && minor >= mi)) readable = rdb;
  return readable;
};

/** The newest RDB version a server reads, from its redis_version, or its valkey_version where it has one. */
export function rdbVersionReadBy(redisVersion: readonly number[], valkeyVersion?: readonly number[]): number | undefined {
  return valkeyVersion ? newestOf(RDB_VERSION_OF_VALKEY, valkeyVersion) : newestOf(RDB_VERSION_OF_RELEASE, redisVersion);
}
