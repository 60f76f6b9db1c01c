// Issue 15 rows 3 and 4 counted in instructions, not time: on a shared 2-core VM, time per request
// moves by ±3 µs between rounds, as much as what rows 3 and 4 measure. Each app (Express 5,
// GET /order, as split.mjs's) runs under `valgrind --tool=cachegrind --cache-sim=no` with
// `--single-threaded` (the compilers and the GC run on the main thread, so they are counted), served
// by one keep-alive client one request at a time. Per request = (instructions of a run serving
// `--to` requests − those of a run serving `--from`) / (to − from): start-up, tier-up and shut-down
// cancel. A window starting before about 11,000 requests still holds the optimising compiler's
// work on Express itself (plain Express measured 235k instructions per request over 3,000 to
// 11,000, 126k from 11,000 on). Counts still move between runs: what a major GC or a compile
// costs lands in one window or the other (timers and the GC's heuristics follow wall time, which
// valgrind stretches about fifty times). Over 8,000 requests (11,000 to 19,000) plain Express moved
// from 126k to 136k between runs; over 40,000 (the default, 11,000 to 51,000) runs of one app
// mostly agree within 0.5k, with a rare outlier. `--repeat` takes the median.
//
//   node bench/instructions.mjs [--variants plain,empty,reads,hook,channel,installed,audit,auditnet] [--from 11000]
//     [--to 51000] [--repeat 1] [--smoke]
//
// Needs valgrind (Debian: apt-get install valgrind), which CI's machine lacks: a manual bench, like
// split.mjs, not one of bench/run.mjs's modules. About 100 s per run of 51,000 requests on this
// VM; two run at a time. Exports run() as bench/run.mjs's modules do.
import { spawn, spawnSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { arg } from './lib/args.mjs';
import { instantTransport } from './lib/instant-transport.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { listenOrder } from './lib/order-app.mjs';
import { expressPackages } from './lib/packages.mjs';
import { fmt, median, renderResult } from './lib/report.mjs';

export const title =
  'Instructions per request: what each part adds to an Express request (issue 15 rows 3, 4)';

/** What each app adds to plain Express 5 (GET /order answering a small JSON). */
const VARIANTS = {
  plain: 'plain Express 5, GET /order answering a small JSON',
  empty: 'an empty middleware, `(req, res, next) => next()`: what Express charges for any app.use()',
  reads:
    "a middleware reading at 'close' what a record holds (method, URL, route, status, req.ip, user agent, duration), keeping nothing: the floor of any audit middleware",
  hook: "a middleware with a 'close' listener per request (a closure) that reads the status and the duration: the floor of any per-response hook",
  channel:
    "the same hook on diagnostics_channel's http.server.response.finish, the start kept on the request: no listener per request (does not see aborted responses)",
  installed: '`afterward()` installed, nothing parked (row 4)',
  audit: '`auditLog()`, batches to a transport answering 204 at once (row 3, without the network)',
  auditnet:
    '`auditLog()` with the default transport (undici), batches to a receiver process answering 204 (the sink in its own process, as in the issue; under valgrind an upper bound of row 3: bench/README.md, thirteenth pass)',
};

const silent = { warn() {}, error() {} };
const USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';

/** The app under valgrind: serves `count` requests, then closes and exits. */
async function appProcess({ kind, count, sink }) {
  const { default: express } = await import('express');
  const app = express();
  let dispatcher;
  if (kind === 'empty') {
    app.use((_req, _res, next) => next());
  } else if (kind === 'reads') {
    let _read = 0;
    app.use((req, res, next) => {
      const startedAt = performance.now();
      res.on('close', () => {
        _read +=
          req.method.length +
          req.originalUrl.length +
          (req.route?.path?.length ?? 0) +
          res.statusCode +
          (req.ip?.length ?? 0) +
          (req.headers['user-agent']?.length ?? 0) +
          (performance.now() - startedAt);
      });
      next();
    });
  } else if (kind === 'hook') {
    let _read = 0;
    app.use((_req, res, next) => {
      const startedAt = performance.now();
      res.on('close', () => {
        _read += res.statusCode + (res.writableFinished ? 1 : 0) + (performance.now() - startedAt);
      });
      next();
    });
  } else if (kind === 'channel') {
    let _read = 0;
    const kStart = Symbol('startedAt');
    diagnostics.subscribe('http.server.response.finish', ({ request, response }) => {
      const startedAt = request[kStart];
      if (startedAt === undefined) return;
      _read += response.statusCode + (response.writableFinished ? 1 : 0) + (performance.now() - startedAt);
    });
    app.use((req, _res, next) => {
      req[kStart] = performance.now();
      next();
    });
  } else if (kind !== 'plain') {
    const pkgs = await expressPackages();
    if (kind === 'installed') {
      dispatcher = pkgs.core.createDispatcher({ logger: silent });
      app.use(pkgs.express.afterward({ dispatcher }));
    } else if (kind === 'auditnet') {
      dispatcher = pkgs.core.createDispatcher({ logger: silent });
      app.use(pkgs.express.auditLog({ url: sink, dispatcher }));
    } else {
      dispatcher = pkgs.core.createDispatcher({ logger: silent, transport: instantTransport() });
      app.use(pkgs.express.auditLog({ url: 'http://127.0.0.1:9/audit', dispatcher }));
    }
  }
  const { server, counter, url } = await listenOrder(app);
  server.on('request', (_req, res) => {
    if (counter.served < count) return;
    res.on('close', () => {
      setImmediate(async () => {
        server.closeAllConnections();
        server.close();
        await dispatcher?.close({ timeout: 5_000 });
        process.exit(0);
      });
    });
  });
  process.stdout.write(`URL ${url}\n`);
}

/** `count` GET requests, one at a time over one keep-alive connection. */
async function drive(url, count) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < count; i++) {
      await new Promise((resolve, reject) => {
        http
          .get(url, { agent, headers: { 'user-agent': USER_AGENT } }, (res) => {
            if (res.statusCode !== 200) reject(new Error(`GET ${url}: ${res.statusCode}`));
            res.resume();
            res.on('end', resolve);
          })
          .on('error', reject);
      });
    }
  } finally {
    agent.destroy();
  }
}

