#!/usr/bin/env node
/**
 * Soak run (not in CI): the Express audit example under steady load for minutes, delivering to a
 * flaky receiver. Reports the app's RSS and heap over time, its event-loop delay
 * (perf_hooks.monitorEventLoopDelay), and the dispatcher's counts; at the end checks that nothing
 * sent went unaccounted: delivered + failed + dropped + cancelled (+ sent) === sends.
 *
 *   pnpm build && node bench/soak.mjs                # 3 minutes
 *   node bench/soak.mjs --seconds 20                 # a quick run
 *   node bench/soak.mjs --seconds 600 --connections 50 --rate 0 --fail-every 3
 *
 * --rate caps the load in requests per second (default 250; 0 = as fast as it goes), so that a
 * default run is a steady state the dispatcher keeps up with: growth over time then means a leak,
 * not a backlog. With --rate 0 the queue fills to its bound and drops are expected (and counted).
 *
 * Processes: this one runs the flaky receiver and the load (autocannon); the app runs in a child
 * process (this file with --role app), so its RSS and event-loop delay are the app's alone.
 * Exit code 0 when the counts add up (and the app shut down), 1 otherwise.
 */
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    seconds: { type: 'string', default: '180' },
    connections: { type: 'string', default: '20' },
    rate: { type: 'string', default: '250' },
    'fail-every': { type: 'string', default: '4' },
    'report-every': { type: 'string' },
    'audit-url': { type: 'string' },
  },
});

if (args.role === 'app') await runApp();
else await runMain();

/** The child: the Express audit example with its own dispatcher, sampled once a second. */
async function runApp() {
  const { createDispatcher } = await import('@afterward/core');
  const { createApp } = await import('../examples/express-audit/app.mjs');
  let warnings = 0;
  const dispatcher = createDispatcher({
    // Failures and drops are counted by the stats; the logger only counts its (rate-limited) lines.
    logger: { warn: () => void warnings++, error: () => void warnings++ },
    retry: { attempts: 3, minDelay: 50, maxDelay: 1000 },
    timeout: { connect: 1000, response: 2000, total: 3000 },
  });
  const { app } = createApp({ auditUrl: args['audit-url'], dispatcher });
  let requests = 0;
  const server = app.listen(0, '127.0.0.1');
  server.on('request', () => void requests++);
  await new Promise((resolve) => server.once('listening', resolve));

  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const sample = () => {
    const { rss, heapUsed } = process.memoryUsage();
    const ms = (ns) => Math.round((ns / 1e6) * 10) / 10;
    const out = {
      type: 'sample',
      requests,
      rss,
      heapUsed,
      eld: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
      stats: dispatcher.stats(),
    };
    delay.reset();
    return out;
  };
  const sampler = setInterval(() => process.send?.(sample()), 1000);

  process.send?.({ type: 'listening', port: server.address().port });
  process.on('message', async (message) => {
    if (message !== 'stop') return;
    clearInterval(sampler);
    const last = sample();
    await new Promise((resolve) => {
      server.close(resolve);
      server.closeIdleConnections();
    });
    const started = performance.now();
    const closed = await dispatcher.close({ timeout: 10_000 });
    // Every request the app served parked exactly one audit notification.
    process.send?.({
      type: 'closed',
      sends: requests,
      closeMs: Math.round(performance.now() - started),
      drained: closed.drained,
      cancelledByClose: closed.cancelled,
      stats: closed.stats,
      last,
      warnings,
    });
    process.disconnect();
  });
}

/** A receiver that fails every n-th request (a reset, then a 503, in turn) and is slow now and then. */
function startFlakyReceiver(failEvery) {
  const counts = { requests: 0, ok: 0, resets: 0, status503: 0 };
  const server = createServer((req, res) => {
    const n = ++counts.requests;
    req.resume();
    req.on('end', () => {
      if (n % failEvery === 0) {
        if ((n / failEvery) % 2 === 0) {
          counts.resets++;
          req.socket.resetAndDestroy();
        } else {
          counts.status503++;
          res.writeHead(503).end();
        }
        return;
      }
      const answer = () => {
        counts.ok++;
        res.writeHead(204).end();
      };
      // One in ten answers after 50-250 ms: a receiver that is sometimes busy.
      if (n % 10 === 1) setTimeout(answer, 50 + Math.random() * 200);
      else answer();
    });
  });
  server.on('connection', (socket) => socket.on('error', () => {}));
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, counts, url: `http://127.0.0.1:${server.address().port}` }),
    ),
  );
}

