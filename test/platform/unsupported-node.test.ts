import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isSupportedNode } from '../../packages/core/src/util/node-version.js';

// A user's app on Node 20 must get a clear error, not undici 8's crash while loading
// (`TypeError: Cannot read properties of undefined (reading 'bind')`). These run the BUILT
// packages in child processes, as an app would load them.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MESSAGE = /afterward needs Node\.js 22\.19 or later \(24 and 26 are supported\); this is v20\.\d+\.\d+/;
const SYSTEM_NODE = '/usr/bin/node';

interface Run {
  code: number | null;
  output: string;
}

function run(node: string, args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(node, args, { cwd: ROOT, timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      done({ code, output: `${stdout}${stderr}` });
    });
  });
}

// Each prints one line: how the load ended, with the error's name, code and message.
const IMPORT = (name: string): string[] => [
  '--input-type=module',
  '-e',
  `import(${JSON.stringify(name)}).then(() => console.log('loaded'), (e) => console.log(e.name, e.code, e.message))`,
];
const REQUIRE = (name: string): string[] => [
  '-e',
  `try { require(${JSON.stringify(name)}); console.log('loaded'); } catch (e) { console.log(e.name, e.code, e.message); }`,
];

/** `/usr/bin/node`'s version when it is a Node 20, or why the Node 20 tests cannot run here. */
function systemNode20(): { version: string } | { missing: string } {
  if (!existsSync(SYSTEM_NODE)) return { missing: `${SYSTEM_NODE} does not exist` };
  let version: string;
  try {
    version = execFileSync(SYSTEM_NODE, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch (error) {
    // It exists but does not run: on CI (where it is Node 20) that is a broken check, not a skip.
    if (process.env.CI === 'true') throw error;
    return { missing: `${SYSTEM_NODE} --version failed: ${(error as Error).message}` };
  }
  if (process.env.CI === 'true') expect(version).toMatch(/^v\d+\.\d+\.\d+$/);
  return version.startsWith('v20.') ? { version } : { missing: `${SYSTEM_NODE} is ${version}, not Node 20` };
}

const node20 = systemNode20();
if ('missing' in node20) {
  console.warn(
    `\n!!! SKIPPING the Node 20 tests of test/platform/unsupported-node.test.ts: ${node20.missing}.\n` +
      '!!! The guard is still checked on this Node with a faked process.version.\n',
  );
}

describe('an unsupported Node.js gets a clear error', () => {
  it('isSupportedNode: 22.19 and later, 24, 26; not 20 or 22.18', () => {
    expect(isSupportedNode('v20.20.2')).toBe(false);
    expect(isSupportedNode('v22.18.0')).toBe(false);
    expect(isSupportedNode('v21.7.3')).toBe(false);
    expect(isSupportedNode('v22.19.0')).toBe(true);
    expect(isSupportedNode('v23.0.0')).toBe(true);
    expect(isSupportedNode('v24.9.0')).toBe(true);
    expect(isSupportedNode('v26.0.0')).toBe(true);
    expect(isSupportedNode(process.version)).toBe(true);
  });

  // On every Node line CI runs: a preload makes this Node claim to be 20, so the guard in the
  // built package must throw, and before undici was loaded (checked through the CJS cache).
  it('the built package refuses a Node that says it is v20.20.2, before loading undici', async () => {
    const preload =
      "Object.defineProperty(process, 'version', { value: 'v20.20.2' });" +
      "process.on('exit', () => { const m = process.getBuiltinModule('node:module');" +
      " const loaded = Object.entries(m._cache ?? {}).some(([f, mod]) => f.includes('/undici/') && mod.loaded);" +
      " console.log('undici loaded:', loaded); });";
    for (const entry of [
      '@afterward/express',
      '@afterward/koa',
      '@afterward/core',
      '@afterward/core/adapter',
    ]) {
      for (const args of [IMPORT(entry), REQUIRE(entry)]) {
        const { output } = await run(process.execPath, [
          '--import',
          `data:text/javascript,${encodeURIComponent(preload)}`,
          ...args,
        ]);
        expect(output, entry).toMatch(
          new RegExp(`^UnsupportedNodeError AFTERWARD_ERR_UNSUPPORTED_NODE ${MESSAGE.source}`, 'm'),
        );
        expect(output, entry).toContain('undici loaded: false');
      }
    }
  });

  it.skipIf('missing' in node20)(
    `on the system Node 20 (${SYSTEM_NODE}), import() and require() of @afterward/express print the clear error`,
    async () => {
      for (const args of [IMPORT('@afterward/express'), REQUIRE('@afterward/express')]) {
        const { code, output } = await run(SYSTEM_NODE, args);
        expect(code, output).toBe(0);
        expect(output).toMatch(
          new RegExp(`^UnsupportedNodeError AFTERWARD_ERR_UNSUPPORTED_NODE ${MESSAGE.source}$`, 'm'),
        );
        expect(output).not.toContain('bind');
      }
      // Loaded as an app would, without a catch: the process ends with the message, not a TypeError.
      const bare = await run(SYSTEM_NODE, ['--input-type=module', '-e', "import '@afterward/koa';"]);
      expect(bare.code).not.toBe(0);
      expect(bare.output).toMatch(MESSAGE);
      expect(bare.output).not.toContain('TypeError');
    },
  );
});
