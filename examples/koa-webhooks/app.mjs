/**
 * A Koa app that sends webhooks to its customers once the response has finished: the API stays
 * fast whatever the customers' endpoints do, and a failed request sends nothing ('ok' filter).
 */
import Koa from 'koa';
import Router from '@koa/router';
import { afterward } from '@afterward/koa';

/** @typedef {import('@afterward/koa').KoaResponseInfo} KoaResponseInfo */
/** @typedef {import('@afterward/koa').Dispatcher} Dispatcher */

/**
 * @param {object} options
 * @param {Dispatcher} options.dispatcher sends (and signs) the webhooks
 * @param {string[]} [options.subscribers] webhook endpoint URLs
 */
export function createApp({ dispatcher, subscribers = [] }) {
  const app = new Koa();
  const router = new Router();
  /** @type {Map<string, { id: string, item: string, status: string }>} */
  const orders = new Map();

  /**
   * Parks one webhook per subscriber; `when: 'ok'` drops them if the request ends up failing.
   * @param {import('koa').Context} ctx
   * @param {string} type
   * @param {object} data
   */
  function notify(ctx, type, data) {
    for (const url of subscribers) {
      ctx.fireAndForget(url, {
        when: 'ok',
        json: (/** @type {KoaResponseInfo} */ info) => ({
          type,
          data,
          timestamp: new Date().toISOString(),
          status: info.statusCode,
        }),
      });
    }
  }

  router.post('/subscriptions', async (ctx) => {
    const { url } = /** @type {{ url?: unknown }} */ (await readJson(ctx));
    if (typeof url !== 'string' || !URL.canParse(url)) ctx.throw(400, 'url must be an absolute URL');
    subscribers.push(url);
    ctx.status = 201;
    ctx.body = { subscribers: subscribers.length };
  });

  router.post('/orders', async (ctx) => {
    const { item } = /** @type {{ item?: unknown }} */ (await readJson(ctx));
    if (typeof item !== 'string') ctx.throw(400, 'item is required');
    const order = { id: String(orders.size + 1), item, status: 'open' };
    orders.set(order.id, order);
    notify(ctx, 'order.created', order);
    ctx.status = 201;
    ctx.body = order;
  });

  router.post('/orders/:id/cancel', (ctx) => {
    const order = orders.get(ctx.params.id);
    notify(ctx, 'order.cancelled', { id: ctx.params.id });
    // Parked before the checks: if one throws, Koa answers 404/409 and `when: 'ok'` drops them.
    if (!order) ctx.throw(404, 'no such order');
    if (order.status === 'cancelled') ctx.throw(409, 'already cancelled');
    order.status = 'cancelled';
    ctx.body = order;
  });

  app.use(afterward({ dispatcher }));
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}

/** A small JSON body reader, so the example needs no body-parser package. */
async function readJson(/** @type {import('koa').Context} */ ctx) {
  let text = '';
  for await (const chunk of ctx.req) text += chunk;
  try {
    return text === '' ? {} : JSON.parse(text);
  } catch {
    ctx.throw(400, 'invalid JSON');
  }
}
