// Which keys a run covers: SCAN with MATCH, COUNT and TYPE on the server, then KEY_EXCLUDE_PATTERN here,
// matched byte for byte with Redis's glob rules (* ? [abc] [^a] [a-z] and \ escapes).
import type { Connection } from './connections.js';
import { asArray, asText } from './batch.js';

export interface KeySelection {
  match: string;
  /** SCAN's TYPE option; empty for every type. */
  type: string;
  /** Keys matching this glob are left out; empty for none. */
  exclude: string;
  scanCount: number;
}

/** Redis glob to a RegExp over latin1 text, so every byte is one character and binary keys match exactly. */
export function globToRegExp(glob: string): RegExp {
  const bytes = Buffer.from(glob).toString('latin1');
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i] as string;
    if (c === '*') out += '[\\s\\S]*';
    else if (c === '?') out += '[\\s\\S]';
    else if (c === '\\' && i + 1 < bytes.length) out += escapeChar(bytes[++i] as string);
    else if (c === '[') {
      const end = bytes.indexOf(']', i + 2);
      if (end < 0) {
        out += escapeChar(c);
        continue;
      }
      let body = bytes.slice(i + 1, end);
      const negate = body.startsWith('^');
      if (negate) body = body.slice(1);
      out += `[${negate ? '^' : ''}${[...body].map((b) => (b === '-' ? '-' : escapeChar(b))).join('')}]`;
      i = end;
    } else out += escapeChar(c);
  }
  return new RegExp(`^${out}$`);
}

function escapeChar(c: string): string {
  return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
}

/** Counts what the selection left out on this side of SCAN. */
export interface SelectionCounts {
  scanned: number;
  excluded: number;
}

/** Yields the selected source keys in batches of `size`; SCAN's own filters apply on the server. */
export async function* selectedKeys(
  source: Connection,
  selection: KeySelection,
  size: number,
  counts: SelectionCounts = { scanned: 0, excluded: 0 },
): AsyncGenerator<Buffer[]> {
  const excluded = selection.exclude ? globToRegExp(selection.exclude) : undefined;
  const scan = ['SCAN', '0', 'MATCH', selection.match, 'COUNT', String(selection.scanCount)];
  if (selection.type) scan.push('TYPE', selection.type);
  let batch: Buffer[] = [];
  do {
    const [next, keys] = asArray(await source.send(scan));
    scan[1] = asText(next);
    for (const key of asArray(keys ?? null) as Buffer[]) {
      if (excluded?.test(key.toString('latin1'))) {
        counts.excluded += 1;
        continue;
      }
      counts.scanned += 1;
      batch.push(key);
      if (batch.length === size) {
        yield batch;
        batch = [];
      }
    }
  } while (scan[1] !== '0');
  if (batch.length > 0) yield batch;
}
