/**
 * Finds every fenced code block in every README.md of the repository, so the docs test can check
 * each one. Conventions a README follows (also in the root README, "Developing"):
 *
 * - ```ts / ```typescript: type-checked, all blocks in one strict compile.
 * - ```js / ```javascript / ```mjs: run in a child process against a local receiver.
 * - ```<lang> fragment, or `<!-- readme-test: fragment -->` on the line before the fence: a piece
 *   of a program (it uses names the reader already has, like `app`): only syntax-checked.
 * - `<!-- readme-test: request POST /orders -->` before a runnable block: once the block's server
 *   listens, the test makes that request.
 * - `<!-- readme-test: file=name.ts -->` before a TypeScript block: written under that name, so
 *   later blocks can import it (`./name.js`).
 * - `<!-- readme-test: same-as=@afterward/express#ExpressResponseInfo -->` before a TypeScript block
 *   that spells out a type: the type it declares under that name must be the package's, both ways.
 * - ```sh / ```bash / ```shell: not run, counted.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export type BlockKind = 'ts' | 'js' | 'fragment' | 'shell';

export interface ReadmeBlock {
  /** README path relative to the repository root. */
  readme: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** 1-based line of the first line of code. */
  codeLine: number;
  /** Language as written (`ts`, `js`, `sh`, ...). */
  lang: string;
  kind: BlockKind;
  /** The code, with the indentation of the fence removed. */
  code: string;
  /** `README.md › Heading` (with ` (2)` for the second block under a heading): stable across edits. */
  key: string;
  /** Directives from a `<!-- readme-test: ... -->` comment right before the fence. */
  directives: string[];
  /** `where` for messages: `packages/core/README.md:138`. */
  where: string;
}

const TS = new Set(['ts', 'typescript']);
const JS = new Set(['js', 'javascript', 'mjs']);
// 'text' blocks quote program output (compiler errors): counted with the shell blocks, nothing to run.
const SHELL = new Set(['text', 'sh', 'bash', 'shell', 'console']);

/** Every README.md under root, skipping node_modules, dist and dot-directories. */
export function findReadmes(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.') || entry.name === 'node_modules' || entry.name === 'dist') continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name === 'README.md') found.push(path);
    }
  };
  walk(root);
  return found.map((path) => relative(root, path)).sort();
}

/** The fenced blocks of one README, in order. Throws on an unknown language or an unclosed fence. */
export function extractBlocks(root: string, readme: string): ReadmeBlock[] {
  const lines = readFileSync(join(root, readme), 'utf8').split('\n');
  const blocks: ReadmeBlock[] = [];
  const seen = new Map<string, number>();
  let heading = '(top)';
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] ?? '';
    const h = /^#{1,6}\s+(.*)$/.exec(text);
    if (h) heading = (h[1] ?? '').trim();
    const open = /^(\s*)(`{3,})(.*)$/.exec(text);
    if (!open) continue;
    const indent = open[1] ?? '';
    const fence = open[2] ?? '```';
    const [lang = '', ...tags] = (open[3] ?? '').trim().split(/\s+/);
    const end = lines.findIndex((l, j) => j > i && l.trimEnd() === `${indent}${fence}`);
    if (end === -1) throw new Error(`${readme}:${i + 1}: unclosed code fence`);
    const code = lines
      .slice(i + 1, end)
      .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
      .join('\n');
    const directives = directivesBefore(lines, i);
    const fragment = tags.includes('fragment') || directives.includes('fragment');
    let kind: BlockKind;
    if (SHELL.has(lang)) kind = 'shell';
    else if (fragment && (TS.has(lang) || JS.has(lang))) kind = 'fragment';
    else if (TS.has(lang)) kind = 'ts';
    else if (JS.has(lang)) kind = 'js';
    else
      throw new Error(
        `${readme}:${i + 1}: code block language ${JSON.stringify(lang)} has no check; add one to test/docs/blocks.ts`,
      );
    const n = (seen.get(heading) ?? 0) + 1;
    seen.set(heading, n);
    blocks.push({
      readme,
      line: i + 1,
      codeLine: i + 2,
      lang,
      kind,
      code,
      key: `${readme} › ${heading}${n > 1 ? ` (${n})` : ''}`,
      directives,
      where: `${readme}:${i + 1}`,
    });
    i = end;
  }
  return blocks;
}

/** `<!-- readme-test: a, b c -->` on the nearest non-blank line before the fence. */
function directivesBefore(lines: string[], fence: number): string[] {
  for (let j = fence - 1; j >= 0; j--) {
    const text = (lines[j] ?? '').trim();
    if (text === '') continue;
    const m = /^<!--\s*readme-test:\s*(.*?)\s*-->$/.exec(text);
    return m
      ? (m[1] ?? '')
          .split(',')
          .map((d) => d.trim())
          .filter(Boolean)
      : [];
  }
  return [];
}

/** `request POST /orders` directives of a block, as [method, path]. */
export function requestsOf(block: ReadmeBlock): Array<[string, string]> {
  return block.directives
    .map((d) => /^request\s+([A-Z]+)\s+(\S+)$/.exec(d))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1] ?? 'GET', m[2] ?? '/']);
}

/** The file name a block asks to be written as (`file=name.ts`), if any. */
export function fileNameOf(block: ReadmeBlock): string | undefined {
  for (const d of block.directives) {
    const m = /^file=([\w.-]+\.ts)$/.exec(d);
    if (m) return m[1];
  }
  return undefined;
}

/** `same-as=module#Name` of a block: the exported type its own `Name` must equal. */
export function sameAsOf(block: ReadmeBlock): { module: string; name: string } | undefined {
  for (const d of block.directives) {
    const m = /^same-as=(\S+)#(\w+)$/.exec(d);
    if (m) return { module: m[1] ?? '', name: m[2] ?? '' };
  }
  return undefined;
}

/** Hosts under example.com (hooks.example.com, audit.example.com) become the local receiver. */
export const EXAMPLE_URL = /https:\/\/[a-z0-9.-]*\.?example\.com/g;
