// @afterward/postgres: app-side cost of an enqueue, enqueue-to-receiver latency, and deliveries/s
// with 1 and 2 worker processes. Needs PostgreSQL (AFTERWARD_PG_URL, default
// postgres://postgres@127.0.0.1:5432/afterward_pg_test) and `pnpm build`. Under 30 s.
//   node bench/postgres.mjs
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import pg from '../packages/postgres/node_modules/pg/lib/index.js';
import { notificationJson, postgresBackend } from '../packages/postgres/dist/index.js';
import { createDispatcher } from '../packages/core/dist/index.js';

const url = process.env.AFTERWARD_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/afterward_pg_test';
const schema = `bench_${randomBytes(3).toString('hex')}`;
const quiet = { warn: () => undefined, error: () => undefined };
const cpuMs = (start) => {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
};
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function ensureDatabase() {
  const target = new URL(url);
  const db = target.pathname.slice(1);
  target.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: target.href });
  await admin.connect();
  const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]);
  if (rows.length === 0) await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
}

/** Receivers on 127.0.0.1 (one origin each) that record arrival minus the enqueue time in the body. */
async function receivers(count) {
  const state = { delivered: 0, latencies: [], ids: new Set() };
  const servers = [];
  for (let i = 0; i < count; i++) {
    const server = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString());
        if (body.t) state.latencies.push(Date.now() - body.t);
        state.ids.add(req.headers['webhook-id']);
        state.delivered += 1;
        res.end('ok');
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
  }
  return {
    state,
    urls: servers.map((s) => `http://127.0.0.1:${s.address().port}/hook`),
    close: () =>
      Promise.all(servers.map((s) => new Promise((resolve) => (s.closeAllConnections(), s.close(resolve))))),
  };
}

function startWorkers(n, config) {
  return Promise.all(
    Array.from({ length: n }, () => {
      const proc = fork(new URL('./lib/postgres-worker.mjs', import.meta.url), [JSON.stringify(config)], {
        stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
      });
      const lines = [];
      proc.stdout.setEncoding('utf8');
      return new Promise((resolve) => {
        proc.stdout.on('data', (chunk) => {
          for (const line of chunk.split('\n').filter(Boolean)) {
            lines.push(line);
            if (line === 'ready') resolve({ proc, lines });
          }
        });
      });
    }),
  );
}

async function stopWorkers(workers) {
  return Promise.all(
    workers.map(
      (w) =>
        new Promise((resolve) => {
          w.proc.once('exit', () => resolve(JSON.parse(w.lines.at(-1))));
          w.proc.kill('SIGTERM');
        }),
    ),
  );
}

async function waitFor(check, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('bench timed out');
    await sleep(5);
  }
}

await ensureDatabase();
const backendOptions = { connectionString: url, schema };
const backend = postgresBackend({ ...backendOptions, logger: quiet });
await backend.start();
// Internal (stripped from the .d.ts): the started pg-boss, for the awaited-single-insert baseline.
const { boss } = await backend.connect();
const lines = [];
const log = (line) => {
  lines.push(line);
  process.stdout.write(`${line}\n`);
};

