/**
 * The same small app on Express 5, Express 4, Koa 3 and Koa 2, with `auditLog()` installed first,
 * so the audit suite is written once and run as a matrix.
 *
 * Routes: GET /api/users/:id (200, sets a cookie; mounted under /api), GET /fail (throws a 500
 * into the framework's error handling), GET /stream (headers and a first chunk, never ends),
 * POST /login (parses a JSON body, 204).
 */
import { PassThrough } from 'node:stream';
import Router from '@koa/router';
import type { AuditLogOptions, ResponseInfo } from '@afterward/core';
import { auditLog as expressAuditLog } from '@afterward/express';
import { auditLog as koaAuditLog } from '@afterward/koa';
import express5 from 'express';
import type { NextFunction, Request, Response } from 'express';
import express4 from 'express4';
import Koa3 from 'koa';
import type { Context, Next } from 'koa';
import Koa2 from 'koa2';
import type { StartedApp } from '../adapters/harness.js';
import { listen, originOf, ServerTracker } from '../support/index.js';

/** What `fields` gets, whatever the framework: the Express request and the Koa context both have `get`. */
export interface Subject {
  get(name: string): string | undefined;
}

/** auditLog() options with `fields` typed for both frameworks. */
export type KitAuditOptions = Omit<AuditLogOptions, 'fields'> & {
  fields?: (subject: Subject, info: ResponseInfo) => Record<string, unknown> | undefined;
};

export interface AuditKit {
  name: 'express5' | 'express4' | 'koa3' | 'koa2';
  start(options: KitAuditOptions): Promise<StartedApp>;
}

async function serve(server: StartedApp['server'], errors: unknown[]): Promise<StartedApp> {
  const tracker = new ServerTracker(server);
  const port = await listen(server);
  return { url: originOf('127.0.0.1', port), server, errors, close: () => tracker.close() };
}

function expressKit(name: 'express5' | 'express4', express: typeof express5): AuditKit {
  return {
    name,
    async start(options) {
      const app = express();
      const errors: unknown[] = [];
      app.use(expressAuditLog(options as AuditLogOptions<Request>));
      app.use(express.json());
      const api = express.Router();
      api.get('/users/:id', (req: Request, res: Response) => {
        res.cookie('sid', 'session-cookie-value');
        res.json({ id: req.params.id });
      });
      app.use('/api', api);
      app.get('/fail', () => {
        throw Object.assign(new Error('boom'), { status: 500 });
      });
      app.get('/stream', (_req: Request, res: Response) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('part');
      });
      app.post('/login', (_req: Request, res: Response) => void res.status(204).end());
      app.use((error: Error & { status?: number }, _req: Request, res: Response, next: NextFunction) => {
        errors.push(error);
        if (res.headersSent) return next(error);
        res.status(error.status ?? 500).json({ error: error.message });
      });
      return serve(app.listen(0, '127.0.0.1'), errors);
    },
  };
}

function koaKit(name: 'koa3' | 'koa2', Koa: typeof Koa3): AuditKit {
  return {
    name,
    async start(options) {
      const app = new Koa();
      const errors: unknown[] = [];
      app.on('error', (error: unknown) => errors.push(error));
      app.use(koaAuditLog(options as AuditLogOptions<Context>));
      // A JSON body parser in a few lines, leaving the body where @koa/bodyparser does.
      app.use(async (ctx: Context, next: Next) => {
        if (ctx.is('application/json')) {
          const chunks: Buffer[] = [];
          for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
          (ctx.request as { body?: unknown }).body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        }
        await next();
      });
      const api = new Router({ prefix: '/api' });
      api.get('/users/:id', (ctx) => {
        ctx.cookies.set('sid', 'session-cookie-value');
        ctx.body = { id: ctx.params.id };
      });
      const root = new Router();
      root.get('/fail', (ctx) => ctx.throw(500, 'boom'));
      root.get('/stream', (ctx) => {
        const body = new PassThrough();
        ctx.status = 200;
        ctx.type = 'text/plain';
        ctx.body = body;
        body.write('part');
      });
      root.post('/login', (ctx) => {
        ctx.status = 204;
      });
      app.use(api.routes());
      app.use(root.routes());
      return serve(app.listen(0, '127.0.0.1'), errors);
    },
  };
}

export const AUDIT_KITS: AuditKit[] = [
  expressKit('express5', express5),
  expressKit('express4', express4),
  koaKit('koa3', Koa3),
  koaKit('koa2', Koa2),
];
