import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// The Node lines we support, and the one CI asked for: `.ci/run` sets AFTERWARD_EXPECT_NODE when
// it runs the suite on 22 and 26, so a PATH mix-up that silently ran them on the repository's own
// Node 24 fails here instead of passing for the wrong runtime.
const MINIMUM = [22, 19] as const;
const root = new URL('../../', import.meta.url);

function readJson(path: string): { name?: string; private?: boolean; engines?: { node?: string } } {
  return JSON.parse(readFileSync(new URL(path, root), 'utf8')) as {
    name?: string;
    private?: boolean;
    engines?: { node?: string };
  };
}

describe('node line', () => {
  it(`runs on Node ${MINIMUM.join('.')} or later`, () => {
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    expect(major > MINIMUM[0] || (major === MINIMUM[0] && minor >= MINIMUM[1])).toBe(true);
  });

  it('runs on the Node line CI asked for', () => {
    const expected = process.env.AFTERWARD_EXPECT_NODE ?? '24';
    expect(process.versions.node.split('.')[0]).toBe(expected);
  });

  it('declares the same minimum in the root and in every published package', () => {
    const manifests = [
      'package.json',
      ...readdirSync(new URL('packages/', root)).map((name) => `packages/${name}/package.json`),
    ];
    for (const path of manifests) {
      expect({ path, node: readJson(path).engines?.node }).toEqual({ path, node: `>=${MINIMUM.join('.')}` });
    }
  });
});
