// The built packages, by relative path: the workspace root does not depend on them, and bench
// must measure what users get (dist/), so run `pnpm build` first (`pnpm bench` does).
import { existsSync } from 'node:fs';

import { pathToFileURL } from 'node:url';

// AFTERWARD_ROOT: another checkout's built packages (a directory holding packages/*/dist and their
// node_modules), to compare two builds with the same bench (A/B).
const root = process.env.AFTERWARD_ROOT
  ? pathToFileURL(`${process.env.AFTERWARD_ROOT.replace(/\/$/, '')}/`)
  : new URL('../../', import.meta.url);
const dist = (name, file = 'index.js') => new URL(`packages/${name}/dist/${file}`, root);

/** @returns {Promise<typeof import('../../packages/core/dist/index.js')>} */
export async function core() {
  return import(dist('core').href);
}

/** @returns {Promise<typeof import('../../packages/core/dist/adapter.js')>} */
export async function coreAdapter() {
  return import(dist('core', 'adapter.js').href);
}

/** @returns {Promise<typeof import('../../packages/core/dist/testing.js')>} */
export async function coreTesting() {
  return import(dist('core', 'testing.js').href);
}

/** The Express adapter, or undefined while it does not export `afterward` yet. */
export async function express() {
  return adapter('express');
}

/** The Koa adapter, or undefined while it does not export `afterward` yet. */
export async function koa() {
  return adapter('koa');
}

async function adapter(name) {
  const file = dist(name);
  if (!existsSync(file)) return undefined;
  const mod = await import(file.href);
  return typeof mod.afterward === 'function' ? mod : undefined;
}

/**
 * Core and the Express adapter of this checkout, or of `other` (another checkout's directory with
 * packages/*\/dist and their node_modules): for benches that load two builds side by side.
 * @param {string | undefined} other
 */
export async function expressPackages(other) {
  if (other === undefined) return { core: await core(), express: await express() };
  const base = pathToFileURL(`${other.replace(/\/$/, '')}/`);
  return {
    core: await import(new URL('packages/core/dist/index.js', base).href),
    express: await import(new URL('packages/express/dist/index.js', base).href),
  };
}