/** Instructions valgrind counted for one app process of `kind` serving `count` requests. */
function countInstructions(kind, count, sink) {
  const child = spawn(
    'valgrind',
    [
      '--tool=cachegrind',
      '--cache-sim=no',
      '--cachegrind-out-file=/dev/null',
      process.execPath,
      '--single-threaded',
      fileURLToPath(import.meta.url),
      '--app',
      JSON.stringify({ kind, count, sink }),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  // 'close', not 'exit': valgrind's count is the last thing on stderr, read only once it closed.
  const exited = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  const ready = new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      stdout += chunk;
      const url = /^URL (\S+)$/m.exec(stdout)?.[1];
      if (url !== undefined) resolve(url);
    });
    void exited.then((code) =>
      reject(new Error(`the ${kind} app exited (${code}) before listening:\n${stderr}`)),
    );
  });
  return (async () => {
    try {
      await drive(await ready, count);
    } catch (error) {
      // An app still waiting for the rest of its requests would never exit.
      child.kill('SIGKILL');
      throw error;
    }
    const code = await exited;
    const refs = /I\s+refs:\s+([\d,]+)/.exec(stderr)?.[1];
    if (code !== 0 || refs === undefined) throw new Error(`the ${kind} app exited ${code}:\n${stderr}`);
    return Number(refs.replaceAll(',', ''));
  })();
}

/** Runs `jobs` two at a time (two cores); their results in order. */
async function twoAtATime(jobs) {
  const results = [];
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all([worker(), worker()]);
  return results;
}

