// Issue 15 row 3, paired more tightly than cpu.mjs's row: what a batched `auditLog()` adds to the
// CPU of a real Express 5 request. Plain Express and one auditLog variant run in two processes
// under the same load AT THE SAME TIME (bench/cpu.mjs's open-loop generator, an even `--rate`
// req/s to each for `--window` ms, GET /order as in cpu.mjs's row 3), so what the shared machine
// does to one it does to the other; the next window pairs plain with the next variant, in
// alternating order. The receiver (204) is a third process. A window's CPU is `process.cpuUsage()`
// of each app process from the first request until the window's records were flushed by the
// batcher's own timer or count (no forced flush) and answered. "added" is the variant minus plain
// Express of the same window; the table shows the median (min..max) over rounds.
//
//   node bench/audit-pair.mjs [--rounds 20] [--rate 2000] [--window 2000]
//     [--items 1000,5000]   also auditLog with batch.maxItems = each of these
//     [--old /path]         also auditLog from another checkout's built packages (a directory
//                           with packages/{core,express}/dist and their node_modules): A/B of builds,
//                           each round also with the two builds loaded at the same time
//     [--profile DIR]       --cpu-prof each app process into DIR/<variant>/ (socket rows only)
//     [--smoke]
// Exports run() as bench/run.mjs's modules do.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { expressPackages } from './lib/packages.mjs';
import { directGet } from './lib/exchange.mjs';
import { arg } from './lib/args.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { goal, median } from './lib/report.mjs';
import { renderResult } from './lib/report.mjs';
import { listenOrder } from './lib/order-app.mjs';
import { serve, spawnRpc } from './lib/rpc.mjs';

export const title =
  'Audit, paired: added CPU per Express request, plain and auditLog loaded at once (issue 15 row 3)';

const silent = { warn() {}, error() {} };
const self = new URL(import.meta.url);

/**
 * An app process: plain Express (`audit` null) or Express + auditLog with these options (beyond
 * url and dispatcher), from this checkout or from `root`.
 */
