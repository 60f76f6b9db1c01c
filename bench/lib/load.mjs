// HTTP load with autocannon, from a separate process, against 127.0.0.1 only, bounded in time.
import { spawnRpc } from './rpc.mjs';

/**
 * @param {{ url: string, connections?: number, duration?: number, amount?: number, warmupSeconds?: number,
 *   method?: string, body?: string, headers?: Record<string, string> }} options
 *   duration and warmupSeconds in seconds; `amount` (a request count) replaces duration.
 * @returns {Promise<{ rps: number, requests: number, latency: { p50: number, p90: number, p99: number, mean: number },
 *   non2xx: number, errors: number, timeouts: number, durationSeconds: number }>}
 */
export async function runLoad(options) {
  const { hostname } = new URL(options.url);
  if (hostname !== '127.0.0.1') throw new Error(`load goes to 127.0.0.1 only, not ${hostname}`);
  const duration = Math.min(options.duration ?? 5, 30);
  const rpc = await spawnRpc(new URL('./load-process.mjs', import.meta.url));
  try {
    return await rpc.call(
      'run',
      {
        url: options.url,
        connections: options.connections ?? 50,
        ...(options.amount === undefined ? { duration } : { amount: options.amount }),
        warmupSeconds: options.warmupSeconds ?? 0,
        method: options.method ?? 'GET',
        ...(options.body === undefined ? {} : { body: options.body }),
        headers: options.headers ?? {},
      },
      (duration + (options.warmupSeconds ?? 0)) * 1000 + 30_000,
    );
  } finally {
    await rpc.close();
  }
}
