// A source node's reads (lib/sources/server.ts, as a server's batches carry them) against a real redis-server: keys'
// DUMP payloads a read budget (4 MiB) at a time and in order, a key past DUMP_MAX_BYTES left for a chunked copy
// (length 0), a key gone meanwhile said so; by type the same, and every key left to chunks where scripts are refused.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Connection } from '../lib/net/connections.js';
import { parseDumpHeader } from '../lib/net/scripts.js';
import { READ_BUDGET_BYTES, type DumpRead, type TypedRead } from '../lib/records.js';
import { ServerReader } from '../lib/sources/server.js';
import { serverWithConnection } from './helpers/fixtures.js';

const MIB = 1024 * 1024;
const LIMITS = { dumpMaxBytes: 2 * MIB, chunkSize: 100 };
/** Six 1 MiB strings (more than one read budget), a 3 MiB one (past DUMP_MAX_BYTES), a small one, and a key that is not there. */
const KEYS = ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'big', 'small', 'gone'].map((k) => Buffer.from(k));

const open = serverWithConnection('source', async (server) => {
  // Random bytes: DUMP would compress repeated ones to almost nothing.
  for (let i = 0; i < 6; i++) await server.client.sendCommand(['SET', `m${i}`, randomBytes(MIB)]);
  await server.client.sendCommand(['SET', 'big', randomBytes(3 * MIB)]);
  await server.client.sendCommand(['SET', 'small', 'z', 'PX', '600000']);
});

async function all<T>(reads: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const read of reads) out.push(read);
  return out;
}

describe("a source node's reads", () => {
  it('DUMP payloads come a read budget at a time, every key once and in order, the big key and the missing one marked', async () => {
    const reads: DumpRead[] = await all(new ServerReader(open.connection, LIMITS).dumps(KEYS));
    expect(reads.length).toBeGreaterThan(1);
    for (const { batch } of reads) expect(batch.payloads.length).toBeLessThan(READ_BUDGET_BYTES + 2 * MIB);
    expect(reads.flatMap((r) => r.batch.keys).map(String)).toEqual(KEYS.map(String));
    const records = reads.flatMap((r) => parseDumpHeader(r.batch.header, r.batch.payloads));
    const byKey = new Map(KEYS.map((key, i) => [String(key), records[i]]));
    expect(byKey.get('big')?.payload.length).toBe(0);
    expect(byKey.get('gone')?.expireAt).toBe(-2);
    expect(byKey.get('small')?.expireAt).toBeGreaterThan(Date.now());
    expect(byKey.get('m0')?.payload.length).toBeGreaterThan(MIB);
    expect(reads.every((r) => r.from instanceof ServerReader)).toBe(true);
  });

  it('values by type come a read budget at a time, every key once and in order', async () => {
    const reads: TypedRead[] = await all(new ServerReader(open.connection, LIMITS).typed(KEYS));
    expect(reads.length).toBeGreaterThan(1);
    expect(reads.flatMap((r) => ('batch' in r ? r.batch.keys : r.chunked)).map(String)).toEqual(KEYS.map(String));
  });

  it('where the node refuses scripts, every key is left to be read in chunks', async () => {
    await open.server.client.sendCommand(['ACL', 'SETUSER', 'noscripts', 'on', '>pw', '~*', '+@all', '-@scripting']);
    const limited = await Connection.open({ side: 'source', host: '127.0.0.1', port: open.server.port, db: 0, username: 'noscripts', password: 'pw' });
    try {
      const reads = await all(new ServerReader(limited, LIMITS).typed(KEYS));
      expect(reads.map((r) => ('chunked' in r ? r.chunked.map(String) : 'batch'))).toEqual([KEYS.map(String)]);
    } finally {
      await limited.close();
    }
  });
});
