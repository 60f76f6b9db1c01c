import { ServerResponse } from 'node:http';
import type { DeliveryHandle } from '@afterward/core';
import { drain } from '@afterward/core/testing';
import { afterward } from '@afterward/express';
import type { ExpressResponseInfo } from '@afterward/express';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import express4 from 'express4';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { testDispatcher, testReceiver } from './setup.js';

const EXPRESSES = [
  { name: 'express5', express },
  { name: 'express4', express: express4 },
];

describe.each(EXPRESSES)('$name specifics', ({ express }) => {
  it('next(err) from a mounted router: the error middleware answers, the route keeps its mount path', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = express();
    app.use(afterward({ dispatcher }));
    const router = express.Router();
    router.get('/items/:id', (_req, res, next) => {
      res.fireAndForget(receiver.url, {
        json: (info: ExpressResponseInfo) => ({ status: info.statusCode, route: info.route, url: info.url }),
      });
      next(Object.assign(new Error('gone'), { status: 410 }));
    });
    app.use('/api', router);
    app.use((error: Error & { status: number }, _req: Request, res: Response, _next: NextFunction) => {
      res.status(error.status).json({ error: error.message });
    });

    await request(app).get('/api/items/9').expect(410);
    const [received] = await receiver.waitFor(1);
    expect(received?.json()).toEqual({ status: 410, route: '/api/items/:id', url: '/api/items/9' });
  });

  it("work added from a 'finish' listener is released at once", async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    let late: DeliveryHandle | undefined;
    const app = express();
    app.use(afterward({ dispatcher }));
    app.get('/', (_req, res) => {
      res.on('finish', () => {
        late = res.fireAndForget(receiver.url, { json: (info: ExpressResponseInfo) => info.outcome });
      });
      res.send('ok');
    });

    await request(app).get('/').expect(200);
    const [received] = await receiver.waitFor(1);
    expect(received?.json()).toBe('finished');
    expect((await late?.done)?.state).toBe('delivered');
  });

  it('keeps the methods off ServerResponse.prototype and out of enumeration', async () => {
    const dispatcher = testDispatcher();
    const app = express();
    app.use(afterward({ dispatcher }));
    let keys: string[] = [];
    app.get('/', (_req, res) => {
      keys = [];
      for (const key in res) keys.push(key);
      res.json({ has: typeof res.fireAndForget });
    });

    await request(app).get('/').expect(200, { has: 'function' });
    expect(keys).not.toContain('fireAndForget');
    expect(keys).not.toContain('after');
    expect('fireAndForget' in ServerResponse.prototype).toBe(false);
  });
});

describe('express5: async handlers', () => {
  it('an error thrown in an async handler reaches the final handler, and parked work is released', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = express();
    app.use(afterward({ dispatcher }));
    app.get('/', async (_req, res) => {
      res.fireAndForget(receiver.url, { json: (info: ExpressResponseInfo) => ({ status: info.statusCode }) });
      res.after(() => {}, { when: 'error' });
      await Promise.resolve();
      throw new Error('async failure');
    });
    app.use((_error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(503).send('sorry');
    });

    await request(app).get('/').expect(503);
    const [received] = await receiver.waitFor(1);
    expect(received?.json()).toEqual({ status: 503 });
    await drain(dispatcher);
    expect(dispatcher.stats().hooks.completed).toBe(1);
  });
});
