import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterward } from '@afterward/express';
import type {
  AfterwardMiddleware,
  DeliveryHandle,
  Dispatcher,
  ExpressResponseInfo,
  FireAndForgetInit,
  LazyJson,
} from '@afterward/express';
import express from 'express';
import type { Request, Response } from 'express';
import { describe, expectTypeOf, it } from 'vitest';

describe('@afterward/express types (built declarations)', () => {
  it('augments Express.Response with fireAndForget and after', () => {
    const app = express();
    app.use(afterward());
    app.get('/', (_req, res) => {
      expectTypeOf(res.fireAndForget('https://example.com')).toEqualTypeOf<DeliveryHandle>();
      expectTypeOf(
        res.fireAndForget({ url: 'https://example.com', json: { a: 1 } }),
      ).toEqualTypeOf<DeliveryHandle>();
      expectTypeOf(res.after).parameter(0).parameters.toEqualTypeOf<[ExpressResponseInfo, AbortSignal]>();
      expectTypeOf(res.after((info) => info.statusCode, { when: 'ok', timeout: 1_000 })).toBeVoid();
      res.fireAndForget('https://example.com', {
        json: (info: ExpressResponseInfo) => ({ status: info.statusCode }),
        when: (info) => info.req.method === 'POST',
      });
      // A lazy payload's parameter is typed from context (no TS7006 under strict).
      res.fireAndForget('https://example.com', {
        json: (info) => {
          expectTypeOf(info).toEqualTypeOf<ExpressResponseInfo>();
          return { status: info.statusCode, route: info.route, method: info.req.method };
        },
      });
      res.fireAndForget({ url: 'https://example.com', json: (info) => info.res.statusCode });
      res.fireAndForget('https://example.com', { json: [1, 'two', null] });
      res.fireAndForget('https://example.com', { json: 'text' });
      // @ts-expect-error the info is typed, so a misspelt field is caught
      res.fireAndForget('https://example.com', { json: (info) => info.statusCod === 200 });
      // @ts-expect-error when takes only the known names
      res.after(() => {}, { when: 'sometimes' });
      // @ts-expect-error the url is required
      res.fireAndForget();
    });
  });

  it('types the response info with Express request and response', () => {
    expectTypeOf<ExpressResponseInfo['req']>().toEqualTypeOf<Request>();
    expectTypeOf<ExpressResponseInfo['res']>().toEqualTypeOf<Response>();
    expectTypeOf<ExpressResponseInfo['outcome']>().toEqualTypeOf<'finished' | 'aborted'>();
    expectTypeOf<ExpressResponseInfo['route']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<FireAndForgetInit<ExpressResponseInfo>['json']>().toEqualTypeOf<
      LazyJson<ExpressResponseInfo> | undefined
    >();
    expectTypeOf<FireAndForgetInit<ExpressResponseInfo>['json']>()
      .extract<(...args: never[]) => unknown>()
      .toEqualTypeOf<(info: ExpressResponseInfo) => unknown>();
  });

  it('returns a middleware that exposes its dispatcher', () => {
    expectTypeOf(afterward)
      .parameter(0)
      .toExtend<
        { dispatcher?: Dispatcher; onClientAbort?: 'send' | 'cancel'; maxPerResponse?: number } | undefined
      >();
    expectTypeOf(afterward()).toEqualTypeOf<AfterwardMiddleware>();
    expectTypeOf(afterward().dispatcher).toEqualTypeOf<Dispatcher>();
    // @ts-expect-error unknown options are rejected
    afterward({ retries: 3 });
  });

  it('does not leak onto plain Node responses', () => {
    expectTypeOf<ServerResponse<IncomingMessage>>().not.toHaveProperty('fireAndForget');
  });
});
