// `npm run media`: real runs of the migrator against throwaway servers, captured and drawn as terminal
// pictures for the README: a full migration, a run with skipped keys, a failure and its error log.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seedEveryType } from '../test/helpers/sample-data.js';
import { endpoints, ROOT, runMigrator, startRedis, tempDir, type RedisServer } from '../test/helpers/servers.js';

/** Where the pictures go: media/ for the README, or MEDIA_DIR (the test draws them into a temporary folder). */
const MEDIA = process.env.MEDIA_DIR ?? join(ROOT, 'media');
const BULK_KEYS = 100_000;

/** Draws lines of terminal text as an SVG window: dark background, monospace, the command in green. */
export function terminalSvg(title: string, command: string, output: string): string {
  const lines = [`$ ${command}`, ...output.trimEnd().split('\n')];
  const charWidth = 8.4;
  const lineHeight = 19;
  const width = Math.max(640, Math.ceil(Math.max(...lines.map((l) => l.length)) * charWidth) + 40);
  const height = lines.length * lineHeight + 60;
  const escape = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const text = lines
    .map((line, i) => `<text x="20" y="${52 + i * lineHeight}" fill="${i === 0 ? '#8ae234' : '#e6e6e6'}">${escape(line)}</text>`)
    .join('\n  ');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14">
  <rect width="${width}" height="${height}" rx="8" fill="#1e1e1e"/>
  <rect width="${width}" height="28" rx="8" fill="#333"/>
  <circle cx="18" cy="14" r="6" fill="#ff5f56"/><circle cx="38" cy="14" r="6" fill="#ffbd2e"/><circle cx="58" cy="14" r="6" fill="#27c93f"/>
  <text x="${width / 2}" y="19" fill="#bbb" text-anchor="middle" font-size="12">${escape(title)}</text>
  ${text}
</svg>
`;
}

/** Environment shown in the picture's command line, with the servers' throwaway ports. */
function shownCommand(env: Record<string, string | number>): string {
  const shown = Object.entries(env).filter(([k]) => !k.endsWith('_HOST')).map(([k, v]) => `${k}=${v}`);
  return `${shown.join(' ')} npx tsx redis-keys-migrator.ts`;
}

async function capture(name: string, title: string, env: Record<string, string | number>, cwd: string): Promise<string> {
  const run = await runMigrator({ ...env, PROGRESS: 'off' }, cwd);
  writeFileSync(join(MEDIA, `${name}.svg`), terminalSvg(title, shownCommand(env), run.stdout));
  console.log(`${join(MEDIA, name)}.svg (exit ${run.code})`);
  return run.stdout;
}

async function seedBulk(server: RedisServer): Promise<void> {
  await server.cmd('EVAL', `for i = 1, ${BULK_KEYS} do redis.call('SET', 'user:' .. i, 'profile ' .. i) end`, 0);
}

async function main(): Promise<void> {
  const [source, target] = await Promise.all([startRedis(), startRedis()]);
  const cwd = tempDir();
  try {
    await seedEveryType(source);
    await seedBulk(source);
    const env = { ...endpoints(source, target), VERIFY: 'true' };
    await capture('full-migration', 'A full migration', env, cwd);

    await target.cmd('FLUSHALL');
    await target.cmd('EVAL', `for i = 1, 25000 do redis.call('SET', 'user:' .. i, 'already here') end`, 0);
    await capture('with-skipped-keys', 'A migration with keys already on the target', endpoints(source, target), cwd);

    // A target user allowed only user:* keys: every other key fails, and the error log says why.
    await target.cmd('FLUSHALL');
    await target.cmd('ACL', 'SETUSER', 'app', 'on', '>app-password', '~user:*', '+@all');
    const failing = { ...endpoints(source, target), DESTINATION_REDIS_USERNAME: 'app', DESTINATION_REDIS_PASSWORD: '********' };
    const run = await runMigrator({ ...failing, DESTINATION_REDIS_PASSWORD: 'app-password', PROGRESS: 'off' }, cwd);
    writeFileSync(join(MEDIA, 'failure.svg'), terminalSvg('A run where keys fail', shownCommand(failing), run.stdout));
    const log = readFileSync(join(cwd, 'redis-keys-migrator-error.log'), 'utf8');
    writeFileSync(join(MEDIA, 'failure-error-log.svg'), terminalSvg('Its error log', 'cat redis-keys-migrator-error.log', log));
    console.log(`${join(MEDIA, 'failure')}.svg (exit ${run.code}), ${join(MEDIA, 'failure-error-log')}.svg`);
  } finally {
    await Promise.all([source.stop(), target.stop()]);
    rmSync(cwd, { recursive: true, force: true });
  }
}

if (process.argv[1] === import.meta.filename) await main();
