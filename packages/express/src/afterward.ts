import { ServerResponse } from 'node:http';
import type { AfterwardOptions, Dispatcher } from '@afterward/core';
import { createAdapterKit, readRequestId, resolveAfterwardOptions } from '@afterward/core/adapter';
import express, { type NextFunction, type Request, type Response } from 'express';
import { responseInfo, routeOf, trackRoutes } from './response-info.js';
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

const kit = createAdapterKit<Response, ExpressResponseInfo>({
  receiver: 'res',
  noun: 'response',
  callers: 'the routes that call',
  response: (res) => res,
  // Read inside the route: leaving a router restores req.baseUrl, so at finish the mount path is gone.
  capture: (res) => routeOf(res.req),
  describe: (res, outcome, durationMs, route) => responseInfo(res.req, res, outcome, durationMs, route),
  // pino-http (and express-request-id) set req.id; else the x-request-id header.
  requestId: (res) => readRequestId((res.req as { id?: unknown }).id, res.req),
});

// On express.response so that a route reached without the middleware throws NotInstalledError
// rather than "res.fireAndForget is not a function".
kit.install(express.response);

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
  function afterwardMiddleware(req: Request, res: Response, next: NextFunction): void {
    if (!kit.installedOn(res)) {
      // Another copy of express (a second install, express 4 next to 5): patch its prototype once.
      // A bare Node response is patched alone, so the methods never reach every ServerResponse.
      const proto = Object.getPrototypeOf(res) as object;
      kit.install(proto === ServerResponse.prototype ? res : proto);
    }
    // The full route template on a second copy of express too (this one is patched at load).
    trackRoutes(req);
    kit.track(res, settings);
    next();
  }
  return Object.assign(afterwardMiddleware, { dispatcher: settings.dispatcher });
}
