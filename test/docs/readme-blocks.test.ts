/**
 * Docs that run (issue 12): every fenced code block of every README.md is checked, so a sample
 * cannot rot. TypeScript blocks are type-checked in one strict compile (the repository's own
 * compiler options); runnable JavaScript blocks run in a child process against a local receiver
 * and are also type-checked as TypeScript, since TypeScript users paste them too; fragments are
 * syntax-checked; shell blocks are counted. The conventions are in test/docs/blocks.ts.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../support/receiver.js';
import {
  EXAMPLE_URL,
  extractBlocks,
  fileNameOf,
  findReadmes,
  requestsOf,
  sameAsOf,
  type ReadmeBlock,
} from './blocks.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PRELOAD = pathToFileURL(join(ROOT, 'test/docs/fixtures/listen-preload.mjs')).href;

/**
 * What README samples assume the reader already has: their own logger, metrics, database,
 * server and domain objects. Declared once, globally; a block's own declarations shadow them.
 */
const READER_GLOBALS = `
declare function pino(): import('@afterward/core').Logger;
declare const metrics: { increment(name: string, tags?: Record<string, unknown>): void };
declare const server: import('node:http').Server;
declare const db: { insert(row: object, options: { signal: AbortSignal }): Promise<void> };
declare const customer: { endpointUrl: string };
declare const invoice: { id: string; amount: number };
declare const alerts: { notify(origin: string, failureRate: number): void };
`;

const blocks: ReadmeBlock[] = findReadmes(ROOT).flatMap((readme) => extractBlocks(ROOT, readme));
const byKind = (kind: ReadmeBlock['kind']): ReadmeBlock[] => blocks.filter((b) => b.kind === kind);

interface Checked {
  block: ReadmeBlock;
  key: string;
  file: string;
}

let dir = '';
const typeChecked: Checked[] = [];
const diagnostics = new Map<string, ts.Diagnostic[]>();

function format(d: ts.Diagnostic, checked: Checked): string {
  const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
  if (d.file === undefined || d.start === undefined) return `TS${d.code}: ${message}`;
  const { line } = d.file.getLineAndCharacterOfPosition(d.start);
  if (line >= checked.block.code.split('\n').length) {
    return `${checked.block.where}: the type this block spells out is not the package's (same-as): ${message}`;
  }
  return `${checked.block.readme}:${checked.block.codeLine + line}: TS${d.code}: ${message}`;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'afterward-readme-'));
  // The blocks import the packages by name, as a user's app does: resolve them from the workspace.
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  writeFileSync(join(dir, 'reader-globals.d.ts'), READER_GLOBALS);
  mkdirSync(join(dir, 'run'));

  blocks.forEach((block, i) => {
    if (block.kind === 'ts') {
      const file = join(dir, fileNameOf(block) ?? `block${i}.ts`);
      const same = sameAsOf(block);
      // Appended after the block's own lines, so its line numbers stay those of the README.
      const check =
        same === undefined
          ? ''
          : `import type { ${same.name} as SameAsReal } from '${same.module}';\n` +
            `type SameAs<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;\n` +
            `export const sameAsReal: SameAs<${same.name}, SameAsReal> = true;\n`;
      writeFileSync(file, `${block.code}\nexport {};\n${check}`);
      typeChecked.push({ block, key: block.key, file });
    } else if (block.kind === 'js') {
      const file = join(dir, `block${i}-as-ts.ts`);
      writeFileSync(file, `${block.code}\nexport {};\n`);
      typeChecked.push({ block, key: `${block.key} (as TypeScript)`, file });
    }
  });

  // One compile for all blocks, with the repository's own strict options.
  const base = ts.readConfigFile(join(ROOT, 'tsconfig.base.json'), (path) => ts.sys.readFile(path));
  const parsed = ts.parseJsonConfigFileContent(base.config, ts.sys, dir);
  const options: ts.CompilerOptions = {
    ...parsed.options,
    noEmit: true,
    declaration: false,
    declarationMap: false,
    sourceMap: false,
    types: ['node'],
    typeRoots: [join(ROOT, 'node_modules/@types')],
  };
  const program = ts.createProgram(
    [join(dir, 'reader-globals.d.ts'), ...typeChecked.map((c) => c.file)],
    options,
  );
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const name = d.file?.fileName ?? '(global)';
    diagnostics.set(name, [...(diagnostics.get(name) ?? []), d]);
  }
}, 120_000);

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

/** Drops the one warning Node 22 prints for `node:sqlite` (stable on 24 and 26), and its hint. */
function withoutNodeSqliteWarning(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => !/ExperimentalWarning: SQLite is an experimental feature/.test(line))
    .filter((line) => !line.startsWith('(Use `node --trace-warnings'))
    .join('\n')
    .trim();
}

