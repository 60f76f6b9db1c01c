import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createDispatcher } from '@afterward/core';
import type { DeliveryHandle, FireAndForgetInit, LazyJson, ResponseInfo } from '@afterward/core';
import { createAfterResponse } from '@afterward/core/adapter';
import type { AfterResponse } from '@afterward/core/adapter';
import { describe, expectTypeOf, it } from 'vitest';

type NodeInfo = ResponseInfo<IncomingMessage, ServerResponse>;

describe('@afterward/core types (built declarations)', () => {
  it("createAfterResponse types a lazy payload's parameter with the adapter's info", () => {
    const dispatcher = createDispatcher();
    createServer((req, res) => {
      const work = createAfterResponse(res, {
        dispatcher,
        describe: (outcome, durationMs): NodeInfo => ({
          outcome,
          durationMs,
          statusCode: res.statusCode,
          method: req.method ?? 'GET',
          url: req.url ?? '/',
          route: undefined,
          req,
          res,
        }),
      });
      expectTypeOf(work).toEqualTypeOf<AfterResponse<NodeInfo>>();
      const handle = work.fireAndForget('https://example.com', {
        json: (info) => {
          expectTypeOf(info).toEqualTypeOf<NodeInfo>();
          return { status: info.statusCode, agent: info.req.headers['user-agent'] };
        },
        when: (info) => info.res.statusCode < 500,
      });
      expectTypeOf(handle).toEqualTypeOf<DeliveryHandle>();
      work.fireAndForget({ url: 'https://example.com', json: (info) => info.durationMs });
      work.fireAndForget('https://example.com', { json: { plain: true } });
      // @ts-expect-error the info is typed, so a misspelt field is caught
      work.fireAndForget('https://example.com', { json: (info) => info.req.header === undefined });
      res.end();
    });
  });

  it('a lazy payload is a JSON value or a function of the info', () => {
    expectTypeOf<FireAndForgetInit['json']>().toEqualTypeOf<LazyJson | undefined>();
    expectTypeOf<(info: ResponseInfo) => unknown>().toExtend<LazyJson>();
    expectTypeOf<{ a: 1 }>().toExtend<LazyJson>();
    expectTypeOf<string>().toExtend<LazyJson>();
    expectTypeOf<null>().toExtend<LazyJson>();
    expectTypeOf<bigint>().not.toExtend<LazyJson>();
  });
});
