// An Express or Koa app in its own process, in one of the variants the overhead bench compares:
//   plain      answers { ok: true }
//   afterward  res.fireAndForget / ctx.fireAndForget(receiver, { json }) then answers
//   naive      res.on('finish', () => pool.request(...).catch(() => {})) then answers
//   inline     await pool.request(...) before answering
import { createServer } from 'node:http';
import { Pool } from 'undici';
import { core, express as expressAdapter, koa as koaAdapter } from './packages.mjs';
import { serve } from './rpc.mjs';

const { framework, variant, receiverUrl } = JSON.parse(process.argv[2]);
const target = new URL(receiverUrl);
const silent = { warn() {}, error() {} };
const counts = { ok: 0, failed: 0 };
const pool = new Pool(target.origin);
const payloadOf = (method, url) => ({ type: 'request.served', method, url, at: Date.now() });
const post = (payload) =>
  pool
    .request({
      path: target.pathname,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(payload),
    })
    .then(async ({ statusCode, body }) => {
      await body.dump();
      if (statusCode < 300) counts.ok++;
      else counts.failed++;
    });
const detached = (payload) =>
  void post(payload).catch(() => {
    counts.failed++;
  });

let dispatcher;
if (variant === 'afterward') {
  const { createDispatcher } = await core();
  dispatcher = createDispatcher({ logger: silent });
}

let handler;
if (framework === 'express') {
  const { default: express } = await import('express');
  const app = express();
  if (variant === 'afterward') app.use((await expressAdapter()).afterward({ dispatcher }));
  app.get('/order', async (req, res) => {
    const payload = payloadOf(req.method, req.originalUrl);
    if (variant === 'afterward') res.fireAndForget(receiverUrl, { json: payload });
    else if (variant === 'naive') res.on('finish', () => detached(payload));
    else if (variant === 'inline') await post(payload).catch(() => counts.failed++);
    res.json({ ok: true });
  });
  handler = app;
} else {
  const { default: Koa } = await import('koa');
  const app = new Koa();
  if (variant === 'afterward') app.use((await koaAdapter()).afterward({ dispatcher }));
  app.use(async (ctx) => {
    const payload = payloadOf(ctx.method, ctx.originalUrl);
    if (variant === 'afterward') ctx.fireAndForget(receiverUrl, { json: payload });
    else if (variant === 'naive') ctx.res.on('finish', () => detached(payload));
    else if (variant === 'inline') await post(payload).catch(() => counts.failed++);
    ctx.body = { ok: true };
  });
  handler = app.callback();
}

const server = createServer(handler);
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  serve(
    {
      stats: () => {
        if (dispatcher === undefined) return { ...counts };
        const s = dispatcher.stats();
        return { ok: s.delivered, failed: s.failed, dropped: s.dropped, queued: s.queued + s.inFlight };
      },
      drain: async (timeout) => (dispatcher ? dispatcher.drain({ timeout }) : null),
    },
    {
      ready: { url: `http://127.0.0.1:${server.address().port}/order` },
      onExit: async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        await dispatcher?.close({ timeout: 1_000 });
        await pool.destroy();
      },
    },
  );
});
