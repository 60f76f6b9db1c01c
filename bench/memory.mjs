// 4. Memory under outage: the receiver is down (connection refused) and the app keeps sending.
// afterward at its default bounds against naive detached fetch(), each in a fresh process with
// --expose-gc, sampling RSS as it goes.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { core } from './lib/packages.mjs';
import { fmt, goal, mb, ratio } from './lib/report.mjs';
import { runTask } from './lib/task.mjs';

export const title = '4. Memory under outage';

const BODY = JSON.stringify({
  type: 'order.paid',
  id: 'ord_0000000042',
  amount: 4200,
  currency: 'EUR',
  note: 'x'.repeat(200),
});
const BATCH = 1_000;
const silent = { warn() {}, error() {} };

async function deadUrl() {
  // A port that was just free: nothing listens, so every connection is refused at once.
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}/hook`;
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
function rssAfterGc() {
  globalThis.gc();
  globalThis.gc();
  return process.memoryUsage().rss;
}

/** Runs in a child process started with --expose-gc. */
export async function outage({ kind, total, maxSeconds, sampleEvery }) {
  const url = await deadUrl();
  let send;
  let stats;
  let close = async () => {};
  if (kind === 'afterward') {
    const { createDispatcher } = await core();
    const dispatcher = createDispatcher({ logger: silent });
    send = () => dispatcher.send(url, { body: BODY, headers: { 'content-type': 'application/json' } });
    stats = () => dispatcher.stats();
    close = async () => void (await dispatcher.close({ timeout: 0 }));
  } else {
    let pending = 0;
    send = () => {
      pending++;
      fetch(url, { method: 'POST', body: BODY, headers: { 'content-type': 'application/json' } })
        .catch(() => undefined)
        .finally(() => pending--);
    };
    stats = () => ({ pending });
  }
  // Warm the code paths; then churn allocations for a while, as a process serving traffic does, so
  // V8's young generation is at its working size before the baseline (a cold, idle process would
  // charge that one-off growth, which any busy app has already paid, to whatever runs first).
  for (let i = 0; i < 100; i++) send();
  await tick();
  const coldRss = rssAfterGc();
  const churnUntil = performance.now() + 1_000;
  while (performance.now() < churnUntil) {
    for (let i = 0; i < 2_000; i++) JSON.parse(JSON.stringify({ body: BODY, i, at: Date.now() }));
    await tick();
  }
  const baseline = rssAfterGc();
  const heapBaseline = process.memoryUsage().heapUsed;
  const samples = [];
  let peak = baseline;
  let atFull;
  let heapAtFull;
  const started = performance.now();
  const deadline = started + maxSeconds * 1000;
  let sent = 0;
  while (sent < total && performance.now() < deadline) {
    for (let i = 0; i < BATCH; i++) send();
    sent += BATCH;
    await tick();
    if (sent % sampleEvery === 0) {
      const rss = process.memoryUsage().rss;
      peak = Math.max(peak, rss);
      samples.push({ sent, rss });
    }
    // The queue holds 10,000 by default: well past that, the level it settles at.
    if (sent === 50_000) {
      atFull = rssAfterGc();
      heapAtFull = process.memoryUsage().heapUsed;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const end = rssAfterGc();
  const heapEnd = process.memoryUsage().heapUsed;
  peak = Math.max(peak, end);
  const finalStats = stats();
  await close();
  return {
    sent,
    seconds,
    coldRss,
    baseline,
    peak,
    atFull: atFull ?? end,
    end,
    heapRetained: heapEnd - heapBaseline,
    heapFlat: heapEnd - (heapAtFull ?? heapEnd),
    samples,
    stats: finalStats,
  };
}

export async function run({ smoke, log }) {
  const plan = {
    afterward: {
      total: smoke ? 20_000 : 1_000_000,
      maxSeconds: smoke ? 5 : 45,
      sampleEvery: smoke ? 2_000 : 20_000,
    },
    fetch: {
      total: smoke ? 5_000 : 100_000,
      maxSeconds: smoke ? 3 : 10,
      sampleEvery: smoke ? 1_000 : 10_000,
    },
  };
  const measured = {};
  for (const kind of ['afterward', 'fetch']) {
    measured[kind] = await runTask(
      import.meta.url,
      'outage',
      { kind, ...plan[kind] },
      {
        execArgv: ['--expose-gc', '--max-old-space-size=2048'],
        timeoutMs: (plan[kind].maxSeconds + 60) * 1000,
      },
    );
    const m = measured[kind];
    log(
      `${kind}: ${fmt(m.sent)} sends in ${m.seconds.toFixed(1)} s, peak +${mb(m.peak - m.baseline)}, stats ${JSON.stringify(m.stats)}`,
    );
  }
  const a = measured.afterward;
  const f = measured.fetch;
  const growth = (m) => m.peak - m.baseline;
  const row = (label, m) => [
    label,
    fmt(m.sent),
    `${m.seconds.toFixed(1)} s`,
    mb(m.baseline),
    `+${mb(growth(m))}`,
    mb(m.end - m.atFull),
    mb(m.heapRetained),
    `${fmt(growth(m) / m.sent, 0)} B`,
  ];
  const flat = a.heapFlat / 1e6;
  return {
    title: `${title}: receiver down, default bounds`,
    note:
      `The target refuses every connection. Sends go in batches of ${fmt(BATCH)} with a turn of the event loop ` +
      'between them, in a fresh process per client; RSS is sampled as it goes (peak) and after a full GC at ' +
      `50,000 sends (queue long full) and at the end. The baseline is taken after 1 s of allocation churn, so V8's ` +
      `young generation is at the working size a busy app already has (from a cold idle process afterward's peak ` +
      `is +${mb(a.peak - a.coldRss)}). afterward runs at its defaults (10,000 queued, 32 MiB, ` +
      "'drop-oldest', 5 attempts with backoff); naive fetch has no bound, so it is cut at a smaller count. " +
      `afterward dropped ${fmt(a.stats.dropped)} and still held ${fmt((a.stats.queued ?? 0) + (a.stats.inFlight ?? 0))} at the end.`,
    headers: [
      'client',
      'sends',
      'time',
      'baseline RSS',
      'peak RSS growth',
      'RSS end - at 50k (after GC)',
      'heap retained at end',
      'peak growth per send',
    ],
    rows: [row('afterward dispatcher.send(), default bounds', a), row('naive fetch().catch(() => {})', f)],
    goals: [
      goal(`afterward peak RSS growth over ${fmt(a.sent)} sends < 50 MB`, growth(a) / 1e6, '<=', 50, {
        smoke,
        unit: 'MB',
      }),
      goal('afterward heap stays flat once the queue is full (end vs 50k, after GC)', flat, '<=', 10, {
        smoke,
        unit: 'MB',
      }),
    ],
    extra: { growthRatio: ratio(growth(f) / f.sent, growth(a) / a.sent) },
  };
}
