import type { After, FireAndForget, ResponseInfo } from '@afterward/core';
import type { Request, Response } from 'express';

/**
 * What `res.fireAndForget` payload functions, `when` predicates and `res.after` hooks learn about
 * the finished response. `route` is `req.baseUrl + req.route.path` as seen inside the route
 * (`/api/users/:id`), or undefined when no route matched.
 *
 * @example
 * ```ts
 * res.after((info: ExpressResponseInfo) => metrics.timing('http', info.durationMs, { route: info.route }));
 * ```
 */
export type ExpressResponseInfo = ResponseInfo<Request, Response>;

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace -- the form @types/express merges with
  namespace Express {
    interface Response {
      /**
       * Validates a notification now and sends it once the response has finished.
       * Returns a `DeliveryHandle` at once (state `'pending'` until then); its `done` never
       * rejects. Bad input throws `InvalidArgumentError` here, at the call. `json` may be a function
       * of the finished response; `when` picks the responses it is sent for (default `'always'`).
       *
       * @example
       * ```ts
       * res.fireAndForget('https://hooks.example.com/orders', { json: (info) => ({ status: info.statusCode }) });
       * ```
       */
      fireAndForget: FireAndForget<ExpressResponseInfo>;
      /**
       * Runs `fn(info, signal)` once the response has finished, bounded, with a timeout.
       *
       * @example
       * ```ts
       * res.after(async (info, signal) => db.audit.insert({ status: info.statusCode }, { signal }));
       * ```
       */
      after: After<ExpressResponseInfo>;
    }
  }
}
