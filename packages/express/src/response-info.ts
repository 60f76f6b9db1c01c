import type { ResponseOutcome } from '@afterward/core';
import type { Request, Response } from 'express';
import type { ExpressResponseInfo } from './types.js';

/**
 * The route pattern Express matched, with its router's mount path (`/api/users/:id`). Read it
 * inside the route when you can: leaving a router restores `req.baseUrl`, so at finish the mount
 * path may be gone.
 *
 * @example
 * ```ts
 * app.get('/users/:id', (req, res) => res.json({ route: routeOf(req) })); // '/users/:id'
 * ```
 */
export function routeOf(req: Request): string | undefined {
  // A route's path may be a string, a RegExp or an array of them.
  const path = (req.route as { path?: string | RegExp | Array<string | RegExp> } | undefined)?.path;
  if (path === undefined) return undefined;
  return `${req.baseUrl}${Array.isArray(path) ? path.join(',') : String(path)}`;
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
