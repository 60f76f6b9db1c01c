import type { IncomingMessage, ServerResponse } from 'node:http';
import type { After, FireAndForget, ResponseInfo } from '@afterward/core';
import type { Context } from 'koa';

/**
 * What `ctx.fireAndForget` payload functions, `when` predicates and `ctx.after` hooks learn about
 * the finished response. `route` is the pattern @koa/router matched (`/users/:id`), if any.
 *
 * @example
 * ```ts
 * ctx.after((info: KoaResponseInfo) => metrics.timing('http', info.durationMs, { route: info.route }));
 * ```
 */
export interface KoaResponseInfo extends ResponseInfo<IncomingMessage, ServerResponse> {
  /** The Koa context of the request (read `ctx.state` here, not `ctx.body`: the body has been sent). */
  ctx: Context;
}

declare module 'koa' {
  interface BaseContext {
    /**
     * Validates a notification now and sends it once the response has finished.
     * Returns a `DeliveryHandle` at once (state `'pending'` until then); its `done` never
     * rejects. Bad input throws `InvalidArgumentError` here, at the call. `json` may be a function
     * of the finished response; `when` picks the responses it is sent for (default `'always'`).
     *
     * @example
     * ```ts
     * ctx.fireAndForget('https://hooks.example.com/orders', { json: (info) => ({ status: info.statusCode }) });
     * ```
     */
    fireAndForget: FireAndForget<KoaResponseInfo>;
    /**
     * Runs `fn(info, signal)` once the response has finished, bounded, with a timeout.
     *
     * @example
     * ```ts
     * ctx.after(async (info, signal) => db.audit.insert({ status: info.statusCode }, { signal }));
     * ```
     */
    after: After<KoaResponseInfo>;
  }
  interface BaseResponse {
    /** Same as `ctx.fireAndForget`, the way Koa delegates its response methods. */
    fireAndForget: FireAndForget<KoaResponseInfo>;
    /** Same as `ctx.after`. */
    after: After<KoaResponseInfo>;
  }
}
