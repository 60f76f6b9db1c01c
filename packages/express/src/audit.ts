import { createAuditLog, type AuditLogOptions, type Dispatcher } from '@afterward/core';
import type { NextFunction, Request, Response } from 'express';
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
  const log = createAuditLog<Request, ExpressResponseInfo>(options);
  function auditLogMiddleware(req: Request, res: Response, next: NextFunction): void {
    trackRoutes(req);
    log.watch(res, {
      subject: req,
      startedAt: performance.now(),
      describe: (outcome, durationMs) => responseInfo(req, res, outcome, durationMs),
      // req.ip applies the app's 'trust proxy' setting.
      ip: () => req.ip,
      body: (): unknown => req.body,
      // pino-http (and express-request-id) set req.id.
      requestId: () => (req as { id?: unknown }).id,
    });
    next();
  }
  return Object.assign(auditLogMiddleware, { dispatcher: log.dispatcher });
}
