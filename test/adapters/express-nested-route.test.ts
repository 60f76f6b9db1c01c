/**
 * Express: an error thrown inside a nested router reaches the error handler after the routers
 * restored `req.baseUrl`; the route template in audit records and after-response info must still
 * be the full one (`/api/users/:id/fail`), not the innermost router's (`/:id/fail`).
 */
import type { AuditRecord, ResponseInfo } from '@afterward/core';
import { afterward, auditLog } from '@afterward/express';
import express5 from 'express';
import type { Express, NextFunction, Request, Response } from 'express';
import express4 from 'express4';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { testDispatcher, testReceiver } from './setup.js';

type ExpressFactory = () => Express;
const EXPRESSES: Array<[string, ExpressFactory]> = [
  ['express5', express5],
  ['express4', express4],
];

function nestedApp(make: ExpressFactory, before: (app: Express) => void): Express {
  const app = make();
  before(app);
  const users = (make as unknown as { Router: () => express5.Router }).Router();
  users.get('/:id/fail', () => {
    throw new Error('exploded inside the nested router');
  });
  users.get('/:id/async-fail', async () => {
    await Promise.resolve();
    throw new Error('rejected inside the nested router');
  });
  users.get('/:id', (_req, res) => void res.json({ ok: true }));
  const api = (make as unknown as { Router: () => express5.Router }).Router();
  api.use('/users', users);
  app.use('/api', api);
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: error.message });
  });
  return app;
}

describe.each(EXPRESSES)('%s: nested routers', (_name, make) => {
  it('audit records keep the full route template for an error thrown inside a nested router', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = nestedApp(make, (a) => a.use(auditLog({ url: receiver.url, dispatcher, batch: false })));
    await request(app).get('/api/users/7/fail').expect(500);
    await request(app).get('/api/users/7').expect(200);
    await dispatcher.drain({ timeout: 5_000 });
    const records = receiver.requests.map((r) => r.json<AuditRecord>());
    const byPath = Object.fromEntries(records.map((r) => [r.path, r]));
    expect(byPath['/api/users/7/fail']).toMatchObject({ status: 500, route: '/api/users/:id/fail' });
    expect(byPath['/api/users/7']).toMatchObject({ status: 200, route: '/api/users/:id' });
  });
});

describe('express5: nested routers and res.after', () => {
  it('a hook registered before the route sees the full template of the route that threw', async () => {
    const dispatcher = testDispatcher();
    const seen: Array<string | undefined> = [];
    const app = nestedApp(express5, (a) => {
      a.use(afterward({ dispatcher }));
      a.use((_req, res, next) => {
        res.after((info: ResponseInfo) => void seen.push(info.route));
        next();
      });
    });
    await request(app).get('/api/users/7/fail').expect(500);
    await request(app).get('/api/users/7/async-fail').expect(500);
    await dispatcher.drain({ timeout: 5_000 });
    expect(seen).toEqual(['/api/users/:id/fail', '/api/users/:id/async-fail']);
  });
});
