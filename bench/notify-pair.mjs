// Issue 15 row 1, paired more tightly than cpu.mjs's row: the added app CPU per
// `res.fireAndForget` / `ctx.fireAndForget` against the naive
// `res.on('finish', () => pool.request(...).catch(() => {}))`, with the plain app, the afterward app
// and the naive app of one framework (bench/cpu.mjs's app processes) under the same even open-loop
// load AT THE SAME TIME: what the shared machine does to one it does to the others in that window,
// where cpu.mjs measures them one window after another. The receiver (204) and the load generator
// (cpu.mjs's) are processes of their own. "added" is a variant minus the plain app of the same
// window; the ratio is taken per window; the table shows the median (min..max) over rounds.
//
//   node bench/notify-pair.mjs [--rounds 12] [--rate 2000] [--window 1500]
//     [--frameworks express,koa]
//     [--coalesce N]  the afterward app's `coalesce` window in ms (default: the dispatcher's, 20)
//     [--old /path]   also an afterward app built from another checkout (a directory with
//                     packages/*/dist and their node_modules), in the same windows: A/B of builds
//     [--smoke]
// Exports run() as bench/run.mjs's modules do.
import { pathToFileURL } from 'node:url';
import { arg } from './lib/args.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { goal, median, renderResult } from './lib/report.mjs';
import { spawnRpc } from './lib/rpc.mjs';

export const title =
  'Notifications, paired: added app CPU per fireAndForget vs the naive call, loaded at once (issue 15 row 1)';

const cpuBench = new URL('./cpu.mjs', import.meta.url);

const spread = (values, digits = 1, unit = '') => {
  const show = (v) => `${v.toFixed(digits)}${unit}`;
  return `${show(median(values))} (${show(Math.min(...values))}..${show(Math.max(...values))})`;
};

/**
 * @param {{ smoke: boolean, log: (line: string) => void, rounds?: number, rate?: number,
 *   windowMs?: number, frameworks?: string[], old?: string }} ctx
 */
