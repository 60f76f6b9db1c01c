/**
 * One suite, four frameworks: the same routes built on Express 5, Express 4, Koa 3 and Koa 2 with
 * the adapter under test, so shared behaviour is written once and run as a matrix.
 *
 * @example
 * describe.each(KITS)('$name', (kit) => {
 *   it('works', async () => {
 *     const app = await kit.start({ dispatcher }, [{ path: '/', handler: (h) => h.send(200, {}) }]);
 *     await request(app.url).get('/');
 *     await app.close();
 *   });
 * });
 */
import { request as httpRequest } from 'node:http';
import type { Server } from 'node:http';
import { PassThrough } from 'node:stream';
import Router from '@koa/router';
import type { After, AfterwardOptions, FireAndForget } from '@afterward/core';
import { afterward as expressAfterward } from '@afterward/express';
import { afterward as koaAfterward } from '@afterward/koa';
import express5 from 'express';
import type { NextFunction, Request, Response } from 'express';
import express4 from 'express4';
import Koa3 from 'koa';
import Koa2 from 'koa2';
import { listen, originOf, ServerTracker } from '../support/index.js';

/** What a route handler gets, whatever the framework. */
export interface Handle {
  fireAndForget: FireAndForget;
  after: After;
  /** Responds with `status` and a JSON body. */
  send(status: number, body: unknown): void;
  /** Throws an error with this status into the framework's own error handling. */
  fail(status: number, message: string): never;
  /** Sends headers and a first chunk, then leaves the response open (until the client goes away). */
  sendPart(): void;
}

export interface Route {
  method?: 'get' | 'post';
  path: string;
  /** Mount the route on a router under this path (`/api`), to see the full route pattern. */
  prefix?: string;
  handler: (h: Handle) => unknown;
}

export interface StartedApp {
  url: string;
  server: Server;
  /** Errors the framework's error handling saw (Express error middleware, Koa's 'error' event). */
  errors: unknown[];
  close(): Promise<void>;
}

export interface Kit {
  name: 'express5' | 'express4' | 'koa3' | 'koa2';
  framework: 'express' | 'koa';
  /** Starts an app with `afterward(options)` installed (unless `install` is false) and `routes`. */
  start(options: AfterwardOptions, routes: Route[], install?: boolean): Promise<StartedApp>;
}

async function serve(server: Server, errors: unknown[]): Promise<StartedApp> {
  const tracker = new ServerTracker(server);
  const port = await listen(server);
  return { url: originOf('127.0.0.1', port), server, errors, close: () => tracker.close() };
}

function expressKit(name: 'express5' | 'express4', express: typeof express5): Kit {
  return {
    name,
    framework: 'express',
    async start(options, routes, install = true) {
      const app = express();
      const errors: unknown[] = [];
      if (install) app.use(expressAfterward(options));
      for (const route of routes) {
        const target = route.prefix === undefined ? app : express.Router();
        target[route.method ?? 'get'](route.path, (_req: Request, res: Response, next: NextFunction) => {
          const h: Handle = {
            fireAndForget: res.fireAndForget.bind(res) as FireAndForget,
            after: (fn, opts) => res.after(fn, opts),
            send: (status, body) => void res.status(status).json(body),
            fail: (status, message) => {
              throw Object.assign(new Error(message), { status });
            },
            sendPart: () => {
              res.writeHead(200, { 'content-type': 'text/plain' });
              res.write('part');
            },
          };
          // Express 4 does not catch rejections of async handlers; the kit forwards them on both.
          Promise.resolve()
            .then(() => route.handler(h))
            .catch(next);
        });
        if (route.prefix !== undefined) app.use(route.prefix, target);
      }
      app.use((error: Error & { status?: number }, _req: Request, res: Response, next: NextFunction) => {
        errors.push(error);
        if (res.headersSent) return next(error);
        res.status(error.status ?? 500).json({ error: error.message });
      });
      return serve(app.listen(0, '127.0.0.1'), errors);
    },
  };
}

function koaKit(name: 'koa3' | 'koa2', Koa: typeof Koa3): Kit {
  return {
    name,
    framework: 'koa',
    async start(options, routes, install = true) {
      const app = new Koa();
      const errors: unknown[] = [];
      app.on('error', (error: unknown) => errors.push(error));
      if (install) app.use(koaAfterward(options));
      for (const route of routes) {
        const router = new Router(route.prefix === undefined ? {} : { prefix: route.prefix });
        router[route.method ?? 'get'](route.path, async (ctx) => {
          const h: Handle = {
            fireAndForget: ctx.fireAndForget.bind(ctx),
            after: (fn, opts) => ctx.after(fn, opts),
            send: (status, body) => {
              ctx.status = status;
              ctx.body = body;
            },
            fail: (status, message) => ctx.throw(status, message),
            sendPart: () => {
              const body = new PassThrough();
              ctx.status = 200;
              ctx.type = 'text/plain';
              ctx.body = body;
              body.write('part');
            },
          };
          await route.handler(h);
        });
        app.use(router.routes());
      }
      return serve(app.listen(0, '127.0.0.1'), errors);
    },
  };
}

export const KITS: Kit[] = [
  expressKit('express5', express5),
  expressKit('express4', express4),
  koaKit('koa3', Koa3),
  koaKit('koa2', Koa2),
];

/**
 * GETs `url` with node:http, waits for the first body chunk, then destroys the socket: a client
 * that goes away mid-response. Resolves once the socket is closed.
 */
export function abortMidResponse(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, (res) => {
      res.once('data', () => {
        req.once('close', () => resolve());
        req.destroy();
      });
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNRESET') reject(error);
    });
    req.end();
  });
}

/** GETs `url` and resolves with the status and performance.now() once the whole body arrived. */
export function timedGet(
  url: string,
): Promise<{ status: number; body: string; endedAt: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const endedAt = performance.now();
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          endedAt,
          ms: endedAt - started,
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