describe('README code blocks', () => {
  it('every block is covered by a check, and the counts are what the docs promise', () => {
    const counts = {
      ts: byKind('ts').length,
      js: byKind('js').length,
      fragment: byKind('fragment').length,
      shell: byKind('shell').length,
    };
    console.info(
      `README blocks: ${blocks.length} in ${new Set(blocks.map((b) => b.readme)).size} READMEs: ` +
        `${counts.ts} TypeScript type-checked, ${counts.js} JavaScript run (and type-checked as TypeScript), ` +
        `${counts.fragment} fragments syntax-checked, ${counts.shell} shell skipped`,
    );
    expect(counts.ts + counts.js + counts.fragment + counts.shell).toBe(blocks.length);
    expect(counts.ts).toBeGreaterThanOrEqual(10);
    expect(counts.js).toBeGreaterThanOrEqual(4);
    // Keys name blocks in failure messages: they must be unique.
    const keys = typeChecked.map((c) => c.key);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('no diagnostic falls outside a README block', () => {
    const files = new Set(typeChecked.map((c) => c.file));
    const outside = [...diagnostics.entries()]
      .filter(([name]) => !files.has(name))
      .flatMap(([name, list]) =>
        list.map((d) => `${name}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`),
      );
    expect(outside).toEqual([]);
  });

  describe('TypeScript (strict, one compile)', () => {
    it.each(blocks.filter((b) => b.kind === 'ts' || b.kind === 'js').map((b) => [b.where, b] as const))(
      '%s type-checks',
      (_where, block) => {
        for (const checked of typeChecked.filter((c) => c.block === block)) {
          const errors = (diagnostics.get(checked.file) ?? []).map((d) => ({
            code: d.code,
            text: format(d, checked),
          }));
          expect(
            errors.map((e) => e.text),
            checked.key,
          ).toEqual([]);
        }
      },
    );
  });

  describe('fragments (syntax only)', () => {
    it.each(byKind('fragment').map((b) => [b.where, b] as const))('%s parses', (_where, block) => {
      const out = ts.transpileModule(block.code, {
        reportDiagnostics: true,
        fileName: block.lang.startsWith('t') ? 'fragment.ts' : 'fragment.mjs',
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, allowJs: true },
      });
      expect((out.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '))).toEqual(
        [],
      );
    });
  });

  describe('JavaScript (run against a local receiver)', () => {
    let receiver: Receiver;
    beforeAll(async () => {
      receiver = await startReceiver();
    });
    afterAll(async () => {
      await receiver.close();
    });

    it.each(byKind('js').map((b) => [b.where, b] as const))('%s runs', async (_where, block) => {
      const sent = receiver.requests.length;
      // Only example.com URLs can be pointed at the receiver; any other would go unchecked.
      expect(block.code.match(/https?:\/\/(?![a-z0-9.-]*example\.com)[^\s'"`]+/g) ?? []).toEqual([]);
      const rewritten = block.code.replace(EXAMPLE_URL, receiver.url);
      const notifies = rewritten !== block.code;
      const file = join(dir, 'run', `${block.readme.replaceAll('/', '_')}-${block.line}.mjs`);
      writeFileSync(file, rewritten);

      const child = spawn(process.execPath, ['--import', PRELOAD, file], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      });
      let output = '';
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        stderr += chunk.toString();
      });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
        child.once('exit', (code, signal) => done({ code, signal })),
      );
      const ports: number[] = [];
      const listening = new Promise<number | 'exited'>((done) => {
        child.on('message', (m: { listening?: number }) => {
          if (typeof m.listening === 'number') {
            ports.push(m.listening);
            done(m.listening);
          }
        });
        void exited.then(() => done('exited'));
      });

      try {
        const port = await listening;
        if (port === 'exited') {
          // A script: it must finish by itself, successfully.
          expect((await exited).code, output).toBe(0);
        } else {
          // A block that serves must say what to ask it (<!-- readme-test: request GET / -->).
          expect(requestsOf(block).length, `${block.where}: add a request directive`).toBeGreaterThan(0);
          for (const [method, path] of requestsOf(block)) {
            const response = await fetch(`http://127.0.0.1:${port}${path}`, {
              method,
              headers: { connection: 'close' },
            });
            await response.arrayBuffer();
            expect(response.status, `${method} ${path}\n${output}`).toBeLessThan(400);
          }
        }
        if (notifies) {
          const got = await receiver.waitFor(sent + 1, 5_000);
          expect(got.length).toBeGreaterThan(sent);
        }
        if (port !== 'exited') {
          // Its shutdown recipe (if it has one) must let the process end by itself, with 0.
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          const { code, signal } = await exited;
          clearTimeout(timer);
          if (/SIGTERM/.test(block.code)) expect({ code, signal }, output).toEqual({ code: 0, signal: null });
          else expect(signal, output).toBe('SIGTERM');
        }
        // afterward logs failed deliveries and hook errors on stderr by default: a clean run is silent.
        // Node 22 alone marks node:sqlite experimental and says so once; that line is Node's, not ours.
        expect(withoutNodeSqliteWarning(stderr)).toBe('');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    });
  });
});