async function runMain() {
  const seconds = Number(args.seconds);
  const connections = Number(args.connections);
  const rate = Number(args.rate);
  const failEvery = Number(args['fail-every']);
  if (!(seconds > 0) || !(connections > 0) || !(rate >= 0) || !(failEvery >= 2)) {
    console.error(
      'usage: node bench/soak.mjs [--seconds 180] [--connections 20] [--rate 250] [--fail-every 4]',
    );
    process.exit(2);
  }
  const reportEvery = Number(args['report-every'] ?? Math.max(2, Math.round(seconds / 12)));
  const { default: autocannon } = await import('autocannon');
  const receiver = await startFlakyReceiver(failEvery);

  const child = fork(new URL(import.meta.url), ['--role', 'app', '--audit-url', `${receiver.url}/audit`], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const samples = [];
  let closed;
  const port = await new Promise((resolve, reject) => {
    child.on('message', (message) => {
      if (message.type === 'listening') resolve(message.port);
      else if (message.type === 'sample') samples.push({ t: samples.length + 1, ...message });
      else if (message.type === 'closed') closed = message;
    });
    child.once('exit', (code) => reject(new Error(`the app exited early (${code})`)));
  });
  const childExit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));

  const mib = (n) => (n / 1024 / 1024).toFixed(1);
  console.log(
    `soak: ${seconds} s, ${connections} connections, ${rate > 0 ? `${rate} req/s` : 'unthrottled'}, express-audit example -> flaky receiver ` +
      `(every ${failEvery}th request fails: reset / 503 in turn; 1 in 10 slow)`,
  );
  console.log(
    [
      't(s)',
      'req/s',
      'rss MiB',
      'heap MiB',
      'eld p50',
      'eld p99',
      'eld max',
      'queued',
      'inFlight',
      'delivered',
      'failed',
      'dropped',
      'retries',
    ]
      .map((h) => h.padStart(9))
      .join(''),
  );
  let printed = 0;
  let lastRequests = 0;
  const report = () => {
    const s = samples.at(-1);
    if (s === undefined || s.t === printed) return;
    const rps = (s.requests - lastRequests) / (s.t - printed);
    printed = s.t;
    lastRequests = s.requests;
    const row = [
      s.t,
      Math.round(rps),
      mib(s.rss),
      mib(s.heapUsed),
      s.eld.p50,
      s.eld.p99,
      s.eld.max,
      s.stats.queued,
      s.stats.inFlight,
      s.stats.delivered,
      s.stats.failed,
      s.stats.dropped,
      s.stats.retries,
    ];
    console.log(row.map((v) => String(v).padStart(9)).join(''));
  };
  const reporter = setInterval(report, reportEvery * 1000);

  const load = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: seconds,
    ...(rate > 0 ? { overallRate: rate } : {}),
    requests: [
      { method: 'GET', path: '/orders/42', headers: { 'x-user': 'soak' } },
      {
        method: 'POST',
        path: '/orders',
        headers: { 'content-type': 'application/json' },
        body: '{"item":"kettle"}',
      },
      { method: 'GET', path: '/orders/999' },
      { method: 'GET', path: '/fail' },
    ],
  });
  clearInterval(reporter);
  report();

  child.send('stop');
  const code = await childExit;
  receiver.server.close();
  receiver.server.closeAllConnections();
  if (closed === undefined) {
    console.error(`the app exited (${code}) without reporting its shutdown`);
    process.exit(1);
  }

  const { stats, sends } = closed;
  const settled = stats.delivered + stats.sent + stats.failed + stats.dropped + stats.cancelled;
  const third = Math.max(1, Math.floor(samples.length / 3));
  const avg = (list, key) => list.reduce((sum, s) => sum + s[key], 0) / list.length;
  const rssEarly = avg(samples.slice(0, third), 'rss');
  const rssLate = avg(samples.slice(-third), 'rss');
  const eldP99 = samples.map((s) => s.eld.p99).sort((a, b) => a - b);
  console.log('');
  console.log(
    `load: ${load.requests.total} requests answered (${load['2xx']} 2xx, ${load.non2xx} non-2xx), ` +
      `${load.errors} errors, ${load.timeouts} timeouts; latency p50 ${load.latency.p50} ms p99 ${load.latency.p99} ms`,
  );
  console.log(
    `receiver: ${receiver.counts.requests} requests: ${receiver.counts.ok} ok, ${receiver.counts.resets} resets, ` +
      `${receiver.counts.status503} x 503`,
  );
  console.log(
    `app RSS: first third avg ${mib(rssEarly)} MiB, last third avg ${mib(rssLate)} MiB ` +
      `(${rssLate >= rssEarly ? '+' : ''}${mib(rssLate - rssEarly)}); max ${mib(Math.max(...samples.map((s) => s.rss)))} MiB`,
  );
  console.log(
    `event-loop delay p99 per second: median ${eldP99[Math.floor(eldP99.length / 2)] ?? 0} ms, ` +
      `worst ${eldP99.at(-1) ?? 0} ms; worst max ${Math.max(...samples.map((s) => s.eld.max))} ms`,
  );
  console.log(
    `shutdown: close() took ${closed.closeMs} ms, drained ${closed.drained}, cancelled ${closed.cancelledByClose}; ` +
      `${closed.warnings} warn/error log lines (rate-limited)`,
  );
  console.log(
    `accounting: sends ${sends} = delivered ${stats.delivered} + sent ${stats.sent} + failed ${stats.failed} ` +
      `+ dropped ${stats.dropped} + cancelled ${stats.cancelled} = ${settled} (retries ${stats.retries})`,
  );
  const ok = settled === sends && stats.queued === 0 && stats.inFlight === 0;
  console.log(ok ? 'OK: every send is accounted for' : `FAIL: ${sends - settled} send(s) unaccounted`);
  process.exit(ok ? 0 : 1);
}
