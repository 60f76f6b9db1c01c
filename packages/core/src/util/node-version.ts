// The first import of every entry point of @afterward/core: ESM evaluates a module's imports in
// order, so this runs before undici loads. undici 8 crashes on Node 20 while loading
// (`TypeError: Cannot read properties of undefined (reading 'bind')`, zstd is missing from
// node:zlib); a user whose app still runs on Node 20 gets this error, which says what to do.
import { UnsupportedNodeError } from './errors.js';

/** The oldest Node.js afterward runs on: 22.19 (undici 8, `node:sqlite`, `require(esm)`). */
export const MIN_NODE = { major: 22, minor: 19 } as const;

/**
 * Whether a Node.js version string (`process.version`, `'v22.19.0'`) is one afterward supports.
 *
 * @example
 * ```ts
 * isSupportedNode('v20.20.2'); // false
 * ```
 */
export function isSupportedNode(version: string): boolean {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number);
  return major > MIN_NODE.major || (major === MIN_NODE.major && minor >= MIN_NODE.minor);
}

if (!isSupportedNode(process.version)) throw new UnsupportedNodeError(process.version);
