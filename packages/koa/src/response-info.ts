import type { ResponseOutcome } from '@afterward/core';
import type { Context } from 'koa';
import type { KoaResponseInfo } from './types.js';

/**
 * The route pattern @koa/router matched (`/users/:id`); it is still on the context when the
 * response ends.
 *
 * @example
 * ```ts
 * router.get('/users/:id', (ctx) => { ctx.body = { route: routeOf(ctx) }; });
 * ```
 */
export function routeOf(ctx: Context): string | undefined {
  const route = (ctx as { _matchedRoute?: string | RegExp })._matchedRoute;
  return route === undefined ? undefined : String(route);
}

/**
 * The request id other middleware left on the context: `ctx.req.id` (koa-pino-logger, which is
 * pino-http), else `ctx.state.requestId`. Audit records and failed-delivery log lines carry it.
 *
 * @example
 * ```ts
 * app.use(async (ctx, next) => { ctx.state.requestId = crypto.randomUUID(); await next(); });
 * ```
 */
export function koaRequestId(ctx: Context): unknown {
  return (ctx.req as { id?: unknown }).id ?? (ctx.state as { requestId?: unknown }).requestId;
}

/**
 * What after-response work learns about a Koa response: one shape for `ctx.after`, lazy payloads
 * and the audit log.
 *
 * @example
 * ```ts
 * const info = responseInfo(ctx, 'finished', 12.5);
 * ```
 */
export function responseInfo(ctx: Context, outcome: ResponseOutcome, durationMs: number): KoaResponseInfo {
  return {
    outcome,
    statusCode: ctx.res.statusCode,
    durationMs,
    method: ctx.method,
    url: ctx.originalUrl,
    route: routeOf(ctx),
    req: ctx.req,
    res: ctx.res,
    ctx,
  };
}
