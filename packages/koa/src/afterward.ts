import {
  createAfterResponse,
  NotInstalledError,
  resolveAfterwardOptions,
  type AfterOptions,
  type AfterResponse,
  type AfterwardOptions,
  type DeliveryHandle,
  type Dispatcher,
  type HookFn,
  type ResolvedAfterwardOptions,
} from '@afterward/core';
import Koa from 'koa';
import type { Context, Next } from 'koa';
import { responseInfo } from './response-info.js';
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

/** What the middleware leaves on each context; the parked work itself is only made on first use. */
interface Slot {
  readonly settings: ResolvedAfterwardOptions;
  readonly startedAt: number;
  work: AfterResponse<KoaResponseInfo> | undefined;
}

const kSlot = Symbol('afterward.koa');
type Tracked = Context & { [kSlot]?: Slot };

function workOf(ctx: Context, method: string): AfterResponse<KoaResponseInfo> {
  const slot = (ctx as Tracked)[kSlot];
  if (slot === undefined) {
    throw new NotInstalledError(
      `ctx.${method}() was called on a request the afterward middleware never saw: ` +
        `install app.use(afterward()) before the middleware that calls ctx.${method}`,
    );
  }
  slot.work ??= createAfterResponse<KoaResponseInfo>(ctx.res, {
    ...slot.settings,
    startedAt: slot.startedAt,
    describe: (outcome, durationMs) => responseInfo(ctx, outcome, durationMs),
  });
  return slot.work;
}

const contextMethods = {
  fireAndForget(this: Context, ...args: unknown[]): DeliveryHandle {
    const work = workOf(this, 'fireAndForget');
    return (work.fireAndForget as (...input: unknown[]) => DeliveryHandle)(...args);
  },
  after(this: Context, fn: HookFn<KoaResponseInfo>, options?: AfterOptions<KoaResponseInfo>): void {
    workOf(this, 'after').after(fn, options);
  },
};

const responseMethods = {
  fireAndForget(this: Koa.Response, ...args: unknown[]): DeliveryHandle {
    return contextMethods.fireAndForget.apply(this.ctx, args);
  },
  after(this: Koa.Response, fn: HookFn<KoaResponseInfo>, options?: AfterOptions<KoaResponseInfo>): void {
    contextMethods.after.call(this.ctx, fn, options);
  },
};

function install(target: object, methods: object): void {
  for (const [name, value] of Object.entries(methods)) {
    Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
  }
}

// Koa's base context and response prototypes (every app's context inherits from them), so that
// a request reached without the middleware throws NotInstalledError rather than a TypeError.
const probe = new Koa();
install(Object.getPrototypeOf(probe.context) as object, contextMethods);
install(Object.getPrototypeOf(probe.response) as object, responseMethods);

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
    if (ctx.fireAndForget !== contextMethods.fireAndForget) {
      install(Object.getPrototypeOf(ctx) as object, contextMethods);
    }
    if (ctx.response.fireAndForget !== responseMethods.fireAndForget) {
      install(Object.getPrototypeOf(ctx.response) as object, responseMethods);
    }
    (ctx as Tracked)[kSlot] ??= { settings, startedAt: performance.now(), work: undefined };
    return next();
  }
  return Object.assign(afterwardMiddleware, { dispatcher: settings.dispatcher });
}
