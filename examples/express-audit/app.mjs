/**
 * An Express app that records an audit event for every request, once the response has finished:
 * who did what, the final status and how long it took. The client never waits for the audit sink.
 */
import express from 'express';
import { afterward, auditLog } from '@afterward/express';

/** @typedef {import('@afterward/express').Dispatcher} Dispatcher */

/**
 * @param {object} options
 * @param {string} options.auditUrl where audit events are POSTed
 * @param {Dispatcher} [options.dispatcher] defaults to one the middleware creates
 * @param {import('@afterward/express').ExpressAuditLogOptions['batch']} [options.batch] batching of
 *   audit records (e.g. `{ format: 'ndjson', maxItems: 100, maxWaitMs: 1000 }`); default `false`:
 *   one request per record
 */
export function createApp({ auditUrl, dispatcher, batch = false }) {
  const middleware = afterward(dispatcher ? { dispatcher } : {});
  const app = express();
  // First, so the record times the whole request. One record per request, sent after the response
  // finished: method, path, route, status, duration, outcome, ip, user agent, request id, and the
  // actor; credentials in headers and query strings are redacted.
  app.use(
    auditLog({
      url: auditUrl,
      dispatcher: middleware.dispatcher,
      batch,
      fields: (req) => ({ actor: req.get('x-user') ?? 'anonymous' }),
    }),
  );
  app.use(express.json());
  app.use(middleware);

  /** @type {Map<string, { id: string, item: string }>} */
  const orders = new Map([['42', { id: '42', item: 'teapot' }]]);
  /** Requests per route, counted by an after-response hook rather than in the handlers. */
  const hits = new Map();

  // A per-route hit counter, kept after each response by a res.after hook.
  app.use((req, res, next) => {
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
