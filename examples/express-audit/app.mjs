/**
 * An Express app that records an audit event for every request, once the response has finished:
 * who did what, the final status and how long it took. The client never waits for the audit sink.
 */
import express from 'express';
import { afterward } from '@afterward/express';

/** @typedef {import('@afterward/express').ExpressResponseInfo} ExpressResponseInfo */
/** @typedef {import('@afterward/express').Dispatcher} Dispatcher */

/**
 * @param {object} options
 * @param {string} options.auditUrl where audit events are POSTed
 * @param {Dispatcher} [options.dispatcher] defaults to one the middleware creates
 */
export function createApp({ auditUrl, dispatcher }) {
  const middleware = afterward(dispatcher ? { dispatcher } : {});
  const app = express();
  app.use(express.json());
  app.use(middleware);

  /** @type {Map<string, { id: string, item: string }>} */
  const orders = new Map([['42', { id: '42', item: 'teapot' }]]);
  /** Requests per route, counted by an after-response hook rather than in the handlers. */
  const hits = new Map();

  // Registered for every request, before the routes: the payload is computed after the response
  // finished, so it carries the final status, the duration, and the route Express matched.
  app.use((req, res, next) => {
    res.fireAndForget(auditUrl, {
      json: (/** @type {ExpressResponseInfo} */ info) => ({
        type: 'http.request',
        actor: req.get('x-user') ?? 'anonymous',
        method: info.method,
        url: info.url,
        route: info.route ?? null,
        status: info.statusCode,
        outcome: info.outcome,
        durationMs: Math.round(info.durationMs),
      }),
    });
    res.after((info) => {
      const key = `${info.method} ${info.route ?? '(no route)'}`;
      hits.set(key, (hits.get(key) ?? 0) + 1);
    });
    next();
  });

  app.get('/orders/:id', (req, res) => {
    const order = orders.get(req.params.id);
    if (!order) return void res.status(404).json({ error: 'no such order' });
    res.json(order);
  });

  app.post('/orders', (req, res) => {
    const id = String(orders.size + 100);
    const order = { id, item: String(req.body?.item ?? 'unknown') };
    orders.set(id, order);
    res.status(201).json(order);
  });

  app.get('/stats', (_req, res) => {
    res.json(Object.fromEntries(hits));
  });

  app.get('/fail', () => {
    throw new Error('something broke');
  });

  // Errors answered here still release the audit event, with the status chosen here.
  app.use((/** @type {Error} */ error, _req, res, _next) => {
    res.status(500).json({ error: error.message });
  });

  return { app, dispatcher: middleware.dispatcher };
}
