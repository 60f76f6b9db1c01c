import { ServerResponse } from 'node:http';
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
import express, { type NextFunction, type Request, type Response } from 'express';
import { responseInfo, routeOf } from './response-info.js';
import type { ExpressResponseInfo } from './types.js';

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
  (req: Request, res: Response, next: NextFunction): void;
  readonly dispatcher: Dispatcher;
}

/** What the middleware leaves on each response; the parked work itself is only made on first use. */
interface Slot {
  readonly settings: ResolvedAfterwardOptions;
  readonly startedAt: number;
  route: string | undefined;
  work: AfterResponse<ExpressResponseInfo> | undefined;
}

const kSlot = Symbol('afterward.express');
type Tracked = Response & { [kSlot]?: Slot };

function workOf(res: Response, method: string): AfterResponse<ExpressResponseInfo> {
  const slot = (res as Tracked)[kSlot];
  if (slot === undefined) {
    throw new NotInstalledError(
      `res.${method}() was called on a response the afterward middleware never saw: ` +
        `install app.use(afterward()) before the routes that call res.${method}`,
    );
  }
  // Read inside the route: leaving a router restores req.baseUrl, so at finish the mount path is gone.
  slot.route ??= routeOf(res.req);
  slot.work ??= createAfterResponse<ExpressResponseInfo>(res, {
    ...slot.settings,
    startedAt: slot.startedAt,
    describe: (outcome, durationMs) =>
      responseInfo(res.req, res, outcome, durationMs, slot.route ?? routeOf(res.req)),
  });
  return slot.work;
}

const methods = {
  fireAndForget(this: Response, ...args: unknown[]): DeliveryHandle {
    const work = workOf(this, 'fireAndForget');
    return (work.fireAndForget as (...input: unknown[]) => DeliveryHandle)(...args);
  },
  after(this: Response, fn: HookFn<ExpressResponseInfo>, options?: AfterOptions<ExpressResponseInfo>): void {
    workOf(this, 'after').after(fn, options);
  },
};

function install(target: object): void {
  for (const [name, value] of Object.entries(methods)) {
    Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
  }
}

// On express.response so that a route reached without the middleware throws NotInstalledError
// rather than "res.fireAndForget is not a function".
install(express.response);

/**
 * Express middleware that gives every later handler `res.fireAndForget(url, init)` and
 * `res.after(fn, options)`: validated at the call, run only once the response has finished.
 * Without a `dispatcher` it creates one, reachable as `middleware.dispatcher`.
 *
 * @example
 * ```ts
 * app.use(afterward());
 * app.post('/orders', (req, res) => {
 *   res.fireAndForget('https://hooks.example.com/orders', { json: { id: req.body.id } });
 *   res.status(201).json({ ok: true });
 * });
 * ```
 */
export function afterward(options: AfterwardOptions = {}): AfterwardMiddleware {
  const settings = resolveAfterwardOptions(options);
  function afterwardMiddleware(_req: Request, res: Response, next: NextFunction): void {
    if (res.fireAndForget !== methods.fireAndForget) {
      // Another copy of express (a second install, express 4 next to 5): patch its prototype once.
      // A bare Node response is patched alone, so the methods never reach every ServerResponse.
      const proto = Object.getPrototypeOf(res) as object;
      install(proto === ServerResponse.prototype ? res : proto);
    }
    (res as Tracked)[kSlot] ??= { settings, startedAt: performance.now(), route: undefined, work: undefined };
    next();
  }
  return Object.assign(afterwardMiddleware, { dispatcher: settings.dispatcher });
}
