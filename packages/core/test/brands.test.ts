/**
 * Two installed copies of core in one app (a second install, an adapter pinned elsewhere): the
 * brands are `Symbol.for`, so a dispatcher and errors from one copy are recognised by the other.
 * Loads the BUILT package twice: dist/ as is, and a copy of it in a folder of its own.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type * as CoreModule from '../src/index.js';
import type * as AdapterModule from '../src/adapter.js';

type Core = typeof CoreModule;
type Adapter = typeof AdapterModule;

const pkg = fileURLToPath(new URL('..', import.meta.url));
let copyDir: string;
let one: Core;
let two: Core;
let twoAdapter: Adapter;

beforeAll(async () => {
  // Inside the package, so the copy resolves undici and on-finished from the same node_modules.
  copyDir = mkdtempSync(join(pkg, '.copy-'));
  cpSync(join(pkg, 'package.json'), join(copyDir, 'package.json'));
  cpSync(join(pkg, 'dist'), join(copyDir, 'dist'), {
    recursive: true,
    filter: (path) => !path.endsWith('.map'),
  });
  // Without its maps, so the test runner does not look for sources the copy does not have.
  for (const file of readdirSync(join(copyDir, 'dist'), { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.js')) continue;
    const path = join(copyDir, 'dist', file);
    writeFileSync(path, readFileSync(path, 'utf8').replace(/\n\/\/# sourceMappingURL=.*$/, '\n'));
  }
  one = (await import(pathToFileURL(join(pkg, 'dist/index.js')).href)) as Core;
  two = (await import(pathToFileURL(join(copyDir, 'dist/index.js')).href)) as Core;
  twoAdapter = (await import(pathToFileURL(join(copyDir, 'dist/adapter.js')).href)) as Adapter;
});

afterAll(() => {
  rmSync(copyDir, { recursive: true, force: true });
});

describe('two copies of @afterward/core', () => {
  it('are really two copies', () => {
    expect(two.createDispatcher).not.toBe(one.createDispatcher);
    expect(two.HttpStatusError).not.toBe(one.HttpStatusError);
  });

  it('recognise each other’s dispatchers', async () => {
    const dispatcher = one.createDispatcher({ breaker: false });
    expect(two.isDispatcher(dispatcher)).toBe(true);
    expect(twoAdapter.resolveAfterwardOptions({ dispatcher }).dispatcher).toBe(dispatcher);
    expect(two.isDispatcher({})).toBe(false);
    await dispatcher.close();
  });

  it('answer instanceof for each other’s errors, by class', () => {
    const error = new one.HttpStatusError(503, 'Service Unavailable', { retryable: true });
    expect(error).toBeInstanceOf(two.HttpStatusError);
    expect(error).toBeInstanceOf(two.AfterwardError);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(two.TimeoutError);
    expect(new two.TimeoutError('total', 10)).toBeInstanceOf(one.TimeoutError);
    expect(new two.TimeoutError('total', 10)).not.toBeInstanceOf(one.NetworkError);
    expect(new Error('plain')).not.toBeInstanceOf(two.AfterwardError);
    expect(two.isAfterwardError(error)).toBe(true);
  });
});
