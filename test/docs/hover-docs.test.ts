/**
 * Hover docs (issue 12): what an editor shows at the call site comes from the BUILT declarations.
 * A sample app is compiled against them and the TypeScript checker is asked, as an editor's hover
 * asks, for the doc comment of each name at its use.
 */
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

// Each `/*@name*/` marks the identifier right after it.
const SAMPLE = `
import express from 'express';
import Koa from 'koa';
import { afterward } from '@afterward/express';
import { afterward as koaAfterward } from '@afterward/koa';

const app = express();
app.use(afterward());
app.post('/orders', async (_req, res) => {
  const handle = res./*@expressFireAndForget*/fireAndForget('https://hooks.example.com', {
    json: { ok: true },
    /*@when*/when: 'ok',
  });
  res.after(() => undefined, { /*@afterWhen*/when: 'error' });
  await handle./*@done*/done;
  const stats = afterward().dispatcher./*@stats*/stats();
  void [stats./*@queued*/queued, stats./*@retries*/retries, stats./*@hooks*/hooks];
});
const koa = new Koa();
koa.use(koaAfterward());
koa.use((ctx) => {
  ctx./*@koaFireAndForget*/fireAndForget('https://hooks.example.com');
});
`;

let dir = '';
let docs: Map<string, string>;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'afterward-hover-'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  const file = join(dir, 'app.ts');
  writeFileSync(file, SAMPLE);
  const base = ts.readConfigFile(join(ROOT, 'tsconfig.base.json'), (path) => ts.sys.readFile(path));
  const parsed = ts.parseJsonConfigFileContent(base.config, ts.sys, dir);
  const program = ts.createProgram([file], {
    ...parsed.options,
    noEmit: true,
    types: ['node'],
    typeRoots: [join(ROOT, 'node_modules/@types')],
  });
  const errors = ts
    .getPreEmitDiagnostics(program)
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '));
  expect(errors).toEqual([]);
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  if (source === undefined) throw new Error('the sample was not compiled');
  docs = new Map();
  for (const match of SAMPLE.matchAll(/\/\*@(\w+)\*\//g)) {
    const at = (match.index ?? 0) + match[0].length;
    let node: ts.Node | undefined = source;
    // The innermost node starting at the marker's end: the identifier an editor hovers.
    for (let found = true; found;) {
      found = false;
      node.forEachChild((child) => {
        if (!found && child.getStart(source) <= at && at < child.getEnd()) {
          node = child;
          found = true;
        }
      });
    }
    const target: ts.Node = node;
    // An object literal's key: an editor shows the doc of the property of its contextual type.
    const symbol =
      ts.isPropertyAssignment(target.parent) && ts.isObjectLiteralExpression(target.parent.parent)
        ? checker
            .getContextualType(target.parent.parent)
            ?.getNonNullableType()
            .getProperty(target.getText(source))
        : checker.getSymbolAtLocation(target);
    const text = ts.displayPartsToString(symbol?.getDocumentationComment(checker));
    const tags = (symbol?.getJsDocTags(checker) ?? []).map((t) => `@${t.name}`).join(' ');
    docs.set(match[1] ?? '', `${text} ${tags}`.trim());
  }
}, 60_000);

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

describe('hover docs at the call site (built .d.ts)', () => {
  it('res.fireAndForget and ctx.fireAndForget say what they do, that done never rejects, with an example', () => {
    for (const name of ['expressFireAndForget', 'koaFireAndForget']) {
      expect(docs.get(name), name).toMatch(/sends it once the response has finished/);
      expect(docs.get(name), name).toMatch(/never\s+rejects/);
      expect(docs.get(name), name).toContain('@example');
    }
  });

  it('when (of fireAndForget and of after) lists its values', () => {
    for (const name of ['when', 'afterWhen']) {
      expect(docs.get(name), name).toMatch(/'always'.*'ok'.*'error'.*'aborted'/s);
    }
  });

  it('handle.done says it never rejects', () => {
    expect(docs.get('done')).toMatch(/Never rejects/);
  });

  it('stats() and its fields are documented', () => {
    expect(docs.get('stats')).toMatch(/queued, inFlight, delivered/);
    expect(docs.get('queued')).toMatch(/retry backoff/);
    expect(docs.get('retries')).toMatch(/Retries scheduled/);
    expect(docs.get('hooks')).toMatch(/after\(\)/);
  });
});
