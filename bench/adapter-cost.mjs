// The adapter path's CPU per request, in one process (steadier than cpu.mjs's cross-process rows
// while the machine is shared): real Express 5 and Koa 3 apps on real sockets, driven by a tiny
// keep-alive client in the same process, every variant measured in the same run, rounds
// interleaved (A B C ..., then ... C B A), CPU time from `process.cpuUsage()`, median and spread.
//
//   plain      answers { ok: true }, the adapter not installed
//   installed  `afterward()` installed, the route parks nothing              -> issue 15 row 4
//   afterward  `res.fireAndForget(receiver, { json })` then answers           -> issue 15 row 1
//   naive      `res.on('finish', () => pool.request(...).catch(() => {}))`    -> its peer
//   send       `res.on('finish', () => dispatcher.send(...))`: the dispatcher without the adapter,
//              so afterward - send is what the adapter path (middleware, park, release) adds
//
// The sends go to a receiver in its own process. "plain" and "naive" get Express's own `req.route`
// (the adapter patches the shared prototype with an accessor), as they would without the adapter.
// Run: `node bench/run.mjs --only adapter-cost [--smoke]` or `node bench/adapter-cost.mjs [--smoke]`.
// A/B against another build: `AFTERWARD_ROOT=/path/to/checkout node bench/adapter-cost.mjs`
// (a directory with packages/{core,express,koa}/dist and their node_modules), or, paired in the
// same process and rounds, `node bench/adapter-cost.mjs --old /path/to/checkout`: that build's
// `installed`, `afterward` and `send` run next to this one's, each on its own copy of Express and
// Koa (the old build's, so the two adapters never patch the same prototypes). `--frameworks express`
// runs one framework (as an app does: the other's code is not warm in the process), `--parts
// sockets,direct,path` some sections, `--rounds N` N socket rounds (16) and the others in proportion.
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { core, express as expressAdapter, koa as koaAdapter } from './lib/packages.mjs';
import { directGet } from './lib/exchange.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { goal, median, renderResult } from './lib/report.mjs';
import { instantTransport } from './lib/instant-transport.mjs';

export const title = 'Adapter path: CPU per request in one process (issue 15 rows 1 and 4)';

const silent = { warn() {}, error() {} };
const load = (name) => ({ core, express: expressAdapter, koa: koaAdapter })[name]();

const VARIANTS = ['plain', 'installed', 'afterward', 'naive', 'send'];
const FRAMEWORKS = ['express', 'koa'];
/** The variants an old build (`--old`) adds, as `old-<variant>`: those that run afterward's code. */
const OLD_VARIANTS = ['installed', 'afterward', 'send'];

/**
 * The packages of one build and the Express and Koa they patch: this checkout's (no `root`), or
 * another checkout's with the copies of Express and Koa its own adapters import.
 */
async function loadBuild(root) {
  if (root === undefined) {
    const [coreModule, expressModule, koaModule] = await Promise.all([
      load('core'),
      load('express'),
      load('koa'),
    ]);
    return {
      core: coreModule,
      expressAdapter: expressModule,
      koaAdapter: koaModule,
      express: (await import('express')).default,
      Koa: (await import('koa')).default,
    };
  }
  const base = pathToFileURL(`${path.resolve(root)}/`);
  const at = (file) => new URL(file, base).href;
  const requireIn = (name) => createRequire(new URL(`packages/${name}/package.json`, base));
  return {
    core: await import(at('packages/core/dist/index.js')),
    expressAdapter: await import(at('packages/express/dist/index.js')),
    koaAdapter: await import(at('packages/koa/dist/index.js')),
    express: requireIn('express')('express'),
    Koa: requireIn('koa')('koa'),
  };
}

/** `[prefix, build, variants]` for this build, and for the old one when there is one. */
async function buildsFor(old, variants, oldVariants = variants) {
  const builds = [['', await loadBuild(undefined), variants]];
  if (old !== undefined) builds.push(['old-', await loadBuild(old), oldVariants]);
  return builds;
}

