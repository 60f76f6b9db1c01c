import { NotInstalledError } from '@afterward/core';
import { drain } from '@afterward/core/testing';
import { afterward } from '@afterward/koa';
import type { KoaResponseInfo } from '@afterward/koa';
import Router from '@koa/router';
import Koa from 'koa';
import Koa2 from 'koa2';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { testDispatcher, testReceiver } from './setup.js';

const KOAS = [
  { name: 'koa3', Koa },
  { name: 'koa2', Koa: Koa2 },
];

describe.each(KOAS)('$name specifics', ({ Koa }) => {
  it('ctx.response.fireAndForget and ctx.response.after park on the same request as ctx.*', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const hooked: string[] = [];
    const app = new Koa();
    app.use(afterward({ dispatcher }));
    app.use((ctx) => {
      ctx.fireAndForget(`${receiver.url}/ctx`);
      ctx.response.fireAndForget(`${receiver.url}/response`);
      ctx.after(() => void hooked.push('ctx'));
      ctx.response.after(() => void hooked.push('response'));
      ctx.body = 'ok';
    });

    await request(app.callback()).get('/').expect(200);
    await drain(dispatcher);
    expect(receiver.requests.map((r) => r.url).sort()).toEqual(['/ctx', '/response']);
    expect(hooked.sort()).toEqual(['ctx', 'response']);
  });

  it('info carries ctx (state included) and the nested @koa/router route', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = new Koa();
    app.use(afterward({ dispatcher }));
    const users = new Router();
    users.get('/:id', (ctx) => {
      ctx.state['user'] = 'ada';
      ctx.fireAndForget(receiver.url, {
        json: (info: KoaResponseInfo) => ({
          route: info.route,
          user: info.ctx.state['user'] as unknown,
          same: info.req === info.ctx.req && info.res === info.ctx.res,
        }),
      });
      ctx.body = { id: ctx.params['id'] };
    });
    const api = new Router({ prefix: '/api' });
    api.use('/users', users.routes());
    app.use(api.routes());

    await request(app.callback()).get('/api/users/5').expect(200);
    const [received] = await receiver.waitFor(1);
    expect(received?.json()).toEqual({ route: '/api/users/:id', user: 'ada', same: true });
  });

  it('an upstream error middleware that sets the status: info sees the status it chose', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = new Koa();
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch {
        ctx.status = 418;
        ctx.body = { error: 'teapot' };
      }
    });
    app.use(afterward({ dispatcher }));
    app.use((ctx) => {
      ctx.fireAndForget(receiver.url, { json: (info: KoaResponseInfo) => ({ status: info.statusCode }) });
      ctx.throw(400, 'bad');
    });

    await request(app.callback()).get('/').expect(418);
    const [received] = await receiver.waitFor(1);
    expect(received?.json()).toEqual({ status: 418 });
  });
});

describe('koa3 without the middleware', () => {
  it('ctx.response.fireAndForget throws NotInstalledError too', async () => {
    const app = new Koa();
    const errors: unknown[] = [];
    app.on('error', (error: unknown) => errors.push(error));
    app.use((ctx) => {
      ctx.response.fireAndForget('http://127.0.0.1:9/');
    });

    await request(app.callback()).get('/').expect(500);
    expect(errors[0]).toBeInstanceOf(NotInstalledError);
  });
});