/**
 * @param {{ smoke: boolean, log: (line: string) => void, variants?: string[], from?: number,
 *   to?: number, repeat?: number }} ctx
 */
export async function run({ smoke, log, variants, from, to, repeat = 1 }) {
  if (spawnSync('valgrind', ['--version']).status !== 0) {
    throw new Error('bench/instructions.mjs needs valgrind on PATH (Debian: apt-get install valgrind)');
  }
  from ??= smoke ? 200 : 11_000;
  to ??= smoke ? 400 : 51_000;
  if (!(Number.isInteger(from) && Number.isInteger(to) && from > 0 && to > from)) {
    throw new Error(`--from and --to must be whole numbers with 0 < from < to, got ${from} and ${to}`);
  }
  const kinds = ['plain', ...(variants ?? Object.keys(VARIANTS)).filter((kind) => kind !== 'plain')];
  for (const kind of kinds) {
    if (!(kind in VARIANTS))
      throw new Error(`unknown variant ${kind}: one of ${Object.keys(VARIANTS).join(', ')}`);
  }
  // auditnet's receiver: a process of its own, so that valgrind counts only the app's side.
  const receiver = await startReceiver();
  const sink = receiver.url;
  const jobs = [];
  for (let round = 0; round < repeat; round++) {
    for (const kind of kinds) {
      for (const count of [from, to]) {
        jobs.push(async () => {
          const refs = await countInstructions(kind, count, sink);
          log(`round ${round + 1}, ${kind}, ${count} requests: ${fmt(refs)} instructions`);
          return { round, kind, count, refs };
        });
      }
    }
  }
  let runs;
  try {
    runs = await twoAtATime(jobs);
    if (kinds.includes('auditnet') && (await receiver.stats()).fullBodies === 0) {
      throw new Error('auditnet: the receiver got no batch');
    }
  } finally {
    await receiver.close();
  }
  const perRequest = Object.fromEntries(kinds.map((kind) => [kind, []]));
  for (let round = 0; round < repeat; round++) {
    for (const kind of kinds) {
      const of = (count) => runs.find((r) => r.round === round && r.kind === kind && r.count === count).refs;
      perRequest[kind].push((of(to) - of(from)) / (to - from));
    }
  }
  const plain = median(perRequest.plain);
  const rows = kinds.map((kind) => {
    const value = median(perRequest[kind]);
    const each = perRequest[kind].map((v) => `${(v / 1000).toFixed(1)}k`).join(' / ');
    return [
      kind,
      `${(value / 1000).toFixed(1)}k${repeat > 1 ? ` (${each})` : ''}`,
      kind === 'plain' ? '' : `${value - plain >= 0 ? '+' : ''}${((value - plain) / 1000).toFixed(1)}k`,
      kind === 'plain' ? '' : `${((100 * (value - plain)) / plain).toFixed(1)} %`,
      VARIANTS[kind],
    ];
  });
  return {
    title,
    note:
      `Instructions the app process ran per request at steady state (valgrind cachegrind, Node ` +
      `${process.versions.node} --single-threaded): (runs serving ${to} − runs serving ${from}) / ` +
      `${to - from}, ${repeat} run${repeat > 1 ? 's' : ''} each, median; one keep-alive client, one ` +
      `request at a time.${smoke ? ' Smoke: the window still holds start-up compilation.' : ''}`,
    headers: ['app', 'instructions per request', 'added', 'added / plain', 'what it adds'],
    rows,
    goals: [],
  };
}

if (process.argv.includes('--app')) {
  await appProcess(JSON.parse(process.argv[process.argv.indexOf('--app') + 1]));
} else if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const number = (name) => (arg(name) === undefined ? undefined : Number(arg(name)));
  const result = await run({
    smoke: process.argv.includes('--smoke'),
    log: (line) => console.error(`  ${line}`),
    variants: arg('variants')?.split(','),
    from: number('from'),
    to: number('to'),
    repeat: number('repeat') ?? 1,
  });
  console.log(renderResult(result));
}
