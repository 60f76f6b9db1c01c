// autocannon in its own process: the load generator never shares an event loop with the app.
import autocannon from 'autocannon';
import { serve } from './rpc.mjs';

function once(options) {
  return new Promise((resolve, reject) => {
    autocannon(options, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

serve({
  run: async ({ warmupSeconds, ...options }) => {
    if (warmupSeconds > 0) await once({ ...options, duration: warmupSeconds });
    const r = await once(options);
    return {
      rps: r.requests.average,
      requests: r.requests.total,
      latency: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, mean: r.latency.average },
      non2xx: r.non2xx,
      errors: r.errors,
      timeouts: r.timeouts,
      durationSeconds: r.duration,
    };
  },
});
