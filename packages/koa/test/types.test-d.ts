import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterward } from '@afterward/koa';
import type { AfterwardMiddleware, DeliveryHandle, Dispatcher, KoaResponseInfo } from '@afterward/koa';
import Router from '@koa/router';
import Koa from 'koa';
import type { Context } from 'koa';
import { describe, expectTypeOf, it } from 'vitest';

describe('@afterward/koa types (built declarations)', () => {
  it('augments the context and ctx.response with fireAndForget and after', () => {
    const app = new Koa();
    app.use(afterward());
    app.use((ctx) => {
      expectTypeOf(ctx.fireAndForget('https://example.com')).toEqualTypeOf<DeliveryHandle>();
      expectTypeOf(ctx.response.fireAndForget('https://example.com')).toEqualTypeOf<DeliveryHandle>();
      expectTypeOf(ctx.after).parameter(0).parameters.toEqualTypeOf<[KoaResponseInfo, AbortSignal]>();
      expectTypeOf(ctx.response.after((info) => info.ctx.state, { when: 'error' })).toBeVoid();
      ctx.fireAndForget('https://example.com', { json: (info: KoaResponseInfo) => info.statusCode });
      // A lazy payload's parameter is typed from context (no TS7006 under strict).
      ctx.fireAndForget('https://example.com', {
        json: (info) => {
          expectTypeOf(info).toEqualTypeOf<KoaResponseInfo>();
          return { status: info.statusCode, user: info.ctx.state as unknown };
        },
        when: (info) => info.ctx.method === 'POST',
      });
      ctx.response.fireAndForget({ url: 'https://example.com', json: (info) => info.route });
      // @ts-expect-error the info is typed, so a misspelt field is caught
      ctx.fireAndForget('https://example.com', { json: (info) => info.statusCod === 200 });
      // @ts-expect-error when takes only the known names
      ctx.after(() => {}, { when: 'sometimes' });
    });
  });

  it('reaches router contexts too', () => {
    const router = new Router();
    router.get('/:id', (ctx) => {
      expectTypeOf(ctx.fireAndForget).returns.toEqualTypeOf<DeliveryHandle>();
    });
  });

  it('types the response info with the Node request, response and the Koa context', () => {
    expectTypeOf<KoaResponseInfo['req']>().toEqualTypeOf<IncomingMessage>();
    expectTypeOf<KoaResponseInfo['res']>().toEqualTypeOf<ServerResponse>();
    expectTypeOf<KoaResponseInfo['ctx']>().toEqualTypeOf<Context>();
    expectTypeOf<KoaResponseInfo['route']>().toEqualTypeOf<string | undefined>();
  });

  it('returns a middleware that exposes its dispatcher', () => {
    expectTypeOf(afterward()).toEqualTypeOf<AfterwardMiddleware>();
    expectTypeOf(afterward().dispatcher).toEqualTypeOf<Dispatcher>();
    // @ts-expect-error unknown options are rejected
    afterward({ retries: 3 });
  });

  it('does not leak onto plain Node responses', () => {
    expectTypeOf<ServerResponse<IncomingMessage>>().not.toHaveProperty('fireAndForget');
  });
});