try {
  // 1. App-side CPU per notification: batched enqueue (100 per event-loop turn, as 100 concurrent
  //    requests would) vs one awaited pg-boss insert per notification. Notifications are built first.
  const N = 10_000;
  const built = Array.from({ length: N }, (_, i) =>
    notificationJson(`https://hooks.example.com/${i % 20}`, { json: { i } }),
  );
  let cpu0 = process.cpuUsage();
  let t0 = performance.now();
  for (let i = 0; i < N; i += 100) {
    for (let j = i; j < i + 100; j++) backend.enqueue(built[j]);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await backend.flush();
  const batchedCpu = cpuMs(cpu0);
  const batchedMs = performance.now() - t0;
  const syncCost = (() => {
    const more = Array.from({ length: 10_000 }, (_, i) => notificationJson(`https://hooks.example.com/${i}`));
    const start = performance.now();
    for (const n of more) backend.enqueue(n);
    return ((performance.now() - start) * 1000) / more.length;
  })();
  await backend.flush();
  const M = 500;
  const single = Array.from({ length: M }, (_, i) => ({
    data: notificationJson(`https://hooks.example.com/${i}`),
  }));
  cpu0 = process.cpuUsage();
  t0 = performance.now();
  for (const job of single) await boss.insert(backend.queue, [job]);
  const singleCpu = cpuMs(cpu0);
  const singleMs = performance.now() - t0;
  log(
    `enqueue, batched per turn : ${((batchedCpu / N) * 1000).toFixed(1)} µs CPU/notification, ${Math.round(N / (batchedMs / 1000))}/s (${backend.stats().batches} inserts for ${N + 10_000})`,
  );
  log(`enqueue() call itself     : ${syncCost.toFixed(2)} µs wall per call (synchronous part)`);
  log(
    `awaited single insert     : ${((singleCpu / M) * 1000).toFixed(1)} µs CPU/notification, ${Math.round(M / (singleMs / 1000))}/s`,
  );
  log(
    `batched vs single, CPU    : ${(singleCpu / M / (batchedCpu / N)).toFixed(1)}x less CPU per notification`,
  );
  // 1b. The same through createDispatcher: send() in memory (nothing delivered: a transport that
  //     never answers is not needed, the calls are measured before the first attempt) vs
  //     send() with { backend } (validated, serialised, batched, committed).
  {
    const K = 10_000;
    const memory = createDispatcher({ concurrency: 1, maxQueued: K + 10, logger: quiet, retry: false });
    let c0 = process.cpuUsage();
    for (let i = 0; i < K; i++) memory.send(`http://127.0.0.1:9/${i % 20}`, { json: { i } }).cancel();
    const memCpu = cpuMs(c0);
    await memory.close({ timeout: 0 });
    const viaBackend = createDispatcher({ backend, logger: quiet });
    c0 = process.cpuUsage();
    const handles = [];
    for (let i = 0; i < K; i += 100) {
      for (let j = i; j < i + 100; j++)
        handles.push(viaBackend.send(`https://hooks.example.com/${j % 20}`, { json: { j } }));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(handles.map((h) => h.done));
    const pgCpu = cpuMs(c0);
    log(
      `app CPU per send()        : in memory ${((memCpu / K) * 1000).toFixed(1)} µs (send + cancel), with { backend } ${((pgCpu / K) * 1000).toFixed(1)} µs (to committed)`,
    );
  }
  await pg_clear();

  // 2. Enqueue-to-receiver latency, one idle worker process, paced enqueues (~200/s for 2 s).
  const rx = await receivers(4);
  let workers = await startWorkers(1, {
    backend: backendOptions,
    worker: { concurrency: 32, concurrencyPerOrigin: 16 },
  });
  for (let i = 0; i < 300; i++) {
    backend.enqueue(notificationJson(rx.urls[i % 4], { json: { t: Date.now() } }));
    await sleep(5);
  }
  await waitFor(() => rx.state.delivered >= 300, 15_000);
  const lat = [...rx.state.latencies].sort((a, b) => a - b);
  log(
    `enqueue -> receiver       : p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms (300 paced at ~200/s, 1 worker)`,
  );

  // 3. Deliveries/s: a burst of 2,000 across 4 origins, 1 worker process, then 2.
  for (const count of [1, 2]) {
    if (count === 2)
      workers = [
        ...workers,
        ...(await startWorkers(1, {
          backend: backendOptions,
          worker: { concurrency: 32, concurrencyPerOrigin: 16 },
        })),
      ];
    rx.state.delivered = 0;
    const B = 2_000;
    for (let i = 0; i < B; i++) backend.enqueue(notificationJson(rx.urls[i % 4], { json: { i } }));
    const start = performance.now();
    await backend.flush();
    await waitFor(() => rx.state.delivered >= B, 20_000);
    const seconds = (performance.now() - start) / 1000;
    log(
      `deliveries/s, ${count} worker(s)  : ${Math.round(B / seconds)}/s (${B} in ${seconds.toFixed(2)} s, 16 per origin, 32 per worker)`,
    );
  }
  {
    // The in-process dispatcher on the same burst, for scale (same per-origin limit, no PostgreSQL).
    const inProcess = createDispatcher({
      concurrency: 32,
      concurrencyPerOrigin: 16,
      logger: quiet,
      breaker: false,
    });
    rx.state.delivered = 0;
    const B = 2_000;
    const start = performance.now();
    for (let i = 0; i < B; i++) inProcess.send(rx.urls[i % 4], { json: { i } });
    await waitFor(() => rx.state.delivered >= B, 20_000);
    const seconds = (performance.now() - start) / 1000;
    log(
      `deliveries/s, in-process  : ${Math.round(B / seconds)}/s (${B} in ${seconds.toFixed(2)} s, 16 per origin, 32 in flight)`,
    );
    await inProcess.close({ timeout: 1_000 });
  }
  const stopped = await stopWorkers(workers);
  const delivered = stopped.reduce((s, w) => s + w.stats.delivered, 0);
  const cpu = stopped.reduce((s, w) => s + w.cpuMs, 0);
  log(
    `worker CPU per delivery   : ${((cpu / delivered) * 1000).toFixed(0)} µs (all phases, ${delivered} deliveries, split ${stopped.map((w) => w.stats.delivered).join('/')})`,
  );
  await rx.close();
} finally {
  await backend.close({ timeout: 2_000 });
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await c.end();
}

async function pg_clear() {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`DELETE FROM ${schema}.job WHERE name = $1`, [backend.queue]);
  await c.end();
}