async function appProcess({ receiverUrl, audit, root }) {
  const { default: express } = await import('express');
  const app = express();
  let dispatcher;
  if (audit !== null) {
    const pkgs = await expressPackages(root);
    dispatcher = pkgs.core.createDispatcher({ logger: silent });
    app.use(pkgs.express.auditLog({ url: receiverUrl, dispatcher, ...audit }));
  }
  // The route of bench/cpu.mjs's row 3.
  const { server, counter, url } = await listenOrder(app);
  const stats = () => dispatcher?.stats() ?? { queued: 0, inFlight: 0, failed: 0, dropped: 0 };
  let mark;
  serve(
    {
      begin: () => {
        mark = { cpu: process.cpuUsage(), served: counter.served, stats: stats() };
        return null;
      },
      end: async () => {
        // The window's last records leave on the batcher's own timer (maxWaitMs, 1 s by default):
        // every app waits that long alike, then until every batch was answered.
        await new Promise((r) => setTimeout(r, 1_100));
        const until = performance.now() + 15_000;
        const busy = () => stats().queued + stats().inFlight;
        while (busy() > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
        const cpu = process.cpuUsage(mark.cpu);
        const now = stats();
        return {
          cpuMicros: cpu.user + cpu.system,
          served: counter.served - mark.served,
          failed: now.failed - mark.stats.failed,
          dropped: now.dropped - mark.stats.dropped,
        };
      },
    },
    {
      ready: { url },
      onExit: async () => {
        server.closeAllConnections();
        await dispatcher?.close({ timeout: 2_000 });
      },
    },
  );
}

const spread = (values, digits = 1, unit = '') => {
  const show = (v) => `${v.toFixed(digits)}${unit}`;
  return `${show(median(values))} (${show(Math.min(...values))}..${show(Math.max(...values))})`;
};

/** plain, audit at its defaults, with each `items` as maxItems, and the same from the `old` build. */
function variantsOf(items, old) {
  const variants = { plain: { audit: null }, audit: { audit: {} } };
  for (const n of items) variants[`audit maxItems ${n}`] = { audit: { batch: { maxItems: n } } };
  if (old !== undefined) {
    variants['audit (old build)'] = { audit: {}, root: old };
    for (const n of items)
      variants[`audit maxItems ${n} (old build)`] = { audit: { batch: { maxItems: n } }, root: old };
  }
  return variants;
}

/**
 * The same variants with the Express app's handler called directly in this process, on a fresh
 * IncomingMessage and ServerResponse per request (no socket: no parser, no write), 'finish' and
 * 'close' emitted by hand; records go to the real receiver when the batcher's timer or count
 * sends them. Far steadier than the socket rows on a shared machine (one process, windows of
 * about 1 s, interleaved), but blind to what the socket path adds. Returns CPU µs per request,
 * per round, for each variant.
 */
async function direct({ receiverUrl, variants, rounds, perWindow }) {
  const { Socket } = await import('node:net');
  const { default: express } = await import('express');
  const handlers = {};
  const dispatchers = [];
  for (const [key, { audit, root }] of Object.entries(variants)) {
    const app = express();
    if (audit !== null) {
      const pkgs = await expressPackages(root);
      const dispatcher = pkgs.core.createDispatcher({ logger: silent });
      dispatchers.push(dispatcher);
      app.use(pkgs.express.auditLog({ url: receiverUrl, dispatcher, ...audit }));
    }
    app.get('/order', (_req, res) => {
      res.json({ ok: true });
    });
    handlers[key] = app;
  }
  const socket = new Socket();
  const window = async (handler) => {
    const cpu = process.cpuUsage();
    for (let i = 0; i < perWindow; i++) {
      const { req, res } = directGet(socket);
      handler(req, res);
      res.emit('finish');
      res.emit('close');
      // Turns of the event loop, as a server has: the batcher's timer runs when it is due.
      if (i % 32 === 31) await new Promise((resolve) => setImmediate(resolve));
    }
    // The window's last records leave on the batcher's timer (1 s): waited for, not forced.
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    for (const dispatcher of dispatchers) await dispatcher.drain();
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / perWindow;
  };
  const keys = Object.keys(handlers);
  for (const key of keys) await window(handlers[key]);
  const samples = Object.fromEntries(keys.map((key) => [key, []]));
  for (let round = 0; round < rounds; round++) {
    for (const key of round % 2 === 0 ? keys : [...keys].reverse())
      samples[key].push(await window(handlers[key]));
  }
  for (const dispatcher of dispatchers) await dispatcher.close({ timeout: 2_000 });
  return samples;
}

/**
 * @param {{ smoke: boolean, log: (line: string) => void, rounds?: number, rate?: number,
 *   windowMs?: number, items?: number[], old?: string }} ctx
 */
export async function run({ smoke, log, rounds, rate = 2_000, windowMs, items = [], old, profileDir }) {
  rounds ??= smoke ? 2 : 20;
  windowMs ??= smoke ? 300 : 2_000;
  const receiver = await startReceiver({ status: 204 });
  // bench/cpu.mjs's open-loop load generator (its own process), as its row 3 uses it.
  const load = await spawnRpc(new URL('./cpu.mjs', import.meta.url), { args: ['--load'] });
  const apps = {};
  try {
    const variants = variantsOf(items, old);
    for (const [key, variant] of Object.entries(variants)) {
      apps[key] = await spawnRpc(self, {
        execArgv:
          profileDir === undefined
            ? []
            : [
                '--cpu-prof',
                '--cpu-prof-interval=200',
                `--cpu-prof-dir=${profileDir}/${key.replace(/\W+/g, '-')}`,
              ],
        args: ['--app', JSON.stringify({ receiverUrl: receiver.url, ...variant })],
      });
    }
    const keys = Object.keys(apps);
    const others = keys.slice(1);
    // Plain Express and one variant under the same load at the same time: what the machine does to
    // one it does to the other. Each window pairs plain with the next variant.
    const window = async (pair, durationMs) => {
      await Promise.all(pair.map((key) => apps[key].call('begin')));
      const loads = await Promise.all(
        pair.map((key) =>
          load.call(
            'run',
            { url: apps[key].ready.url, mode: 'open', rate, durationMs, connections: 64 },
            durationMs + 30_000,
          ),
        ),
      );
      const ends = await Promise.all(pair.map((key) => apps[key].call('end', undefined, 30_000)));
      return pair.map((key, i) => {
        const l = loads[i];
        const a = ends[i];
        if (l.failed > 0 || a.served !== l.ok)
          log(`${key}: ${l.failed} failed, served ${a.served} of ${l.sent}`);
        if (a.failed > 0 || a.dropped > 0) log(`${key}: batches failed ${a.failed}, dropped ${a.dropped}`);
        return a.cpuMicros / a.served;
      });
    };
    for (const key of others) await window(['plain', key], smoke ? 200 : 2_000);
    const samples = Object.fromEntries(keys.map((key) => [key, []]));
    /** Plain Express's CPU per request in the window paired with each variant. */
    const plainOf = Object.fromEntries(others.map((key) => [key, []]));
    // With --old, each variant is also loaded at the same time as its old build's: on a machine
    // other benches share, the steadiest A/B of the two.
    const suffixes = ['', ...items.map((n) => ` maxItems ${n}`)];
    /** This build minus the old build, per window where both were loaded at once. */
    const headToHead = Object.fromEntries(suffixes.map((suffix) => [suffix, []]));
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? others : [...others].reverse();
      for (const key of order) {
        const [p, v] = await window(['plain', key], windowMs);
        samples.plain.push(p);
        plainOf[key].push(p);
        samples[key].push(v);
      }
      if (old !== undefined) {
        for (const suffix of suffixes) {
          const pair = [`audit${suffix}`, `audit${suffix} (old build)`];
          const [ours, theirs] = await window(round % 2 === 0 ? pair : [...pair].reverse(), windowMs).then(
            (cpu) => (round % 2 === 0 ? cpu : [...cpu].reverse()),
          );
          headToHead[suffix].push(ours - theirs);
        }
      }
      log(
        `round ${round + 1}: ${others.map((k) => `${k} +${(samples[k].at(-1) - plainOf[k].at(-1)).toFixed(1)}`).join(', ')}` +
          (old === undefined
            ? ''
            : `; loaded at once, this build - old: ${suffixes.map((x) => headToHead[x].at(-1).toFixed(1)).join(', ')}`),
      );
    }
    const quick = await direct({
      receiverUrl: receiver.url,
      variants,
      rounds: smoke ? 1 : 12,
      perWindow: smoke ? 300 : 4_000,
    });
    log(
      `direct: ${others.map((k) => `${k} +${median(quick[k].map((v, i) => v - quick.plain[i])).toFixed(2)}`).join(', ')}`,
    );
    const plainRequest = median(samples.plain);
    const rows = [
      ['plain Express', spread(samples.plain, 1, ' µs'), '', '', `${spread(quick.plain, 2, ' µs')}`, ''],
    ];
    const goals = [];
    for (const key of others) {
      const plain = plainOf[key];
      const added = samples[key].map((v, i) => v - plain[i]);
      const share = samples[key].map((v, i) => (100 * (v - plain[i])) / plain[i]);
      const addedDirect = quick[key].map((v, i) => v - quick.plain[i]);
      rows.push([
        `Express + ${key}`,
        spread(samples[key], 1, ' µs'),
        spread(added, 1, ' µs'),
        spread(share, 1, ' %'),
        spread(addedDirect, 2, ' µs'),
        `${((100 * median(addedDirect)) / plainRequest).toFixed(1)} %`,
      ]);
      if (key === 'audit')
        goals.push(
          goal('auditLog added CPU, % of plain Express', median(share), '<=', 5, { smoke, unit: '%' }),
          goal(
            'auditLog added CPU, handler called directly, % of a plain Express request',
            (100 * median(addedDirect)) / plainRequest,
            '<=',
            5,
            { smoke, unit: '%' },
          ),
        );
    }
    if (old !== undefined) {
      const added = (key) => samples[key].map((v, i) => v - plainOf[key][i]);
      for (const suffix of suffixes) {
        const ours = added(`audit${suffix}`);
        const theirs = added(`audit${suffix} (old build)`);
        const diff = ours.map((a, i) => a - theirs[i]);
        const direct_ = (key) => quick[key].map((v, i) => v - quick.plain[i]);
        const diffDirect = direct_(`audit${suffix}`).map(
          (a, i) => a - direct_(`audit${suffix} (old build)`)[i],
        );
        rows.push(
          [
            `audit${suffix}: this build - old build (per round)`,
            '',
            spread(diff, 1, ' µs'),
            '',
            spread(diffDirect, 2, ' µs'),
            '',
          ],
          [
            `audit${suffix}: this build - old build, loaded at once`,
            '',
            spread(headToHead[suffix], 1, ' µs'),
            '',
            '',
            '',
          ],
        );
      }
    }
    return {
      title,
      note:
        `Process CPU time (user + system) of the app process per request, ${rounds} interleaved rounds of ` +
        `${windowMs / 1000} s at an even ${rate} req/s (open loop, undici, its own process) per app; ` +
        'GET /order as in bench/cpu.mjs row 3; plain Express and the variant loaded at the same time, ' +
        'receiver (204) in its own process; a window ends when its records were flushed by the batcher ' +
        '(no forced flush) and answered. "added" is the variant minus plain Express of the same window. ' +
        'Last two columns: the same apps in this one process, handler called directly on a fresh ' +
        'request and response (no socket), 4,000 requests a window, batches sent to the receiver by the ' +
        "batcher's own timer or count, 12 interleaved rounds; its added CPU is steadier, and is shown " +
        'against the median CPU of a plain Express request over the socket (first column).',
      headers: [
        'app',
        'CPU per request',
        'added',
        'added / plain',
        'handler called directly: CPU (plain) / added',
        'added / plain request',
      ],
      rows,
      goals,
    };
  } finally {
    for (const rpc of Object.values(apps)) await rpc.close();
    await load.close();
    await receiver.close();
  }
}

const main = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (main && process.argv[2] === '--app') {
  await appProcess(JSON.parse(process.argv[3]));
} else if (main) {
  const result = await run({
    smoke: process.argv.includes('--smoke'),
    log: (line) => console.error(`  ${line}`),
    rounds: arg('rounds') === undefined ? undefined : Number(arg('rounds')),
    rate: Number(arg('rate', 2_000)),
    windowMs: arg('window') === undefined ? undefined : Number(arg('window')),
    items: arg('items') === undefined ? [] : arg('items').split(',').map(Number),
    old: arg('old'),
    profileDir: arg('profile'),
  });
  console.log(renderResult(result));
}
