// `npm run demo`: two throwaway local servers, sample data of every type, a real migration that verifies
// what it copied. Everything it starts, it stops.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { AWKWARD_KEYS, seedEveryType } from '../test/helpers/sample-data.js';
import { endpoints, ROOT, SCRIPT, startRedis, tempDir } from '../test/helpers/servers.js';

const EXTRA_KEYS = 20_000;

function runMigratorInView(env: Record<string, string | number>, cwd: string): Promise<number> {
  const childEnv: Record<string, string> = { ...process.env } as Record<string, string>;
  for (const [name, value] of Object.entries(env)) childEnv[name] = String(value);
  const child = spawn(join(ROOT, 'node_modules', '.bin', 'tsx'), [SCRIPT], { cwd, env: childEnv, stdio: 'inherit' });
  return new Promise((done) => child.on('exit', (code) => done(code ?? 1)));
}

async function main(): Promise<number> {
  const [source, target] = await Promise.all([startRedis(), startRedis()]);
  const cwd = tempDir();
  try {
    const sampleKeys = await seedEveryType(source);
    // Bulk keys, some with TTLs, written server-side so the demo starts at once.
    await source.cmd('EVAL', `for i = 1, ${EXTRA_KEYS} do
      redis.call('SET', 'demo:' .. i, 'value ' .. i)
      if i % 10 == 0 then redis.call('PEXPIRE', 'demo:' .. i, 3600000) end
    end`, 0);
    const preexisting = 'demo:1';
    await target.cmd('SET', preexisting, 'already on the target');
    console.log(`Demo: source on port ${source.port} with ${sampleKeys + EXTRA_KEYS} keys of every type ` +
      `(binary keys such as ${AWKWARD_KEYS.length} awkward names, TTLs, a stream with a consumer group); ` +
      `target on port ${target.port} already holding ${preexisting}.\n`);

    // VERIFY=true: the tool compares every key it copied, and reports the one it left alone separately.
    const code = await runMigratorInView({ ...endpoints(source, target), VERIFY: 'true' }, cwd);
    console.log(`\nExit status ${code} (0: every key copied and verified).`);
    return code;
  } finally {
    await Promise.all([source.stop(), target.stop()]);
    rmSync(cwd, { recursive: true, force: true });
  }
}

process.exitCode = await main();
