import { IncomingMessage } from 'node:http';
import type { ResponseOutcome } from '@afterward/core';
import express, { type Request, type Response } from 'express';
import type { ExpressResponseInfo } from './types.js';

type RoutePath = string | RegExp | Array<string | RegExp>;
interface MatchedRoute {
  /** The route object Express set, to tell whether it is still the current one. */
  readonly route: unknown;
  /** The mount paths when it matched; joined with the route's path only when asked (`routeOf`). */
  readonly baseUrl: string | undefined;
}
const kRoute = Symbol('afterward.route');
type Tracked = Request & { [kRoute]?: MatchedRoute };
const tracked = new WeakSet<object>();
let lastTracked: object | undefined;

// Express sets `req.route` when a route matches, while `req.baseUrl` still holds every mount path;
// leaving a router restores `req.baseUrl`, so an error thrown inside a nested router reaches the
// error handler (and the finish) with `/:id/fail` instead of `/api/users/:id/fail`. An accessor
// on the request prototype keeps the template as it was when the route matched.
const routeAccessor: PropertyDescriptor = {
  configurable: true,
  enumerable: false,
  get(this: Tracked): unknown {
    return this[kRoute]?.route;
  },
  set(this: Tracked, route: unknown) {
    // A plain assignment, as Express's own `req.route = ...` would be: one property added the
    // usual way (Object.defineProperty here cost 0.6 µs per request, bench/adapter-cost.mjs).
    this[kRoute] = { route, baseUrl: this.baseUrl };
  },
};

function hasAccessor(proto: object | null): boolean {
  for (let p = proto; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    if (Object.getOwnPropertyDescriptor(p, 'route')?.set === routeAccessor.set) return true;
  }
  return false;
}

/**
 * Makes `routeOf()` keep the full route template of this request's app, nested routers included,
 * also once the router that matched has been left (an error thrown inside it). Patches the
 * request prototype of that copy of Express once; a bare Node request is patched alone.
 *
 * @example
 * ```ts
 * app.use((req, _res, next) => { trackRoutes(req); next(); });
 * ```
 */
export function trackRoutes(req: Request): void {
  const proto = Object.getPrototypeOf(req) as object | null;
  // Every request of an app has the same prototype: skip the WeakSet lookup for the last one seen.
  if (proto === lastTracked || proto === null) return;
  if (tracked.has(proto)) {
    lastTracked = proto;
    return;
  }
  tracked.add(proto);
  if (hasAccessor(proto)) return;
  // Someone else's own `route` (an app that set one already) is left alone.
  if (Object.getOwnPropertyDescriptor(req, 'route') !== undefined) return;
  Object.defineProperty(proto === IncomingMessage.prototype ? req : proto, 'route', routeAccessor);
}

// The copy of Express this package imports is patched at once, like `res.fireAndForget`.
Object.defineProperty(express.request, 'route', routeAccessor);
tracked.add(express.request);

function join(baseUrl: string | undefined, path: RoutePath): string {
  return `${baseUrl ?? ''}${Array.isArray(path) ? path.join(',') : String(path)}`;
}

/**
 * The route pattern Express matched, with every mount path of the routers it sits in
 * (`/api/users/:id`), also after the router was left (an error thrown inside it).
 *
 * @example
 * ```ts
 * app.get('/users/:id', (req, res) => res.json({ route: routeOf(req) })); // '/users/:id'
 * ```
 */
export function routeOf(req: Request): string | undefined {
  const route: unknown = req.route;
  const matched = (req as Tracked)[kRoute];
  // A route's path may be a string, a RegExp or an array of them.
  const path = (route as { path?: RoutePath } | undefined)?.path;
  if (path === undefined) return undefined;
  return join(matched !== undefined && matched.route === route ? matched.baseUrl : req.baseUrl, path);
}

/**
 * What after-response work learns about an Express response: one shape for `res.after`, lazy
 * payloads and the audit log.
 *
 * @example
 * ```ts
 * const info = responseInfo(req, res, 'finished', 12.5);
 * ```
 */
export function responseInfo(
  req: Request,
  res: Response,
  outcome: ResponseOutcome,
  durationMs: number,
  route: string | undefined = routeOf(req),
): ExpressResponseInfo {
  return {
    outcome,
    statusCode: res.statusCode,
    durationMs,
    method: req.method,
    url: req.originalUrl,
    route,
    req,
    res,
  };
}
