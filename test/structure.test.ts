// The shape of the code, held as tests: the entry file stays the story of a run, the record module stays a leaf,
// and imports run one way (no cycle among files, none among lib/'s folders). Reads the sources as text; no server.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/servers.js';

const ENTRY = 'redis-keys-migrator.ts';

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** Each project file's relative imports, as paths from the project's root. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of [ENTRY, ...sourceFiles('lib')]) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1] as string);
    graph.set(file, specs.map((spec) => normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts')));
  }
  return graph;
}

/** A cycle in `graph` as the list of its nodes, or undefined when there is none. */
function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === 'done') return undefined;
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node];
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

/** lib/'s top-level entries (a folder, or a file of its own) and which others each imports from. */
function folderGraph(files: Map<string, string[]>): Map<string, string[]> {
  const top = (file: string): string => relative('lib', file).split('/')[0] as string;
  const graph = new Map<string, Set<string>>();
  for (const [file, imports] of files) {
    if (!file.startsWith('lib/')) continue;
    const from = top(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const target of imports) if (target.startsWith('lib/') && top(target) !== from) edges.add(top(target));
  }
  return new Map([...graph].map(([k, v]) => [k, [...v]]));
}

describe('the shape of the code', () => {
  it('no import cycle among the project\'s files', () => {
    expect(findCycle(importGraph())).toBeUndefined();
  });

  it('lib/\'s folders depend on each other one way only', () => {
    expect(findCycle(folderGraph(importGraph()))).toBeUndefined();
  });

  it('the cycle finder finds a cycle when there is one', () => {
    expect(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]]))).toEqual(['a', 'b', 'c', 'a']);
  });

  it('lib/records.ts, the seam between sources and writers, imports nothing from the rest of lib/', () => {
    expect(importGraph().get('lib/records.ts')).toEqual([]);
  });

  it('the entry file is the story of a run in at most 200 lines', () => {
    const lines = readFileSync(join(ROOT, ENTRY), 'utf8').split('\n').length;
    expect(lines).toBeLessThanOrEqual(200);
  });

  it('every folder of lib/ opens with a README saying what it owns', () => {
    const folders = readdirSync(join(ROOT, 'lib')).filter((name) => statSync(join(ROOT, 'lib', name)).isDirectory());
    for (const folder of folders) {
      const readme = readFileSync(join(ROOT, 'lib', folder, 'README.md'), 'utf8');
      expect(readme.trim().length, folder).toBeGreaterThan(40);
    }
  });
});
