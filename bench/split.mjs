// Issue 15 rows 3 and 4, split into their parts: Express 5 apps that each add one part to a plain
// app (an empty 'close' listener, a listener that keeps a record's fields, importing the adapter,
// the afterward() middleware with nothing parked, auditLog) run under the same even open-loop load
// AT THE SAME TIME, all of them in every window, so what the shared machine does to one it does
// to all. bench/cpu.mjs's load generator and a receiver (204) are processes of their own. "added"
// is a variant minus plain Express of the same window; the table shows the median and quartiles
// over rounds, and the app process's system CPU and GC time per request (medians).
//
//   node bench/split.mjs [--rounds 30] [--rate 2000] [--window 2000] [--warmup 1]
//     [--variants close,fields,import,installed,audit,nonet]
//                     also: batch2000, plain2, rawnet, undici, undici1000, undiciaudit (bench/README.md,
//                     fourteenth pass); --warmup: unmeasured windows before the rounds
//     [--old /path]   also auditLog from another checkout's built packages (packages/*/dist with
//                     their node_modules), loaded in the same windows: A/B of builds
//     [--smoke]
// Exports run() as bench/run.mjs's modules do.
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { expressPackages } from './lib/packages.mjs';
import { arg } from './lib/args.mjs';
import { instantTransport } from './lib/instant-transport.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { median, renderResult } from './lib/report.mjs';
import { listenOrder } from './lib/order-app.mjs';
import { serve, spawnRpc } from './lib/rpc.mjs';

export const title =
  'Split: what each part adds to the CPU of an Express request, loaded at once (issue 15 rows 3, 4)';

const silent = { warn() {}, error() {} };
const self = new URL(import.meta.url);

/** What each variant adds to plain Express 5 (GET /order answering a small JSON, as cpu.mjs's row 3). */
const VARIANTS = {
  close: "an empty res.on('close') listener per request (the floor of any per-response hook)",
  fields: "a 'close' listener that keeps the nine values of an audit record in columns (64 rows), no JSON",
  import: '@afterward/express imported (its req.route accessor and res methods), no middleware',
  installed: 'afterward() installed, nothing parked (row 4)',
  audit: 'auditLog() at its defaults (row 3)',
  batch2000: 'auditLog() with batches of up to 2,000 records (4 MiB), a quarter as many batches',
  plain2: 'a second plain Express process: what the method reads when nothing differs (its bias)',
  rawnet: 'plain Express, plus a raw net.Socket writing a POST to the receiver every 50 ms (no HTTP client)',
  undici:
    'plain Express, plus an undici Pool POST to the receiver every 50 ms (an app that already sends HTTP)',
  undiciaudit: 'the undici variant plus auditLog() at its defaults: row 3 in an app that already sends HTTP',
  undici1000: 'plain Express, plus an undici Pool POST to the receiver every 1,000 ms',
  nonet:
    'auditLog() whose dispatcher has a transport answering 204 at once: its batches make no HTTP request',
};

/** What a run without `--variants` loads: the parts of rows 3 and 4. */
const DEFAULT_VARIANTS = ['close', 'fields', 'import', 'installed', 'audit', 'nonet'];

/** Keeps the values an audit record is made of, 64 rows at a time: what any audit must read. */
function fieldsFloor() {
  const rows = 64;
  const started = new Float64Array(rows);
  const duration = new Float64Array(rows);
  const status = new Float64Array(rows);
  const text = Array.from({ length: 6 }, () => Array.from({ length: rows }, () => undefined));
  let n = 0;
  return (req, res, next) => {
    const at = performance.now();
    res.on('close', () => {
      started[n] = at;
      duration[n] = performance.now() - at;
      status[n] = res.statusCode;
      text[0][n] = req.method;
      text[1][n] = req.originalUrl;
      text[2][n] = req.route?.path;
      text[3][n] = req.socket.remoteAddress;
      text[4][n] = req.headers['user-agent'];
      text[5][n] = req.headers['x-request-id'];
      n += 1;
      if (n === rows) {
        for (const column of text) column.fill(undefined);
        n = 0;
      }
    });
    next();
  };
}

/** Calls `send` every `ms` for as long as the process lives; a failed send is ignored. */
function sendEvery(send, ms) {
  setInterval(() => {
    send().catch(() => {});
  }, ms).unref();
}

