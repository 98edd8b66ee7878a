// `npm run docs`: rewrites .env.example and the README's settings table from lib/settings.ts,
// the one definition of the settings. test/docs.test.ts fails when they are out of step.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderEnvExample, renderReadmeTable } from '../lib/settings.js';
import { ROOT } from '../test/helpers/servers.js';

export const START = '<!-- settings-table:start (generated from lib/settings.ts; a test checks it) -->';
export const END = '<!-- settings-table:end -->';

export function readmeWithTable(readme: string): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error('README.md lacks the settings-table markers');
  return `${readme.slice(0, start + START.length)}\n${renderReadmeTable()}\n${readme.slice(end)}`;
}

if (process.argv[1] === import.meta.filename) {
  const readmePath = join(ROOT, 'README.md');
  writeFileSync(readmePath, readmeWithTable(readFileSync(readmePath, 'utf8')));
  writeFileSync(join(ROOT, '.env.example'), renderEnvExample());
  console.log('README.md settings table and .env.example rewritten from lib/settings.ts');
}
