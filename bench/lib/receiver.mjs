// Starts a receiver (receiver-process.mjs) in its own process, so it never competes for the
// event loop of what is measured.
import { spawnRpc } from './rpc.mjs';

/**
 * @param {{ delayMs?: number, status?: number }} [options]
 * @returns {Promise<{ url: string, origin: string, port: number, pid: number,
 *   stats: () => Promise<{ requests: number, fullBodies: number, partialBodies: number, bytes: number, connections: number }>,
 *   reset: () => Promise<void>, waitFor: (count: number, timeoutMs: number) => Promise<any>, close: () => Promise<void> }>}
 */
export async function startReceiver(options = {}) {
  const rpc = await spawnRpc(new URL('./receiver-process.mjs', import.meta.url), {
    args: [JSON.stringify(options)],
  });
  const { port } = /** @type {{ port: number }} */ (rpc.ready);
  const origin = `http://127.0.0.1:${port}`;
  return {
    url: `${origin}/hook`,
    origin,
    port,
    pid: rpc.pid,
    stats: () => rpc.call('stats'),
    reset: () => rpc.call('reset'),
    waitFor: (count, timeoutMs) => rpc.call('waitFor', { count, timeoutMs }, timeoutMs + 5_000),
    close: () => rpc.close(),
  };
}