/** A POST of `{}` to the receiver through an undici Pool, its answer read. */
async function undiciSender(receiverUrl) {
  const { Pool } = await import('undici');
  const { origin, pathname } = new URL(receiverUrl);
  const pool = new Pool(origin, { connections: 2 });
  return async () => {
    const res = await pool.request({ path: pathname, method: 'POST', body: '{}' });
    await res.body.dump();
  };
}

/** The same POST written as bytes on one net.Socket (answers read and dropped): no HTTP client. */
async function rawSender(receiverUrl) {
  const net = await import('node:net');
  const { hostname, port, pathname } = new URL(receiverUrl);
  const socket = net.connect({ host: hostname, port: Number(port) });
  socket.on('data', () => {});
  socket.on('error', () => {});
  const request = `POST ${pathname} HTTP/1.1\r\nhost: ${hostname}:${port}\r\ncontent-length: 2\r\n\r\n{}`;
  return async () => {
    socket.write(request);
  };
}

async function appProcess({ receiverUrl, kind, root }) {
  const { default: express } = await import('express');
  const app = express();
  let dispatcher;
  if (kind === 'plain2') {
    // Nothing added: the same app as plain, in a process of its own.
  } else if (kind === 'close') {
    app.use((_req, res, next) => {
      res.on('close', () => {});
      next();
    });
  } else if (kind === 'fields') {
    app.use(fieldsFloor());
  } else if (kind === 'rawnet') {
    sendEvery(await rawSender(receiverUrl), 50);
  } else if (kind === 'undici' || kind === 'undici1000' || kind === 'undiciaudit') {
    sendEvery(await undiciSender(receiverUrl), kind === 'undici1000' ? 1_000 : 50);
    if (kind === 'undiciaudit') {
      const pkgs = await expressPackages(root);
      dispatcher = pkgs.core.createDispatcher({ logger: silent });
      app.use(pkgs.express.auditLog({ url: receiverUrl, dispatcher }));
    }
  } else if (kind !== 'plain') {
    const pkgs = await expressPackages(root);
    if (kind === 'installed') {
      dispatcher = pkgs.core.createDispatcher({ logger: silent });
      app.use(pkgs.express.afterward({ dispatcher }));
    } else if (kind === 'batch2000') {
      dispatcher = pkgs.core.createDispatcher({ logger: silent });
      const batch = { maxItems: 2_000, maxBytes: 4 * 1024 * 1024 };
      app.use(pkgs.express.auditLog({ url: receiverUrl, dispatcher, batch }));
    } else if (kind === 'audit' || kind === 'nonet') {
      dispatcher = pkgs.core.createDispatcher({
        logger: silent,
        ...(kind === 'nonet' ? { transport: instantTransport() } : {}),
      });
      app.use(pkgs.express.auditLog({ url: receiverUrl, dispatcher }));
    }
  }
  const { server, counter, url } = await listenOrder(app);
  let gcMs = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMs += entry.duration;
  }).observe({ entryTypes: ['gc'] });
  const busy = () => {
    const stats = dispatcher?.stats();
    return stats === undefined ? 0 : stats.queued + stats.inFlight;
  };
  let mark;
  serve(
    {
      begin: () => {
        mark = { cpu: process.cpuUsage(), served: counter.served, gcMs };
        return null;
      },
      end: async () => {
        // Audit records leave on the batcher's own timer (maxWaitMs, 1 s): every app waits alike.
        await new Promise((r) => setTimeout(r, 1_100));
        const until = performance.now() + 15_000;
        while (busy() > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
        const cpu = process.cpuUsage(mark.cpu);
        const count = counter.served - mark.served;
        return {
          cpu: (cpu.user + cpu.system) / count,
          system: cpu.system / count,
          gc: ((gcMs - mark.gcMs) * 1_000) / count,
          served: count,
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

const quartile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(q * (sorted.length - 1))];
};

/**
 * @param {{ smoke: boolean, log: (line: string) => void, rounds?: number, rate?: number,
 *   windowMs?: number, warmup?: number, variants?: string[], old?: string }} ctx
 */
export async function run({ smoke, log, rounds, rate = 2_000, windowMs, warmup = 1, variants, old }) {
  rounds ??= smoke ? 1 : 30;
  windowMs ??= smoke ? 200 : 2_000;
  const kinds = variants ?? DEFAULT_VARIANTS;
  for (const kind of kinds) {
    if (!(kind in VARIANTS))
      throw new Error(`unknown variant ${kind}: one of ${Object.keys(VARIANTS).join(', ')}`);
  }
  const keys = ['plain', ...kinds, ...(old === undefined ? [] : ['audit (old build)'])];
  const receiver = await startReceiver({ status: 204 });
  const load = await spawnRpc(new URL('./cpu.mjs', import.meta.url), { args: ['--load'] });
  const apps = {};
  try {
    for (const key of keys) {
      const variant =
        key === 'audit (old build)' ? { kind: 'audit', root: old } : { kind: key, root: undefined };
      apps[key] = await spawnRpc(self, {
        args: ['--app', JSON.stringify({ receiverUrl: receiver.url, ...variant })],
      });
    }
    const window = async (order) => {
      await Promise.all(order.map((key) => apps[key].call('begin')));
      const loads = await Promise.all(
        order.map((key) =>
          load.call(
            'run',
            { url: apps[key].ready.url, mode: 'open', rate, durationMs: windowMs, connections: 64 },
            windowMs + 30_000,
          ),
        ),
      );
      const ends = await Promise.all(order.map((key) => apps[key].call('end', undefined, 30_000)));
      const out = {};
      order.forEach((key, i) => {
        if (loads[i].failed > 0 || ends[i].served !== loads[i].ok)
          log(`${key}: ${loads[i].failed} failed, served ${ends[i].served} of ${loads[i].sent}`);
        out[key] = ends[i];
      });
      return out;
    };
    for (let i = 0; i < warmup; i++) await window(keys);
    const samples = Object.fromEntries(keys.map((key) => [key, []]));
    for (let round = 0; round < rounds; round++) {
      const result = await window(round % 2 === 0 ? keys : [...keys].reverse());
      for (const key of keys) samples[key].push(result[key]);
      log(
        `round ${round + 1}: plain ${result.plain.cpu.toFixed(1)} µs; ` +
          keys
            .slice(1)
            .map((key) => `${key} +${(result[key].cpu - result.plain.cpu).toFixed(1)}`)
            .join(', '),
      );
    }
    const plain = samples.plain.map((s) => s.cpu);
    const plainMedian = median(plain);
    const rows = [
      [
        'plain Express',
        `${plainMedian.toFixed(1)} µs`,
        '',
        '',
        `${median(samples.plain.map((s) => s.system)).toFixed(1)} µs`,
        `${median(samples.plain.map((s) => s.gc)).toFixed(2)} µs`,
        'plain Express 5, GET /order answering a small JSON',
      ],
    ];
    for (const key of keys.slice(1)) {
      const added = samples[key].map((s, i) => s.cpu - (plain[i] ?? 0));
      rows.push([
        key,
        `${median(samples[key].map((s) => s.cpu)).toFixed(1)} µs`,
        `${median(added).toFixed(1)} µs (${quartile(added, 0.25).toFixed(1)}..${quartile(added, 0.75).toFixed(1)})`,
        `${((100 * median(added)) / plainMedian).toFixed(1)} %`,
        `${median(samples[key].map((s) => s.system)).toFixed(1)} µs`,
        `${median(samples[key].map((s) => s.gc)).toFixed(2)} µs`,
        key === 'audit (old build)' ? `auditLog() of ${old}` : VARIANTS[key],
      ]);
    }
    return {
      title,
      note:
        `Process CPU time (user + system) of each app process per request; every app under an even ` +
        `${rate} req/s (open loop, cpu.mjs's undici generator) in the same ${windowMs} ms windows, ` +
        `${rounds} rounds, order reversed every other round; "added" is the variant minus plain ` +
        `Express of the same window, median (quartiles). A window ends when the app's notifications ` +
        `and batches were sent and answered (the batcher's own 1 s timer, not forced).`,
      headers: ['app', 'CPU per request', 'added', 'added / plain', 'system CPU', 'GC', 'what it adds'],
      rows,
      goals: [],
    };
  } finally {
    for (const rpc of Object.values(apps)) await rpc.close();
    await load.close();
    await receiver.close();
  }
}

if (process.argv.includes('--app')) {
  await appProcess(JSON.parse(process.argv[process.argv.indexOf('--app') + 1]));
} else if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await run({
    smoke: process.argv.includes('--smoke'),
    log: (line) => console.error(`  ${line}`),
    rounds: arg('rounds') === undefined ? undefined : Number(arg('rounds')),
    rate: Number(arg('rate', 2_000)),
    windowMs: arg('window') === undefined ? undefined : Number(arg('window')),
    warmup: Number(arg('warmup', 1)),
    variants: arg('variants')?.split(','),
    old: arg('old'),
  });
  console.log(renderResult(result));
}
