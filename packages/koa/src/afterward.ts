import type { AfterOptions, AfterwardOptions, DeliveryHandle, Dispatcher, HookFn } from '@afterward/core';
import { createAdapterKit, readRequestId, resolveAfterwardOptions } from '@afterward/core/adapter';
import Koa from 'koa';
import type { Context, Next } from 'koa';
import { koaRequestId, responseInfo } from './response-info.js';
import type { KoaResponseInfo } from './types.js';

/**
 * The middleware {@link afterward} returns. `dispatcher` is the one it hands work to (the one you
 * passed, or the default it created), so a shutdown hook can `close()` it.
 *
 * @example
 * ```ts
 * const middleware = afterward();
 * app.use(middleware);
 * process.on('SIGTERM', () => server.close(() => void middleware.dispatcher.close()));
 * ```
 */
export interface AfterwardMiddleware {
  (ctx: Context, next: Next): Promise<unknown>;
  readonly dispatcher: Dispatcher;
}

const kit = createAdapterKit<Context, KoaResponseInfo>({
  receiver: 'ctx',
  noun: 'request',
  callers: 'the middleware that calls',
  response: (ctx) => ctx.res,
  describe: (ctx, outcome, durationMs) => responseInfo(ctx, outcome, durationMs),
  requestId: (ctx) => readRequestId(koaRequestId(ctx), ctx.req),
});

// ctx.response carries the same methods, working on its context.
const responseMethods = {
  fireAndForget(this: Koa.Response, ...args: unknown[]): DeliveryHandle {
    return kit.methods.fireAndForget.apply(this.ctx, args);
  },
  after(this: Koa.Response, fn: HookFn<KoaResponseInfo>, options?: AfterOptions<KoaResponseInfo>): void {
    kit.methods.after.call(this.ctx, fn, options);
  },
};

// Koa's base context and response prototypes (every app's context inherits from them), so that
// a request reached without the middleware throws NotInstalledError rather than a TypeError.
const probe = new Koa();
kit.install(Object.getPrototypeOf(probe.context) as object);
kit.install(Object.getPrototypeOf(probe.response) as object, responseMethods);

/**
 * Koa middleware that gives every later middleware `ctx.fireAndForget(url, init)` and
 * `ctx.after(fn, options)` (also on `ctx.response`): validated at the call, run only once the
 * response has finished. Without a `dispatcher` it creates one, reachable as `middleware.dispatcher`.
 *
 * @example
 * ```ts
 * app.use(afterward());
 * app.use(async (ctx) => {
 *   ctx.fireAndForget('https://hooks.example.com/visits', { json: { path: ctx.path } });
 *   ctx.body = { ok: true };
 * });
 * ```
 */
export function afterward(options: AfterwardOptions = {}): AfterwardMiddleware {
  const settings = resolveAfterwardOptions(options);
  function afterwardMiddleware(ctx: Context, next: Next): Promise<unknown> {
    // Another copy of koa (a second install, koa 2 next to 3): patch its app's prototypes once.
    if (!kit.installedOn(ctx)) kit.install(Object.getPrototypeOf(ctx) as object);
    if (ctx.response.fireAndForget !== responseMethods.fireAndForget) {
      kit.install(Object.getPrototypeOf(ctx.response) as object, responseMethods);
    }
    kit.track(ctx, settings);
    return next();
  }
  return Object.assign(afterwardMiddleware, { dispatcher: settings.dispatcher });
}
