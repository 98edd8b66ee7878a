// What a server says, as this code holds it: replies with bulk strings as Buffers, arguments as strings or
// Buffers, and the coercions every reader of a reply needs.

/** A reply with bulk strings as Buffers; errors reject the command's promise instead. */
export type Reply = null | number | string | Buffer | Reply[];
export type Arg = string | Buffer;

export function asArray(reply: Reply): Reply[] {
  if (!Array.isArray(reply)) throw new Error(`unexpected reply ${String(reply)}`);
  return reply;
}

export function asNumber(reply: Reply | undefined): number {
  return typeof reply === 'number' ? reply : Number(String(reply));
}

export function asText(reply: Reply | undefined): string {
  return reply === null || reply === undefined ? '' : String(reply);
}

/** A flat field, value, field, value… reply (XINFO, CONFIG GET) as a map by field name. */
export function asMap(reply: Reply): Map<string, Reply> {
  const items = asArray(reply);
  const map = new Map<string, Reply>();
  for (let i = 0; i + 1 < items.length; i += 2) map.set(asText(items[i]), items[i + 1] as Reply);
  return map;
}
