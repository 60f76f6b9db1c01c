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
// (a directory with packages/{core,express,koa}/dist and their node_modules).
import { createServer } from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Pool } from 'undici';
import { core, express as expressAdapter, koa as koaAdapter } from './lib/packages.mjs';
import { startReceiver } from './lib/receiver.mjs';
import { goal, median, renderResult } from './lib/report.mjs';

export const title = 'Adapter path: CPU per request in one process (issue 15 rows 1 and 4)';

const silent = { warn() {}, error() {} };
const load = (name) => ({ core, express: expressAdapter, koa: koaAdapter })[name]();

const VARIANTS = ['plain', 'installed', 'afterward', 'naive', 'send'];

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

async function startApps(receiverUrl) {
  const [{ createDispatcher }, expressAdapter, koaAdapter] = await Promise.all([
    load('core'),
    load('express'),
    load('koa'),
  ]);
  const { default: express } = await import('express');
  const { default: Koa } = await import('koa');
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

  for (const framework of ['express', 'koa']) {
    for (const variant of VARIANTS) {
      const dispatcher = createDispatcher({ logger: silent });
      dispatchers.push(dispatcher);
      let handler;
      if (framework === 'express') {
        const app = express();
        if (variant === 'plain' || variant === 'naive') {
          // Express's own `req.route` (a data property), not the adapter's accessor.
          Object.defineProperty(app.request, 'route', {
            value: undefined,
            writable: true,
            configurable: true,
          });
        }
        if (variant === 'installed' || variant === 'afterward')
          app.use(expressAdapter.afterward({ dispatcher }));
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
        handler = app;
      } else {
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
        handler = app.callback();
      }
      const server = createServer(handler);
      server.keepAliveTimeout = 60_000;
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      apps[`${framework}:${variant}`] = { server, dispatcher };
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
export async function handlerOnly({ rounds, perBatch }) {
  const { IncomingMessage, ServerResponse } = await import('node:http');
  const [{ createDispatcher }, expressAdapter, koaAdapter] = await Promise.all([
    load('core'),
    load('express'),
    load('koa'),
  ]);
  const { default: express } = await import('express');
  const { default: Koa } = await import('koa');
  const dispatcher = createDispatcher({ logger: silent });
  const handlers = {};
  for (const variant of ['plain', 'installed']) {
    const app = express();
    if (variant === 'plain')
      Object.defineProperty(app.request, 'route', { value: undefined, writable: true, configurable: true });
    else app.use(expressAdapter.afterward({ dispatcher }));
    app.get('/order', (req, res) => {
      res.json({ ok: true });
    });
    handlers[`express:${variant}`] = app;
    const koa = new Koa();
    if (variant === 'installed') koa.use(koaAdapter.afterward({ dispatcher }));
    koa.use(async (ctx) => {
      ctx.body = { ok: true };
    });
    handlers[`koa:${variant}`] = koa.callback();
  }
  const socket = new net.Socket();
  const batch = async (handler, count) => {
    const cpu = process.cpuUsage();
    for (let i = 0; i < count; i++) {
      const req = new IncomingMessage(socket);
      req.method = 'GET';
      req.url = '/order';
      req.headers = { host: '127.0.0.1' };
      req.complete = true;
      const res = new ServerResponse(req);
      const done = handler(req, res);
      // Koa's callback returns a promise: let every 64th settle the ones before it.
      if (done !== undefined && i % 64 === 63) await done;
    }
    await new Promise((resolve) => setImmediate(resolve));
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / count;
  };
  const keys = Object.keys(handlers);
  for (const key of keys) await batch(handlers[key], perBatch);
  const samples = Object.fromEntries(keys.map((key) => [key, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? keys : [...keys].reverse();
    for (const key of order) samples[key].push(await batch(handlers[key], perBatch));
  }
  await dispatcher.close({ timeout: 1_000 });
  return samples;
}

/**
 * The adapter path alone, without sockets or the network: the same handler called directly, then
 * 'finish' and 'close' emitted by hand; the dispatcher's transport answers at once. `afterward`
 * (res.fireAndForget) minus `send` (dispatcher.send from a 'finish' listener, no adapter) is
 * what the middleware, parking and release add per notification.
 */
export async function adapterPath({ rounds, perBatch }) {
  const { IncomingMessage, ServerResponse } = await import('node:http');
  const [{ createDispatcher }, expressAdapter, koaAdapter] = await Promise.all([
    load('core'),
    load('express'),
    load('koa'),
  ]);
  const { default: express } = await import('express');
  const { default: Koa } = await import('koa');
  const transport = {
    send: async () => ({
      kind: 'response',
      response: { status: 204, statusText: 'No Content', headers: {} },
    }),
    close: async () => {},
  };
  const dispatcher = createDispatcher({ transport, logger: silent });
  const url = 'http://127.0.0.1:9/hook';
  const payloadOf = (method, path) => ({ type: 'request.served', method, url: path, at: Date.now() });
  const handlers = {};
  for (const variant of ['afterward', 'send']) {
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
    handlers[`express:${variant}`] = app;
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
    handlers[`koa:${variant}`] = koa.callback();
  }
  const socket = new net.Socket();
  const batch = async (handler, count) => {
    await dispatcher.drain();
    const cpu = process.cpuUsage();
    for (let i = 0; i < count; i++) {
      const req = new IncomingMessage(socket);
      req.method = 'GET';
      req.url = '/order';
      req.headers = { host: '127.0.0.1' };
      req.complete = true;
      const res = new ServerResponse(req);
      const done = handler(req, res);
      if (done !== undefined) await done;
      res.emit('finish');
      res.emit('close');
      if (i % 256 === 255) await dispatcher.drain();
    }
    await dispatcher.drain();
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / count;
  };
  const keys = Object.keys(handlers);
  for (const key of keys) await batch(handlers[key], perBatch);
  const samples = Object.fromEntries(keys.map((key) => [key, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? keys : [...keys].reverse();
    for (const key of order) samples[key].push(await batch(handlers[key], perBatch));
  }
  await dispatcher.close({ timeout: 1_000 });
  return samples;
}

const spread = (values) =>
  `${median(values).toFixed(2)} (${Math.min(...values).toFixed(2)}..${Math.max(...values).toFixed(2)})`;

/** @param {{ smoke: boolean, log: (line: string) => void }} ctx */
export async function run({ smoke, log }) {
  const rounds = smoke ? 2 : 16;
  const perWindow = smoke ? 300 : 2_000;
  const warmup = smoke ? 200 : 3_000;
  const connections = 8;
  const receiver = await startReceiver({ status: 204 });
  let world;
  const clients = {};
  try {
    world = await startApps(receiver.url);
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
    const samples = Object.fromEntries(keys.map((key) => [key, []]));
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? keys : [...keys].reverse();
      for (const key of order) samples[key].push(await window(key, perWindow));
      if (round % 4 === 3 || smoke)
        log(`round ${round + 1}: ${keys.map((k) => `${k} ${samples[k].at(-1).toFixed(1)}`).join(', ')}`);
    }

    const direct = await handlerOnly({ rounds: smoke ? 2 : 40, perBatch: smoke ? 500 : 5_000 });
    const path = await adapterPath({ rounds: smoke ? 2 : 30, perBatch: smoke ? 300 : 3_000 });
    const rows = [];
    const goals = [];
    for (const framework of ['express', 'koa']) {
      const s = (v) => samples[`${framework}:${v}`];
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
      const a = (v) => path[`${framework}:${v}`];
      rows.push([
        `${name}: handler called directly, transport answers at once: fireAndForget - dispatcher.send on finish`,
        `${spread(a('afterward').map((x, i) => x - a('send')[i]))} µs (send ${spread(a('send'))} µs)`,
        '',
      ]);
      const d = (v) => direct[`${framework}:${v}`];
      const directAdded = d('installed').map((x, i) => x - d('plain')[i]);
      rows.push([
        `${name}: handler called directly (no socket): installed, nothing parked - not installed`,
        `${spread(directAdded)} µs (plain ${spread(d('plain'))} µs)`,
        '',
      ]);
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
  const result = await run({ smoke: process.argv.includes('--smoke'), log: (line) => console.log(line) });
  console.log(renderResult(result));
}
