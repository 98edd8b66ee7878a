// Empty collections: a file may hold them (a bug of old servers, or a crafted file), RESTORE refuses them, and
// redis-server drops them when it loads the file (rdbLoadObject's "empty keys skipped"). We drop them too.
import { valueCursor, type ByteCursor } from './cursor.js';
import { readLength, readString } from './encodings.js';
import { RdbFormatError } from './errors.js';
import { QUICKLIST_NODE, RDB_TYPE } from './types.js';

/** Bigger values are never empty: an empty collection is a few bytes of headers. */
const EMPTY_AT_MOST_BYTES = 128;

const short = (): never => {
  throw new RdbFormatError('cut short');
};

/**
 * The element count a packed blob's header declares: ziplist or listpack. An empty zipmap or intset is not
 * dropped: the server's integrity check refuses it, and so does RESTORE (the key fails, saying so).
 */
function packedCount(type: number, blob: Buffer): number {
  switch (type) {
    case RDB_TYPE.LIST_ZIPLIST:
    case RDB_TYPE.ZSET_ZIPLIST:
    case RDB_TYPE.HASH_ZIPLIST:
      return blob.length >= 10 ? blob.readUInt16LE(8) : Number.NaN; // zlbytes, zltail, zllen
    default:
      return blob.length >= 6 ? blob.readUInt16LE(4) : Number.NaN; // listpack: total bytes, count
  }
}

/**
 * No nodes, or only empty ones: the server skips empty nodes, then the key if none is left. A node is a ziplist
 * (quicklist 1) or, in quicklist 2, a plain item (never empty) or a listpack; a compressed node is not empty.
 */
function quicklistEmpty(c: ByteCursor, withContainers: boolean): boolean {
  const nodes = readLength(c);
  for (let i = 0; i < nodes; i++) {
    if (withContainers && readLength(c) === QUICKLIST_NODE.PLAIN) return false;
    const node = readString(c);
    const count = withContainers ? packedCount(RDB_TYPE.LIST_QUICKLIST_2, node) : packedCount(RDB_TYPE.LIST_ZIPLIST, node);
    if (count !== 0) return false;
  }
  return true;
}

/**
 * Whether a value (type byte and bytes as saved) is a collection with no elements, which the server would drop at
 * load. Streams are never empty in this sense (an empty stream is a valid key), nor strings. A malformed value is
 * not called empty: RESTORE names its fault.
 */
export function isEmptyCollection(value: Buffer): boolean {
  const type = value[0];
  if (type === RDB_TYPE.STRING || value.length > EMPTY_AT_MOST_BYTES) return false;
  try {
    const c = valueCursor(value, 1, short);
    switch (type) {
      case RDB_TYPE.LIST:
      case RDB_TYPE.SET:
      case RDB_TYPE.ZSET:
      case RDB_TYPE.HASH:
      case RDB_TYPE.ZSET_2:
      case RDB_TYPE.HASH_METADATA_PRE_GA:
        return readLength(c) === 0;
      case RDB_TYPE.HASH_METADATA:
        c.skip(8); // the minimum field expiry
        return readLength(c) === 0;
      case RDB_TYPE.LIST_ZIPLIST:
      case RDB_TYPE.ZSET_ZIPLIST:
      case RDB_TYPE.HASH_ZIPLIST:
      case RDB_TYPE.HASH_LISTPACK:
      case RDB_TYPE.ZSET_LISTPACK:
      case RDB_TYPE.SET_LISTPACK:
      case RDB_TYPE.HASH_LISTPACK_EX_PRE_GA:
        return packedCount(type, readString(c)) === 0;
      case RDB_TYPE.HASH_LISTPACK_EX:
        c.skip(8);
        return packedCount(type, readString(c)) === 0;
      case RDB_TYPE.LIST_QUICKLIST:
      case RDB_TYPE.LIST_QUICKLIST_2:
        return quicklistEmpty(c, type === RDB_TYPE.LIST_QUICKLIST_2);
      default:
        return false;
    }
  } catch (err) {
    if (err instanceof RdbFormatError) return false;
    throw err;
  }
}
