import { createAuditLog, type AuditLogOptions, type AuditSource, type Dispatcher } from '@afterward/core';
import { monotonicNow } from '@afterward/core/adapter';
import type { Context, Next } from 'koa';
import { koaRequestId, responseInfo } from './response-info.js';
import type { KoaResponseInfo } from './types.js';

// Re-exported so `redact: [...DEFAULT_REDACT, 'x-email']` needs no direct dependency on core.
export { DEFAULT_REDACT } from '@afterward/core';

/** Options of {@link auditLog}; `fields` gets the Koa context and the response info. */
export type KoaAuditLogOptions = AuditLogOptions<Context, KoaResponseInfo>;

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
  (ctx: Context, next: Next): Promise<unknown>;
  readonly dispatcher: Dispatcher;
}

/**
 * Koa middleware that sends one audit record per request once its response has finished (or the
 * client went away): method, path, route, status, duration, outcome, ip, user agent, request id
 * and your `fields`, with credentials redacted. Records are batched unless `batch: false`.
 * Works on its own: `afterward()` need not be installed.
 *
 * @example
 * ```ts
 * app.use(auditLog({ url: 'https://audit.example.com/records', fields: (ctx) => ({ userId: ctx.state.user?.id }) }));
 * ```
 */
export function auditLog(options: KoaAuditLogOptions): AuditLogMiddleware {
  const log = createAuditLog<Context, KoaResponseInfo>(options, SOURCE);
  function auditLogMiddleware(ctx: Context, next: Next): Promise<unknown> {
    log.track(ctx.res, ctx, monotonicNow());
    return next();
  }
  return Object.assign(auditLogMiddleware, { dispatcher: log.dispatcher });
}

/** How the audit log reads a Koa context: shared by every request, no closure each. */
const SOURCE: AuditSource<Context, KoaResponseInfo> = {
  describe: (ctx, _res, outcome, durationMs) => responseInfo(ctx, outcome, durationMs),
  // ctx.ip applies the app's `proxy` setting.
  ip: (ctx) => ctx.ip,
  // Where body parsers (koa-body, @koa/bodyparser) leave the parsed body.
  body: (ctx) => (ctx.request as { body?: unknown }).body,
  requestId: koaRequestId,
};
