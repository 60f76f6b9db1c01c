import { createAuditLog, type AuditLogOptions, type AuditSource, type Dispatcher } from '@afterward/core';
import { monotonicNow } from '@afterward/core/adapter';
import express, { type NextFunction, type Request, type Response } from 'express';
import { responseInfo, trackRoutes } from './response-info.js';
import type { ExpressResponseInfo } from './types.js';

// Re-exported so `redact: [...DEFAULT_REDACT, 'x-email']` needs no direct dependency on core.
export { DEFAULT_REDACT } from '@afterward/core';

/** Options of {@link auditLog}; `fields` gets the Express request and the response info. */
export type ExpressAuditLogOptions = AuditLogOptions<Request, ExpressResponseInfo>;

/**
 * The middleware {@link auditLog} returns, with the dispatcher its records go through.
 *
 * @example
 * ```ts
 * const audit = auditLog({ url });
 * process.on('SIGTERM', () => server.close(() => void audit.dispatcher.close()));
 * ```
 */
export interface AuditLogMiddleware {
  (req: Request, res: Response, next: NextFunction): void;
  readonly dispatcher: Dispatcher;
}

/**
 * Express middleware that sends one audit record per request once its response has finished (or
 * the client went away): method, path, route, status, duration, outcome, ip, user agent, request
 * id and your `fields`, with credentials redacted. Records are batched unless `batch: false`.
 * Works on its own: `afterward()` need not be installed.
 *
 * @example
 * ```ts
 * app.use(auditLog({ url: 'https://audit.example.com/records', fields: (req) => ({ userId: req.user?.id }) }));
 * ```
 */
export function auditLog(options: ExpressAuditLogOptions): AuditLogMiddleware {
  const log = createAuditLog<Request, ExpressResponseInfo>(options, SOURCE);
  function auditLogMiddleware(req: Request, res: Response, next: NextFunction): void {
    trackRoutes(req);
    log.track(res, req, monotonicNow());
    next();
  }
  return Object.assign(auditLogMiddleware, { dispatcher: log.dispatcher });
}

/**
 * What `app.get('trust proxy fn')` is while 'trust proxy' is off (the default): proxy-addr's
 * function that trusts no address, one function for every app of this copy of Express.
 */
const TRUST_NONE: unknown = express().get('trust proxy fn');

/**
 * `req.ip`. With 'trust proxy' off, Express's getter (proxy-addr, which parses X-Forwarded-For)
 * ends with the socket's address whatever the headers say: read it directly. The setting is read
 * as `app.get()` reads it, from `app.settings` (a mounted app's inherit its parent's), without the
 * two calls.
 */
function clientIp(req: Request): string | undefined {
  const settings = (req.app as { settings?: Record<string, unknown> } | undefined)?.settings;
  if (settings?.['trust proxy fn'] === TRUST_NONE) {
    return req.socket?.remoteAddress;
  }
  return req.ip;
}

/** How the audit log reads an Express request: shared by every request, no closure each. */
const SOURCE: AuditSource<Request, ExpressResponseInfo> = {
  describe: (req, res, outcome, durationMs) => responseInfo(req, res as Response, outcome, durationMs),
  // req.ip applies the app's 'trust proxy' setting.
  ip: clientIp,
  body: (req): unknown => req.body,
  // pino-http (and express-request-id) set req.id.
  requestId: (req) => (req as { id?: unknown }).id,
};