export async function run({
  smoke,
  log,
  rounds,
  rate = 2_000,
  windowMs,
  frameworks = ['express', 'koa'],
  old,
  coalesce,
}) {
  rounds ??= smoke ? 2 : 12;
  windowMs ??= smoke ? 300 : 1_500;
  const receiver = await startReceiver({ status: 204 });
  const load = await spawnRpc(cpuBench, { args: ['--load'] });
  const apps = {};
  try {
    const variants = ['plain', 'afterward', 'naive', ...(old === undefined ? [] : ['old'])];
    for (const framework of frameworks) {
      for (const variant of variants) {
        const app = {
          framework,
          variant: variant === 'old' ? 'afterward' : variant,
          receiverUrl: receiver.url,
          options: variant === 'afterward' && coalesce !== undefined ? { coalesce } : {},
        };
        apps[`${framework}:${variant}`] = await spawnRpc(cpuBench, {
          args: ['--app', JSON.stringify(app)],
          ...(variant === 'old' ? { env: { AFTERWARD_ROOT: old } } : {}),
        });
      }
    }
    /** Every app of `framework` under the same load at the same time; CPU µs per request of each. */
    const window = async (framework, durationMs) => {
      const keys = variants.map((variant) => `${framework}:${variant}`);
      await Promise.all(keys.map((key) => apps[key].call('begin', {})));
      const loads = await Promise.all(
        keys.map((key) =>
          load.call(
            'run',
            { url: apps[key].ready.url, mode: 'open', rate, durationMs, connections: 64 },
            durationMs + 30_000,
          ),
        ),
      );
      const ends = await Promise.all(keys.map((key) => apps[key].call('end', { settleMs: 3_000 }, 15_000)));
      return Object.fromEntries(
        keys.map((key, i) => {
          const l = loads[i];
          const a = ends[i];
          if (l.failed > 0 || a.served !== l.ok)
            log(`${key}: ${l.failed} failed, served ${a.served} of ${l.sent}`);
          if (a.failed > 0 || a.dropped > 0 || a.stillBusy > 0)
            log(`${key}: notifications failed ${a.failed}, dropped ${a.dropped}, still busy ${a.stillBusy}`);
          return [key.split(':')[1], a.cpuMicros / a.served];
        }),
      );
    };
    const tables = [];
    for (const framework of frameworks) {
      await window(framework, smoke ? 200 : 1_500);
      const samples = Object.fromEntries(variants.map((variant) => [variant, []]));
      for (let round = 0; round < rounds; round++) {
        const cpu = await window(framework, windowMs);
        for (const variant of variants) samples[variant].push(cpu[variant]);
        const added = (variant) => cpu[variant] - cpu.plain;
        log(
          `${framework} round ${round + 1}: plain ${cpu.plain.toFixed(1)} µs, added afterward ${added('afterward').toFixed(1)}, ` +
            `naive ${added('naive').toFixed(1)}${old === undefined ? '' : `, old build ${added('old').toFixed(1)}`}`,
        );
      }
      const added = (variant) => samples[variant].map((v, i) => v - samples.plain[i]);
      const ratio = (variant, peer) => added(variant).map((a, i) => a / added(peer)[i]);
      const name = framework === 'express' ? 'Express 5' : 'Koa 3';
      const call = framework === 'express' ? 'res.fireAndForget' : 'ctx.fireAndForget';
      const ours = ratio('afterward', 'naive');
      const over = ours.filter((r) => r > 1).length;
      const rows = [
        [`${name}: plain app, CPU per request`, spread(samples.plain, 1, ' µs'), ''],
        [
          `${name}: added per \`${call}\` vs per naive \`pool.request\` on finish`,
          `${spread(added('afterward'), 1, ' µs')} vs ${spread(added('naive'), 1, ' µs')}; ours > naive in ${over} of ${rounds}`,
          spread(ours, 2, 'x'),
        ],
      ];
      if (old !== undefined) {
        rows.push([
          `${name}: old build, added per \`${call}\` vs naive`,
          spread(added('old'), 1, ' µs'),
          spread(ratio('old', 'naive'), 2, 'x'),
        ]);
        rows.push([`${name}: added, this build / old build`, '', spread(ratio('afterward', 'old'), 2, 'x')]);
      }
      tables.push({
        title: `${title}: ${name}`,
        note:
          `Process CPU time (user + system) of each app process per request, ${rounds} rounds of ${windowMs / 1000} s ` +
          `at an even ${rate} req/s (open loop, undici, its own process) to each app at the same time; one ` +
          `notification per request to a receiver (204) in its own process; afterward at its defaults` +
          `${coalesce === undefined ? '' : ` but coalesce: ${coalesce}`}; a window ends once every ` +
          `notification of it was answered. "added" is the app minus the plain app of the same window.`,
        headers: ['measured', 'CPU per request', 'ratio'],
        rows,
        goals: [goal(`${name}: added CPU, afterward / naive (paired)`, median(ours), '<=', 1, { smoke })],
      });
    }
    return tables;
  } finally {
    for (const rpc of Object.values(apps)) await rpc.close();
    await load.close();
    await receiver.close();
  }
}

const main = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (main) {
  const tables = await run({
    smoke: process.argv.includes('--smoke'),
    log: (line) => console.error(`  ${line}`),
    rounds: arg('rounds') === undefined ? undefined : Number(arg('rounds')),
    rate: Number(arg('rate', 2_000)),
    windowMs: arg('window') === undefined ? undefined : Number(arg('window')),
    frameworks: arg('frameworks', 'express,koa').split(','),
    old: arg('old'),
    coalesce: arg('coalesce') === undefined ? undefined : Number(arg('coalesce')),
  });
  for (const table of tables) console.log(renderResult(table));
}
