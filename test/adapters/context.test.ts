/**
 * Issue 11 #5: parked work runs in the async context of the request that parked it, also at
 * saturation (more work than the hook runner or the dispatcher runs at once): hooks, `when`
 * predicates, lazy payloads, undici's request creation (where OpenTelemetry's undici
 * instrumentation reads the context), and Koa auditLog's `fields()`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterward } from '@afterward/express';
import { auditLog as koaAuditLog } from '@afterward/koa';
import express, { type NextFunction, type Request, type Response } from 'express';
import Koa from 'koa';
import { afterEach, describe, expect, it } from 'vitest';
import { testDispatcher, testReceiver } from './setup.js';

interface Store {
  id: string;
}
const als = new AsyncLocalStorage<Store>();
const servers: Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

async function listen(handler: RequestListener): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** An Express app whose every request runs in `als` with the id from the path. */
function contextApp(
  route: (id: string, res: Response) => void,
  dispatcher: ReturnType<typeof testDispatcher>,
) {
  const app = express();
  app.use((req: Request, _res: Response, next: NextFunction) => als.run({ id: req.path.slice(1) }, next));
  app.use(afterward({ dispatcher }));
  app.get('/:id', (req, res) => {
    route(String(req.params.id), res);
    res.status(200).end();
  });
  return app;
}

async function fire(base: string, count: number): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const response = await fetch(`${base}/r${i}`);
      await response.arrayBuffer();
    }),
  );
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

describe('issue 11 #5: parked work keeps the request context at saturation', () => {
  it('res.after hooks and their when predicates (40 hooks, hookConcurrency 2)', async () => {
    const dispatcher = testDispatcher({ hookConcurrency: 2 });
    const seen: Array<[string, string | undefined, string]> = [];
    const app = contextApp((id, res) => {
      res.after(
        async () => {
          seen.push([id, als.getStore()?.id, 'hook']);
          await sleep(5);
        },
        {
          when: () => {
            seen.push([id, als.getStore()?.id, 'when']);
            return true;
          },
        },
      );
    }, dispatcher);
    const base = await listen(app);
    await fire(base, 40);
    await dispatcher.drain({ timeout: 10_000 });
    expect(seen).toHaveLength(80);
    expect(seen.filter(([want, got]) => want !== got)).toEqual([]);
  });

  it('lazy payloads, when predicates and undici request creation (40 sends, concurrency 2)', async () => {
    const receiver = await testReceiver(undefined, { delayMs: 5 });
    const dispatcher = testDispatcher({ concurrency: 2, concurrencyPerOrigin: 2 });
    const created: Array<[string, string | undefined]> = [];
    const onCreate = (message: unknown): void => {
      const path = String((message as { request: { path: string } }).request.path);
      if (path.startsWith('/hook/')) created.push([path.slice('/hook/'.length), als.getStore()?.id]);
    };
    subscribe('undici:request:create', onCreate);
    try {
      const predicates: Array<[string, string | undefined]> = [];
      const app = contextApp((id, res) => {
        res.fireAndForget(`${receiver.url}/hook/${id}`, {
          when: () => {
            predicates.push([id, als.getStore()?.id]);
            return true;
          },
          json: () => ({ id, store: als.getStore()?.id }),
        });
      }, dispatcher);
      const base = await listen(app);
      await fire(base, 40);
      await dispatcher.drain({ timeout: 10_000 });
      expect(dispatcher.stats().delivered).toBe(40);
      expect(predicates.filter(([want, got]) => want !== got)).toEqual([]);
      const bodies = receiver.requests.map((r) => r.json<{ id: string; store: string }>());
      expect(bodies.filter((b) => b.id !== b.store)).toEqual([]);
      expect(created).toHaveLength(40);
      expect(created.filter(([want, got]) => want !== got)).toEqual([]);
    } finally {
      unsubscribe('undici:request:create', onCreate);
    }
  });

  it('retries start in the context of the request that sent', async () => {
    const receiver = await testReceiver();
    let calls = 0;
    receiver.respondWith((_req, res) => {
      res.statusCode = calls++ % 2 === 0 ? 503 : 204;
      res.end();
    });
    const dispatcher = testDispatcher({ concurrency: 1, breaker: false });
    const created: Array<[string, string | undefined]> = [];
    const onCreate = (message: unknown): void => {
      const path = String((message as { request: { path: string } }).request.path);
      if (path.startsWith('/retry/')) created.push([path.slice('/retry/'.length), als.getStore()?.id]);
    };
    subscribe('undici:request:create', onCreate);
    try {
      const app = contextApp((id, res) => void res.fireAndForget(`${receiver.url}/retry/${id}`), dispatcher);
      const base = await listen(app);
      await fire(base, 10);
      await dispatcher.drain({ timeout: 10_000 });
      expect(created.length).toBeGreaterThan(10);
      expect(created.filter(([want, got]) => want !== got)).toEqual([]);
    } finally {
      unsubscribe('undici:request:create', onCreate);
    }
  });

  it("koa auditLog's fields() sees the request's context", async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = new Koa();
    app.use((ctx, next) => als.run({ id: ctx.path.slice(1) }, next));
    app.use(
      koaAuditLog({
        url: receiver.url,
        dispatcher,
        batch: false,
        fields: (ctx) => ({ want: ctx.path.slice(1), got: als.getStore()?.id ?? null }),
      }),
    );
    app.use((ctx) => {
      ctx.body = 'ok';
    });
    const callback = app.callback();
    const base = await listen((req, res) => void callback(req, res));
    await fire(base, 20);
    await dispatcher.drain({ timeout: 10_000 });
    const records = receiver.requests.map((r) => r.json<{ want: string; got: string | null }>());
    expect(records).toHaveLength(20);
    expect(records.filter((r) => r.want !== r.got)).toEqual([]);
  });
});