/** A keep-alive client of `connections` sockets, one request in flight on each. */
function client(port, connections) {
  const request = Buffer.from('GET /order HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  const sockets = [];
  let want = 0;
  let sent = 0;
  let done = 0;
  let finished;
  const next = (socket) => {
    if (sent >= want) return;
    sent++;
    socket.write(request);
  };
  const open = () =>
    new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
      socket.once('error', reject);
      socket.setNoDelay(true);
      let buffered = '';
      socket.on('data', (chunk) => {
        buffered += chunk.toString('latin1');
        // Every response here has a Content-Length and a tiny body.
        for (;;) {
          const head = buffered.indexOf('\r\n\r\n');
          if (head < 0) return;
          const match = /content-length: (\d+)/i.exec(buffered.slice(0, head));
          const end = head + 4 + Number(match?.[1] ?? 0);
          if (buffered.length < end) return;
          buffered = buffered.slice(end);
          done++;
          if (done === want) finished();
          else next(socket);
        }
      });
    });
  return {
    async start() {
      for (let i = 0; i < connections; i++) sockets.push(await open());
    },
    /** Sends `count` requests, `connections` at a time; resolves when all were answered. */
    run(count) {
      want += count;
      const promise = new Promise((resolve) => {
        finished = resolve;
      });
      for (const socket of sockets) next(socket);
      return promise;
    },
    close() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** The apps of every variant (none when `enabled` is false), each on its own server and dispatcher. */
async function startApps(receiverUrl, old, enabled, frameworks) {
  const builds = await buildsFor(old, VARIANTS, OLD_VARIANTS);
  const target = new URL(receiverUrl);
  const pool = new Pool(target.origin);
  let pending = 0;
  const naive = (payload) => {
    pending++;
    pool
      .request({
        path: target.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(payload),
      })
      .then(({ body }) => body.dump())
      .catch(() => {})
      .finally(() => pending--);
  };
  const payloadOf = (method, url) => ({ type: 'request.served', method, url, at: Date.now() });
  const dispatchers = [];
  const apps = {};

  const expressApp = ({ expressAdapter, express }, variant, dispatcher) => {
    const app = express();
    if (variant === 'plain' || variant === 'naive') {
      // Express's own `req.route` (a data property), not the adapter's accessor.
      Object.defineProperty(app.request, 'route', {
        value: undefined,
        writable: true,
        configurable: true,
      });
    }
    if (variant === 'installed' || variant === 'afterward') app.use(expressAdapter.afterward({ dispatcher }));
    app.get('/order', (req, res) => {
      if (variant === 'afterward')
        res.fireAndForget(receiverUrl, { json: payloadOf(req.method, req.originalUrl) });
      else if (variant === 'naive') {
        const payload = payloadOf(req.method, req.originalUrl);
        res.on('finish', () => naive(payload));
      } else if (variant === 'send') {
        const payload = payloadOf(req.method, req.originalUrl);
        res.on('finish', () => dispatcher.send(receiverUrl, { json: payload }));
      }
      res.json({ ok: true });
    });
    return app;
  };
  const koaApp = ({ koaAdapter, Koa }, variant, dispatcher) => {
    const app = new Koa();
    if (variant === 'installed' || variant === 'afterward') app.use(koaAdapter.afterward({ dispatcher }));
    app.use(async (ctx) => {
      if (variant === 'afterward')
        ctx.fireAndForget(receiverUrl, { json: payloadOf(ctx.method, ctx.originalUrl) });
      else if (variant === 'naive') {
        const payload = payloadOf(ctx.method, ctx.originalUrl);
        ctx.res.on('finish', () => naive(payload));
      } else if (variant === 'send') {
        const payload = payloadOf(ctx.method, ctx.originalUrl);
        ctx.res.on('finish', () => dispatcher.send(receiverUrl, { json: payload }));
      }
      ctx.body = { ok: true };
    });
    return app.callback();
  };

  for (const [prefix, build, variants] of builds) {
    for (const framework of frameworks) {
      for (const variant of enabled ? variants : []) {
        const dispatcher = build.core.createDispatcher({ logger: silent });
        dispatchers.push(dispatcher);
        const handler =
          framework === 'express'
            ? expressApp(build, variant, dispatcher)
            : koaApp(build, variant, dispatcher);
        const server = createServer(handler);
        server.keepAliveTimeout = 60_000;
        await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
        apps[`${framework}:${prefix}${variant}`] = { server, dispatcher };
      }
    }
  }
  const busy = () => {
    let n = pending;
    for (const d of dispatchers) {
      const s = d.stats();
      n += (s.queued ?? 0) + (s.inFlight ?? 0) + (s.parked ?? 0);
    }
    return n;
  };
  return {
    apps,
    busy,
    async close() {
      for (const { server } of Object.values(apps)) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
      for (const d of dispatchers) await d.close({ timeout: 1_000 });
      await pool.destroy();
    },
  };
}

/**
 * Row 4 without sockets: the app's handler called directly on a fresh IncomingMessage and
 * ServerResponse (on an unconnected socket: what is written stays buffered), `count` times,
 * plain vs installed apps in interleaved batches. Sub-microsecond differences drown in socket
 * I/O; here they do not. Returns µs per request for each key.
 */
export async function handlerOnly({ rounds, perBatch, old, frameworks = FRAMEWORKS }) {
  const handlers = {};
  const dispatchers = [];
  // `empty`: an empty middleware in the adapter's place, the floor any middleware pays.
  for (const [prefix, build, variants] of await buildsFor(
    old,
    ['plain', 'empty', 'installed'],
    ['installed'],
  )) {
    const { expressAdapter, koaAdapter, express, Koa } = build;
    const dispatcher = build.core.createDispatcher({ logger: silent });
    dispatchers.push(dispatcher);
    const empty = (_req, _res, next) => next();
    for (const variant of variants) {
      const app = express();
      if (variant === 'installed') app.use(expressAdapter.afterward({ dispatcher }));
      else {
        Object.defineProperty(app.request, 'route', { value: undefined, writable: true, configurable: true });
        if (variant === 'empty') app.use(empty);
      }
      app.get('/order', (req, res) => {
        res.json({ ok: true });
      });
      handlers[`express:${prefix}${variant}`] = app;
      const koa = new Koa();
      if (variant === 'installed') koa.use(koaAdapter.afterward({ dispatcher }));
      if (variant === 'empty') koa.use((_ctx, next) => next());
      koa.use(async (ctx) => {
        ctx.body = { ok: true };
      });
      handlers[`koa:${prefix}${variant}`] = koa.callback();
    }
  }
  const socket = new net.Socket();
  const batch = async (handler, count) => {
    const cpu = process.cpuUsage();
    for (let i = 0; i < count; i++) {
      const { req, res } = directGet(socket);
      const done = handler(req, res);
      // Koa's callback returns a promise: let every 64th settle the ones before it.
      if (done !== undefined && i % 64 === 63) await done;
    }
    await new Promise((resolve) => setImmediate(resolve));
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / count;
  };
  const keys = Object.keys(handlers).filter((key) => frameworks.includes(key.split(':')[0]));
  for (const key of keys) await batch(handlers[key], perBatch);
  const samples = Object.fromEntries(keys.map((key) => [key, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? keys : [...keys].reverse();
    for (const key of order) samples[key].push(await batch(handlers[key], perBatch));
  }
  for (const dispatcher of dispatchers) await dispatcher.close({ timeout: 1_000 });
  return samples;
}

/**
 * The adapter path alone, without sockets or the network: the same handler called directly, then
 * 'finish' and 'close' emitted by hand; the dispatcher's transport answers at once. `afterward`
 * (res.fireAndForget) minus `send` (dispatcher.send from a 'finish' listener, no adapter) is
 * what the middleware, parking and release add per notification.
 */
export async function adapterPath({ rounds, perBatch, old, frameworks = FRAMEWORKS }) {
  const transport = instantTransport();
  const url = 'http://127.0.0.1:9/hook';
  const payloadOf = (method, path) => ({ type: 'request.served', method, url: path, at: Date.now() });
  const handlers = {};
  const dispatchers = [];
  for (const [prefix, build, variants] of await buildsFor(old, ['afterward', 'send'])) {
    const { expressAdapter, koaAdapter, express, Koa } = build;
    const dispatcher = build.core.createDispatcher({ transport, logger: silent });
    dispatchers.push(dispatcher);
    for (const variant of variants) {
      const app = express();
      if (variant === 'afterward') app.use(expressAdapter.afterward({ dispatcher }));
      app.get('/order', (req, res) => {
        if (variant === 'afterward') res.fireAndForget(url, { json: payloadOf(req.method, req.originalUrl) });
        else {
          const payload = payloadOf(req.method, req.originalUrl);
          res.on('finish', () => dispatcher.send(url, { json: payload }));
        }
        res.json({ ok: true });
      });
      handlers[`express:${prefix}${variant}`] = app;
      const koa = new Koa();
      if (variant === 'afterward') koa.use(koaAdapter.afterward({ dispatcher }));
      koa.use(async (ctx) => {
        if (variant === 'afterward') ctx.fireAndForget(url, { json: payloadOf(ctx.method, ctx.originalUrl) });
        else {
          const payload = payloadOf(ctx.method, ctx.originalUrl);
          ctx.res.on('finish', () => dispatcher.send(url, { json: payload }));
        }
        ctx.body = { ok: true };
      });
      handlers[`koa:${prefix}${variant}`] = koa.callback();
    }
  }
  const drain = () => Promise.all(dispatchers.map((dispatcher) => dispatcher.drain()));
  const socket = new net.Socket();
  const batch = async (handler, count) => {
    await drain();
    const cpu = process.cpuUsage();
    for (let i = 0; i < count; i++) {
      const { req, res } = directGet(socket);
      const done = handler(req, res);
      if (done !== undefined) await done;
      res.emit('finish');
      res.emit('close');
      if (i % 256 === 255) await drain();
    }
    await drain();
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / count;
  };
  const keys = Object.keys(handlers).filter((key) => frameworks.includes(key.split(':')[0]));
  for (const key of keys) await batch(handlers[key], perBatch);
  const samples = Object.fromEntries(keys.map((key) => [key, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? keys : [...keys].reverse();
    for (const key of order) samples[key].push(await batch(handlers[key], perBatch));
  }
  for (const dispatcher of dispatchers) await dispatcher.close({ timeout: 1_000 });
  return samples;
}

const spread = (values) =>
  values.length === 0
    ? 'n/a'
    : `${median(values).toFixed(2)} (${Math.min(...values).toFixed(2)}..${Math.max(...values).toFixed(2)})`;

/**
 * @param {{ smoke: boolean, log: (line: string) => void, old?: string, parts?: string[],
 *   frameworks?: string[], rounds?: number }} ctx
 * `old`: another checkout, paired in the same rounds; `parts`: some of 'sockets', 'direct', 'path';
 * `frameworks`: 'express' and/or 'koa' (one alone: as an app runs, without the other's code warm
 * in the same process); `rounds`: socket rounds (default 16), the direct and path rounds in proportion.
 */
export async function run({
  smoke,
  log,
  old,
  parts = ['sockets', 'direct', 'path'],
  frameworks = FRAMEWORKS,
  rounds: socketRounds = 16,
}) {
  const rounds = smoke ? 2 : socketRounds;
  const scale = rounds / 16;
  const perWindow = smoke ? 300 : 2_000;
  const warmup = smoke ? 200 : 3_000;
  const connections = 8;
  const receiver = await startReceiver({ status: 204 });
  let world;
  const clients = {};
  const has = (part) => parts.includes(part);
  try {
    world = await startApps(receiver.url, old, has('sockets'), frameworks);
    for (const [key, { server }] of Object.entries(world.apps)) {
      clients[key] = client(server.address().port, connections);
      await clients[key].start();
    }
    const settle = async () => {
      const until = performance.now() + 5_000;
      while (world.busy() > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 2));
    };
    const window = async (key, count) => {
      await settle();
      const cpu = process.cpuUsage();
      await clients[key].run(count);
      await settle();
      const used = process.cpuUsage(cpu);
      return (used.user + used.system) / count;
    };
    const keys = Object.keys(world.apps);
    for (const key of keys) await window(key, warmup);
    // A part left out gets no rounds (its rows read n/a).
    const samples = Object.fromEntries(keys.map((key) => [key, []]));
    for (let round = 0; round < (has('sockets') ? rounds : 0); round++) {
      const order = round % 2 === 0 ? keys : [...keys].reverse();
      for (const key of order) samples[key].push(await window(key, perWindow));
      if (round % 4 === 3 || smoke)
        log(`round ${round + 1}: ${keys.map((k) => `${k} ${samples[k].at(-1).toFixed(1)}`).join(', ')}`);
    }

    const section = async (part, measure, baseRounds, perBatch) =>
      has(part)
        ? measure({
            rounds: smoke ? 2 : Math.round(baseRounds * scale),
            perBatch: smoke ? perBatch / 10 : perBatch,
            old,
            frameworks,
          })
        : {};
    const direct = await section('direct', handlerOnly, 40, 5_000);
    const path = await section('path', adapterPath, 30, 3_000);
    const rows = [];
    const goals = [];
    for (const framework of frameworks) {
      const s = (v) => samples[`${framework}:${v}`] ?? [];
      const paired = (a, b, f) => s(a).map((x, i) => f(x, s(b)[i]));
      const addedOurs = paired('afterward', 'plain', (a, p) => a - p);
      const addedNaive = paired('naive', 'plain', (n, p) => n - p);
      const addedSend = paired('send', 'plain', (n, p) => n - p);
      const ratios = addedOurs.map((a, i) => a / addedNaive[i]);
      const adapterOnly = paired('afterward', 'send', (a, b) => a - b);
      const installed = paired('installed', 'plain', (a, p) => a - p);
      const name = framework === 'express' ? 'Express 5' : 'Koa 3';
      rows.push(
        [`${name}: plain app, CPU per request`, `${spread(s('plain'))} µs`, ''],
        [
          `${name}: added per fireAndForget / per naive pool.request on finish`,
          `${spread(addedOurs)} vs ${spread(addedNaive)} µs`,
          `${spread(ratios)}x`,
        ],
        [`${name}: added per dispatcher.send on finish (no adapter)`, `${spread(addedSend)} µs`, ''],
        [`${name}: the adapter path alone (afterward - send)`, `${spread(adapterOnly)} µs`, ''],
        [`${name}: installed, nothing parked - not installed`, `${spread(installed)} µs`, ''],
      );
      if (old !== undefined && s('old-afterward').length > 0) {
        const addedOld = paired('old-afterward', 'plain', (a, p) => a - p);
        rows.push(
          [
            `${name}: old build, added per fireAndForget / per naive`,
            `${spread(addedOld)} µs`,
            `${spread(addedOld.map((a, i) => a / addedNaive[i]))}x`,
          ],
          [
            `${name}: added per fireAndForget, this build / old build`,
            '',
            `${spread(addedOurs.map((a, i) => a / addedOld[i]))}x`,
          ],
          [
            `${name}: added per dispatcher.send, this build - old build`,
            `${spread(paired('send', 'old-send', (a, b) => a - b))} µs`,
            '',
          ],
          [
            `${name}: installed, nothing parked, this build - old build`,
            `${spread(paired('installed', 'old-installed', (a, b) => a - b))} µs`,
            '',
          ],
        );
      }
      const a = (v) => path[`${framework}:${v}`] ?? [];
      const pathAdded = (prefix) => a(`${prefix}afterward`).map((x, i) => x - a(`${prefix}send`)[i]);
      rows.push([
        `${name}: handler called directly, transport answers at once: fireAndForget - dispatcher.send on finish`,
        `${spread(pathAdded(''))} µs (send ${spread(a('send'))} µs)`,
        '',
      ]);
      if (old !== undefined && a('old-afterward').length > 0) {
        rows.push(
          [
            `${name}: the same, old build`,
            `${spread(pathAdded('old-'))} µs (send ${spread(a('old-send'))} µs)`,
            '',
          ],
          [
            `${name}: handler called directly, fireAndForget then release, this build - old build`,
            `${spread(a('afterward').map((x, i) => x - a('old-afterward')[i]))} µs`,
            '',
          ],
        );
      }
      const d = (v) => direct[`${framework}:${v}`] ?? [];
      const directAdded = d('installed').map((x, i) => x - d('plain')[i]);
      rows.push(
        [
          `${name}: handler called directly (no socket): installed, nothing parked - not installed`,
          `${spread(directAdded)} µs (plain ${spread(d('plain'))} µs)`,
          '',
        ],
        [
          `${name}: the same, an empty middleware in its place - not installed`,
          `${spread(d('empty').map((x, i) => x - d('plain')[i]))} µs`,
          '',
        ],
      );
      if (old !== undefined && d('old-installed').length > 0) {
        rows.push([
          `${name}: the same, old build installed - not installed`,
          `${spread(d('old-installed').map((x, i) => x - d('plain')[i]))} µs`,
          '',
        ]);
      }
      goals.push(
        goal(`${name}: added CPU, afterward / naive (in process)`, median(ratios), '<=', 1.0, {
          smoke,
          unit: 'x',
        }),
        goal(`${name}: installed, nothing parked (handler called directly)`, median(directAdded), '<=', 0.5, {
          smoke,
          unit: 'µs',
        }),
      );
    }
    return {
      title,
      note:
        `One process, ${rounds} interleaved rounds of ${perWindow} requests per variant (${connections} keep-alive ` +
        'connections, one request in flight on each), CPU time of the whole process (app, client and the ' +
        'sending side) per request, median (min..max) over rounds; differences are paired by round.',
      headers: ['measured', 'CPU per request', 'ratio'],
      rows,
      goals,
    };
  } finally {
    for (const c of Object.values(clients)) c.close();
    await world?.close();
    await receiver.close();
  }
}

const main = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (main) {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false },
      old: { type: 'string' },
      parts: { type: 'string' },
      frameworks: { type: 'string' },
      rounds: { type: 'string' },
    },
  });
  const result = await run({
    smoke: values.smoke,
    old: values.old,
    parts: values.parts?.split(','),
    frameworks: values.frameworks?.split(','),
    rounds: values.rounds === undefined ? undefined : Number(values.rounds),
    log: (line) => console.log(line),
  });
  console.log(renderResult(result));
}
