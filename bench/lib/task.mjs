// Runs `export async function <name>(input)` of a module in a fresh child process, so each
// measured client gets its own heap, JIT and event loop, and a crash or leak stays contained.
import { spawnRpc } from './rpc.mjs';

/**
 * @param {URL | string} file module URL (use `import.meta.url`)
 * @param {string} name exported function
 * @param {unknown} input structured-cloneable argument
 * @param {{ execArgv?: string[], timeoutMs?: number }} [options]
 */
export async function runTask(file, name, input, options = {}) {
  const rpc = await spawnRpc(new URL('./task-process.mjs', import.meta.url), {
    execArgv: options.execArgv ?? [],
  });
  try {
    return await rpc.call('run', { file: String(file), name, input }, options.timeoutMs ?? 120_000);
  } finally {
    await rpc.close();
  }
}
