// Starts app-process.mjs: an Express or Koa app in its own process, in one variant.
import { spawnRpc } from './rpc.mjs';

/**
 * @param {{ framework: 'express' | 'koa', variant: 'plain' | 'afterward' | 'naive' | 'inline', receiverUrl: string }} options
 * @returns {Promise<{ url: string, stats: () => Promise<{ ok: number, failed: number, dropped?: number, queued?: number }>,
 *   drain: (timeoutMs: number) => Promise<unknown>, close: () => Promise<void> }>}
 */
export async function startApp(options) {
  const rpc = await spawnRpc(new URL('./app-process.mjs', import.meta.url), {
    args: [JSON.stringify(options)],
  });
  return {
    url: /** @type {{ url: string }} */ (rpc.ready).url,
    stats: () => rpc.call('stats'),
    drain: (timeoutMs) => rpc.call('drain', timeoutMs, timeoutMs + 5_000),
    close: () => rpc.close(),
  };
}
