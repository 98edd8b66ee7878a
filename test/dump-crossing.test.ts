// DUMP payloads newer than the target reads, written once each (lib/copy/restore.ts writeDumps): the payloads a
// real Redis 7.4 server dumped (the redis-7.4 fixture's manifest, RDB 12) into a real redis-server 7.0 (RDB 10).
// The target's version comes from its INFO once; nothing is sent twice.
import { describe, expect, it } from 'vitest';
import { writeDumps, type DumpAnswer } from '../lib/copy/restore.js';
import { parseSettings } from '../lib/settings.js';
import { typeReadableBy } from '../lib/rdb/types.js';
import type { DumpBatch } from '../lib/records.js';
import { differenceFromManifest, manifestKeys, readManifest, type ManifestEntry } from './helpers/manifest.js';
import { serverWithConnection } from './helpers/fixtures.js';

const open = serverWithConnection('destination');

/** How many RESTOREs the target has run, inside scripts included (INFO commandstats). */
async function restoreCalls(): Promise<number> {
  const stats = String(await open.server.client.sendCommand(['INFO', 'commandstats']));
  return Number(/cmdstat_restore:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

describe('payloads of a newer server (Redis 7.4, RDB 12) into redis-server 7.0 (RDB 10)', () => {
  it("learns the target's version from INFO, restamps what 7.0 reads, holds back the rest for a copy by type, and RESTOREs each key once", async () => {
    expect(open.connection.capabilities.rdbVersion).toBe(10);
    const entries = manifestKeys(readManifest('redis-7.4')).filter(([, entry]) => entry.expire_at_ms !== 'relative');
    const payloads = entries.map(([, entry]) => Buffer.from(entry.dump as string, 'base64'));
    const batch: DumpBatch = {
      keys: entries.map(([key]) => key),
      header: entries.map(([, entry], i) => `${entry.expire_at_ms as number},${(payloads[i] as Buffer).length};`).join(''),
      payloads: Buffer.concat(payloads),
      rdbVersion: 12,
    };
    const readable = (i: number): boolean => typeReadableBy((payloads[i] as Buffer)[0] as number, 10);
    const before = await restoreCalls();

    const answers: DumpAnswer[] = await writeDumps({ target: open.connection, settings: parseSettings({}), stats: { bytesMoved: 0 } }, batch);

    expect(await restoreCalls()).toBe(before + entries.filter((_, i) => readable(i)).length);
    const expected = entries.map((_, i) => (readable(i) ? 'restored/restamped' : 'byType/'));
    expect(answers.map((a) => `${a.status}/${'via' in a ? (a.via ?? '') : ''}`)).toEqual(expected);
    expect(expected).toContain('byType/'); // the fixture has types 7.0 cannot read (set listpacks, hash field expiries)
    for (const [i, [key, entry]] of entries.entries()) {
      if (readable(i)) expect(await differenceFromManifest(open.server, key, entry as ManifestEntry), key.toString('latin1')).toBeNull();
    }
  });
});
