// The built packages, by relative path: the workspace root does not depend on them, and bench
// must measure what users get (dist/), so run `pnpm build` first (`pnpm bench` does).
import { existsSync } from 'node:fs';

const dist = (name, file = 'index.js') => new URL(`../../packages/${name}/dist/${file}`, import.meta.url);

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
