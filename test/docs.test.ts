import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderEnvExample, renderHelp, SETTINGS } from '../lib/settings.js';
import { ROOT, runMigrator, tempDir } from './helpers/servers.js';
import { readmeWithTable } from '../tools/write-docs.js';

describe('help, .env.example and the README come from one definition', () => {
  it('README settings table is current (run npm run docs)', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toBe(readmeWithTable(readme));
  });

  it('.env.example is current (run npm run docs)', () => {
    expect(readFileSync(join(ROOT, '.env.example'), 'utf8')).toBe(renderEnvExample());
  });

  it('--help prints every setting with its default, and exits 0 without connecting', async () => {
    const run = await runMigrator({ SOURCE_REDIS_PORT: 1 }, tempDir(), 60_000, ['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(renderHelp());
    for (const s of SETTINGS) expect(run.stdout).toMatch(new RegExp(`${s.name} .*\\[default: `));
    expect(run.stdout).not.toContain('Connected');
  });
});
