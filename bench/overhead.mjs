// 2. Framework overhead: what one notification per request costs an Express or Koa app, with
// autocannon in one process, the app in another and the receiver in a third.
import { startApp } from './lib/app.mjs';
import { runLoad } from './lib/load.mjs';
import { express, koa } from './lib/packages.mjs';
import { fmt, goal, median, ratio } from './lib/report.mjs';
import { startReceiver } from './lib/receiver.mjs';

export const title = '2. Framework overhead';

const VARIANTS = [
  ['plain', 'plain (no notification)'],
  ['afterward', 'afterward: res.fireAndForget() per request'],
  ['naive', "naive: res.on('finish', () => pool.request().catch())"],
  ['inline', 'inline: await pool.request() before answering'],
];

export async function run({ smoke, log }) {
  const rounds = smoke ? 1 : 2;
  const duration = smoke ? 1 : 3;
  const warmupSeconds = smoke ? 0 : 1;
  const connections = 50;
  const frameworks = [];
  if (await express()) frameworks.push('express');
  if (await koa()) frameworks.push('koa');
  if (frameworks.length === 0) throw new Error('neither @afterward/express nor @afterward/koa is built');
  const receiver = await startReceiver({ status: 204 });
  const results = [];
  try {
    for (const framework of frameworks) {
      const samples = Object.fromEntries(VARIANTS.map(([variant]) => [variant, []]));
      // Interleaved rounds, median per variant: load from elsewhere hits every variant alike.
      for (let round = 0; round < rounds; round++) {
        for (const [variant] of VARIANTS) {
          const app = await startApp({ framework, variant, receiverUrl: receiver.url });
          try {
            const load = await runLoad({
              url: app.url,
              connections,
              warmupSeconds,
              ...(smoke ? { amount: 200 } : { duration }),
            });
            await app.drain(5_000);
            const stats = await app.stats();
            samples[variant].push({ ...load, stats });
            log(
              `${framework} ${variant}: ${fmt(load.rps)} req/s, p99 ${load.latency.p99} ms, ` +
                `notifications ${JSON.stringify(stats)}, errors ${load.errors + load.non2xx}`,
            );
          } finally {
            await app.close();
          }
        }
      }
      const m = Object.fromEntries(
        Object.entries(samples).map(([variant, list]) => [
          variant,
          {
            rps: median(list.map((s) => s.rps)),
            p50: median(list.map((s) => s.latency.p50)),
            p99: median(list.map((s) => s.latency.p99)),
            delivered: list.reduce((sum, s) => sum + s.stats.ok, 0),
            lost: list.reduce((sum, s) => sum + s.stats.failed + (s.stats.dropped ?? 0), 0),
            errors: list.reduce((sum, s) => sum + s.errors + s.non2xx, 0),
          },
        ]),
      );
      const base = m.plain;
      const name = framework === 'express' ? 'Express 5' : 'Koa 3';
      const call = framework === 'express' ? 'res.fireAndForget' : 'ctx.fireAndForget';
      results.push({
        title: `${title}: ${name}, one notification per request`,
        note:
          `autocannon (separate process, ${connections} connections, ${duration} s after ${warmupSeconds} s warm-up, ` +
          `${rounds} interleaved round(s), median) against a ${name} app (separate process, fresh per run) that ` +
          'answers a small JSON; each variant POSTs a small JSON notification to the same receiver (third process). ' +
          '"delivered" counts notifications the receiver acknowledged, over all rounds; "lost" counts failed or dropped ones.',
        headers: [
          'variant',
          'req/s',
          'vs plain',
          'p50',
          'p99',
          'p99 vs plain',
          'delivered',
          'lost',
          'HTTP errors',
        ],
        rows: VARIANTS.map(([variant, label]) => [
          label
            .replace('res.', framework === 'express' ? 'res.' : 'ctx.')
            .replace("ctx.on('finish'", "ctx.res.on('finish'"),
          fmt(m[variant].rps),
          ratio(m[variant].rps, base.rps),
          `${m[variant].p50} ms`,
          `${m[variant].p99} ms`,
          ratio(m[variant].p99, base.p99),
          variant === 'plain' ? '-' : fmt(m[variant].delivered),
          variant === 'plain' ? '-' : fmt(m[variant].lost),
          m[variant].errors,
        ]),
        goals: [
          goal(`${name}: afterward ≥ 0.85x plain req/s`, m.afterward.rps / base.rps, '>=', 0.85, {
            smoke,
            unit: 'x',
          }),
          goal(`${name}: afterward p99 ≤ 1.2x plain p99`, m.afterward.p99 / base.p99, '<=', 1.2, {
            smoke,
            unit: 'x',
          }),
        ],
        chart: {
          file: `overhead-${framework}.svg`,
          title: `${name}: requests per second with one notification per request, vs plain`,
          subtitle: `2 cores; app, receiver and autocannon in separate processes; ${new Date().toISOString().slice(0, 10)}, Node ${process.version}`,
          unit: 'x',
          bars: VARIANTS.map(([variant]) => ({
            label: variant === 'afterward' ? `afterward (${call})` : variant,
            value: m[variant].rps / base.rps,
            text: `${ratio(m[variant].rps, base.rps)}  (${fmt(m[variant].rps)} req/s, p99 ${m[variant].p99} ms)`,
            ours: variant === 'afterward',
          })),
          goal: { value: 0.85, label: 'goal 0.85x' },
        },
      });
    }
  } finally {
    await receiver.close();
  }
  return results;
}
