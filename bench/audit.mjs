// Audit logging cost: the same Express app with and without `auditLog()` (one record per request,
// batched), measured in one run. The app runs in its own process, autocannon in another, the
// audit receiver in a third. Runnable alone: `node bench/audit.mjs [--smoke]` (after `pnpm build`).
import { pathToFileURL } from 'node:url';
import { express as expressAdapter, core } from './lib/packages.mjs';
import { runLoad } from './lib/load.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { fmt, goal, median, ratio, renderResult } from './lib/report.mjs';
import { serve, spawnRpc } from './lib/rpc.mjs';

export const title = '6. Audit log: Express with a batched audit record per request vs plain Express';

const silent = { warn() {}, error() {} };
// auditLog's default batching (500 records or 1 s at most; 100 records before issue 15).
const BATCH = {};

/** The app process: plain Express, or Express with auditLog() in front of the same route. */
async function app(variant, auditUrl) {
  const { default: express } = await import('express');
  const server = express();
  let dispatcher;
  if (variant === 'audit') {
    const { auditLog } = await expressAdapter();
    const { createDispatcher } = await core();
    dispatcher = createDispatcher({ logger: silent });
    server.use(auditLog({ url: auditUrl, dispatcher, batch: BATCH }));
  }
  server.get('/users/:id', (req, res) => {
    res.json({ id: req.params.id, name: 'Ada', roles: ['admin'] });
  });
  const listening = server.listen(0, '127.0.0.1');
  await new Promise((resolve) => listening.once('listening', resolve));
  serve(
    {
      drain: async () => {
        if (dispatcher === undefined) return null;
        await dispatcher.drain({ timeout: 10_000 });
        return dispatcher.stats();
      },
    },
    {
      ready: { port: listening.address().port },
      onExit: async () => {
        await dispatcher?.close();
        listening.closeAllConnections();
      },
    },
  );
}

/** @param {{ smoke: boolean, log: (line: string) => void }} ctx */
export async function run({ smoke, log }) {
  const receiver = await startReceiver({ delayMs: 0 });
  const self = new URL(import.meta.url);
  const apps = {};
  try {
    for (const variant of ['plain', 'audit']) {
      apps[variant] = await spawnRpc(self, { args: ['--app', variant, receiver.url] });
    }
    const rounds = smoke ? 1 : 5;
    const duration = smoke ? 1 : 4;
    const runs = { plain: [], audit: [] };
    for (let round = 0; round < rounds; round++) {
      // Interleaved, alternating the order, so drift of a shared machine hits both alike.
      const order = round % 2 === 0 ? ['plain', 'audit'] : ['audit', 'plain'];
      for (const variant of order) {
        const port = apps[variant].ready.port;
        const result = await runLoad({
          url: `http://127.0.0.1:${port}/users/42?token=abc`,
          connections: 50,
          duration,
          warmupSeconds: smoke ? 0 : 1,
          headers: { authorization: 'Bearer x', 'user-agent': 'bench', 'x-request-id': 'r-1' },
        });
        if (result.errors > 0 || result.non2xx > 0) {
          throw new Error(`${variant}: ${result.errors} errors, ${result.non2xx} non-2xx`);
        }
        runs[variant].push(result);
        log(`round ${round + 1} ${variant}: ${fmt(result.rps)} req/s, p99 ${result.latency.p99} ms`);
      }
    }
    const stats = await apps.audit.call('drain', undefined, 30_000);
    const received = await receiver.stats();
    const rps = (variant) => median(runs[variant].map((r) => r.rps));
    const p99 = (variant) => median(runs[variant].map((r) => r.latency.p99));
    const requests = runs.audit.reduce((sum, r) => sum + r.requests, 0);
    // Ratios per round (the two apps ran back to back), then the median: drift of a shared
    // machine between rounds cancels out.
    const paired = (pick) => median(runs.audit.map((r, i) => pick(r) / pick(runs.plain[i])));
    const rpsRatio = paired((r) => r.rps);
    const p99Ratio = paired((r) => r.latency.p99);
    return {
      title,
      note:
        `autocannon, 50 connections, ${rounds} interleaved round(s) of ${duration} s per app; figures are ` +
        'medians, ratios the median of the per-round ratios. ' +
        'GET /users/42 answering JSON. The audit app sends every record (default batching: 500 per ' +
        `batch, 1000 ms at most) to a receiver in another process: ${fmt(requests)} records in ` +
        `${fmt(received.fullBodies)} batches, ${stats?.failed ?? 0} failed, ${stats?.dropped ?? 0} dropped.`,
      headers: ['app', 'req/s', 'p50 ms', 'p99 ms', 'req/s vs plain', 'p99 vs plain'],
      rows: ['plain', 'audit'].map((variant) => [
        variant === 'plain' ? 'Express, no afterward' : 'Express + auditLog() (batched)',
        fmt(rps(variant)),
        fmt(median(runs[variant].map((r) => r.latency.p50)), 1),
        fmt(p99(variant), 1),
        variant === 'plain' ? '1.00x' : ratio(rpsRatio, 1),
        variant === 'plain' ? '1.00x' : ratio(p99Ratio, 1),
      ]),
      goals: [
        goal('audit throughput >= 0.97x plain Express', rpsRatio, '>=', 0.97, { smoke, unit: 'x' }),
        goal('audit p99 <= 1.1x plain Express', p99Ratio, '<=', 1.1, { smoke, unit: 'x' }),
      ],
    };
  } finally {
    for (const rpc of Object.values(apps)) await rpc.close();
    await receiver.close();
  }
}

const main = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (main && process.argv[2] === '--app') {
  await app(process.argv[3], process.argv[4]);
} else if (main) {
  const result = await run({
    smoke: process.argv.includes('--smoke'),
    log: (line) => console.error(`  ${line}`),
  });
  console.log(renderResult(result));
}
