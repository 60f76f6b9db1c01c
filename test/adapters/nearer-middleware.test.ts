/**
 * Issue 11 #1: a second `afterward({ dispatcher })` (a router's own, guarded) wins for the calls
 * made after it, on both frameworks; work parked before it stays with the first. Also the
 * `app.use(afterward)` mistake (not called), on both frameworks.
 */
import { createServer } from 'node:net';
import { BlockedAddressError, InvalidArgumentError } from '@afterward/core';
import type { DeliveryHandle } from '@afterward/core';
import { afterward as expressAfterward } from '@afterward/express';
import { afterward as koaAfterward } from '@afterward/koa';
import Router from '@koa/router';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import Koa from 'koa';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { abortMidResponse } from './harness.js';
import { testDispatcher, testReceiver } from './setup.js';

/** A TCP listener on 127.0.0.1 that counts connections and answers 204. */
async function countingListener(): Promise<{ url: string; connections: () => number; close: () => void }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.once('data', () => socket.end('HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n'));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/hook`,
    connections: () => connections,
    close: () => server.close(),
  };
}

let listener: Awaited<ReturnType<typeof countingListener>> | undefined;
afterEach(() => listener?.close());

describe('issue 11 #1: the nearer afterward() middleware wins', () => {
  it('express: app-wide unguarded + router guarded: a route in the router is blocked, 0 connections', async () => {
    listener = await countingListener();
    const open = testDispatcher({ retry: false });
    const guarded = testDispatcher({ retry: false, guard: 'public-only' });
    const handles: DeliveryHandle[] = [];
    const app = express();
    app.use(expressAfterward({ dispatcher: open }));
    app.use((_req: Request, res: Response, next: NextFunction) => {
      // Parked before the router's middleware: stays with the app-wide dispatcher.
      handles.push(res.fireAndForget(`${listener?.url}?before`, { json: { n: 0 } }));
      next();
    });
    const router = express.Router();
    router.use(expressAfterward({ dispatcher: guarded }));
    router.post('/hooks', (_req, res) => {
      handles.push(res.fireAndForget(listener?.url as string, { json: { n: 1 } }));
      res.status(202).end();
    });
    app.use('/customers', router);

    await request(app).post('/customers/hooks').expect(202);
    const [before, inside] = await Promise.all(handles.map((h) => h.done));
    expect(inside?.state).toBe('failed');
    expect(inside?.error).toBeInstanceOf(BlockedAddressError);
    expect(before?.state).toBe('delivered');
    // The one connection is the parked-before notification's; the guarded one never connected.
    expect(listener.connections()).toBe(1);
    expect(guarded.stats().failed).toBe(1);
    expect(open.stats().delivered).toBe(1);
  });

  it('express: the guarded router alone: 0 connections', async () => {
    listener = await countingListener();
    const open = testDispatcher({ retry: false });
    const guarded = testDispatcher({ retry: false, guard: 'public-only' });
    let handle: DeliveryHandle | undefined;
    const app = express();
    app.use(expressAfterward({ dispatcher: open }));
    const router = express.Router();
    router.use(expressAfterward({ dispatcher: guarded }));
    router.post('/hooks', (_req, res) => {
      handle = res.fireAndForget(listener?.url as string, { json: {} });
      res.status(202).end();
    });
    app.use('/customers', router);
    await request(app).post('/customers/hooks').expect(202);
    const result = await handle?.done;
    expect(result?.error).toBeInstanceOf(BlockedAddressError);
    expect(listener.connections()).toBe(0);
    expect(open.stats()).toMatchObject({ delivered: 0, failed: 0, queued: 0 });
  });

  it('koa: app-wide unguarded + router guarded: a route in the router is blocked, 0 connections', async () => {
    listener = await countingListener();
    const open = testDispatcher({ retry: false });
    const guarded = testDispatcher({ retry: false, guard: 'public-only' });
    let handle: DeliveryHandle | undefined;
    const app = new Koa();
    app.use(koaAfterward({ dispatcher: open }));
    const router = new Router({ prefix: '/customers' });
    router.use(koaAfterward({ dispatcher: guarded }));
    router.post('/hooks', (ctx) => {
      handle = ctx.fireAndForget(listener?.url as string, { json: {} });
      ctx.status = 202;
    });
    app.use(router.routes());
    await request(app.callback()).post('/customers/hooks').expect(202);
    const result = await handle?.done;
    expect(result?.state).toBe('failed');
    expect(result?.error).toBeInstanceOf(BlockedAddressError);
    expect(listener.connections()).toBe(0);
    expect(open.stats()).toMatchObject({ delivered: 0, failed: 0 });
  });

  it("express: work parked before a nearer middleware keeps the first's onClientAbort", async () => {
    const receiver = await testReceiver();
    const first = testDispatcher({ retry: false });
    const nearer = testDispatcher({ retry: false });
    const handles: DeliveryHandle[] = [];
    const app = express();
    app.use(expressAfterward({ dispatcher: first, onClientAbort: 'send' }));
    app.use((_req: Request, res: Response, next: NextFunction) => {
      handles.push(res.fireAndForget(receiver.url, { json: { n: 'before' } }));
      next();
    });
    const router = express.Router();
    router.use(expressAfterward({ dispatcher: nearer, onClientAbort: 'cancel' }));
    router.get('/stream', (_req, res) => {
      handles.push(res.fireAndForget(receiver.url, { json: { n: 'inside' } }));
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part');
    });
    app.use('/customers', router);
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    try {
      const { port } = server.address() as { port: number };
      await abortMidResponse(`http://127.0.0.1:${port}/customers/stream`);
      const [before, inside] = await Promise.all(handles.map((h) => h.done));
      expect(before?.state).toBe('delivered');
      expect(inside?.state).toBe('cancelled');
      expect(receiver.requests.map((r) => r.json())).toEqual([{ n: 'before' }]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('the same middleware installed twice keeps one slot (no second release)', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const middleware = expressAfterward({ dispatcher });
    const app = express();
    app.use(middleware);
    app.use((_req: Request, res: Response, next: NextFunction) => {
      res.fireAndForget(receiver.url, { json: { n: 1 } });
      next();
    });
    app.use(middleware);
    app.get('/', (_req, res) => {
      res.fireAndForget(receiver.url, { json: { n: 2 } });
      res.end();
    });
    await request(app).get('/').expect(200);
    await dispatcher.drain({ timeout: 5_000 });
    expect(receiver.requests.map((r) => r.json())).toEqual([{ n: 1 }, { n: 2 }]);
  });
});

describe('app.use(afterward) without calling it', () => {
  it('express answers with what to write', async () => {
    const app = express();
    app.use(expressAfterward as unknown as (req: Request, res: Response, next: NextFunction) => void);
    app.get('/', (_req, res) => void res.end());
    const response = await request(app).get('/');
    expect(response.status).toBe(500);
    expect(response.text).toContain('app.use(afterward())');
  });

  it('koa raises InvalidArgumentError saying what to write', async () => {
    const app = new Koa();
    const errors: unknown[] = [];
    app.silent = true;
    app.on('error', (error: unknown) => void errors.push(error));
    app.use(koaAfterward as unknown as Koa.Middleware);
    await request(app.callback()).get('/').expect(500);
    expect(errors[0]).toBeInstanceOf(InvalidArgumentError);
    expect(String(errors[0])).toContain('app.use(afterward())');
  });
});
