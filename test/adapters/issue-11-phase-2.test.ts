/**
 * Issue 11 items whose fix lives in files being rewritten (dispatcher.ts, after-response.ts,
 * adapter-options.ts, batch.ts, the adapters' afterward.ts). Each is written as `it.fails`: it
 * documents today's defect, and turns red the moment the fix lands, so whoever lands it turns
 * `it.fails` into `it`. Nothing here may stay `it.fails` after phase 2.
 */
import { createBatcher, createDispatcher, InvalidArgumentError } from '@afterward/core';
import type { Dispatcher, DispatcherOptions, ResponseInfo } from '@afterward/core';
import { afterward as expressAfterward } from '@afterward/express';
import { afterward as koaAfterward } from '@afterward/koa';
import type { NextFunction, Request, Response } from 'express';
import express4 from 'express4';
import Koa from 'koa';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { testDispatcher, testReceiver } from './setup.js';

const TOO_LONG = 2 ** 31;

describe('issue 11, phase 2 (pending fixes in rewritten files)', () => {
  it('#12 closeTimeout and hookTimeout above 2^31-1 ms are refused (dispatcher.ts)', () => {
    expect(() => createDispatcher({ closeTimeout: TOO_LONG })).toThrow(InvalidArgumentError);
    expect(() => createDispatcher({ hookTimeout: TOO_LONG })).toThrow(InvalidArgumentError);
  });

  it('#12 close({ timeout }) above 2^31-1 ms is refused (dispatcher.ts)', async () => {
    const dispatcher = createDispatcher();
    try {
      expect(() => dispatcher.close({ timeout: TOO_LONG })).toThrow(InvalidArgumentError);
    } finally {
      await dispatcher.close({ timeout: 0 });
    }
  });

  it('#12 res.after(fn, { timeout }) above 2^31-1 ms throws (after-response.ts)', async () => {
    const dispatcher = testDispatcher();
    const app = new Koa();
    let thrown: unknown;
    app.use(koaAfterward({ dispatcher }));
    app.use((ctx) => {
      try {
        ctx.after(() => undefined, { timeout: TOO_LONG });
      } catch (error) {
        thrown = error;
      }
      ctx.status = 204;
    });
    await request(app.callback()).get('/').expect(204);
    expect(thrown).toBeInstanceOf(InvalidArgumentError);
  });

  it('res.after(fn, { timout: 5 }) throws for the unknown option (after-response.ts)', async () => {
    const dispatcher = testDispatcher();
    const app = new Koa();
    let thrown: unknown;
    app.use(koaAfterward({ dispatcher }));
    app.use((ctx) => {
      try {
        ctx.after(() => undefined, { timout: 5 } as never);
      } catch (error) {
        thrown = error;
      }
      ctx.status = 204;
    });
    await request(app.callback()).get('/').expect(204);
    expect(String(thrown)).toMatch(/unknown option "timout"/);
  });

  it('app.use(afterward) without calling it says what to write (adapter-options.ts)', async () => {
    const app = express4();
    app.use(expressAfterward as unknown as (req: Request, res: Response, next: NextFunction) => void);
    app.get('/', (_req, res) => void res.end());
    const response = await request(app).get('/');
    expect(response.text).toContain('app.use(afterward())');
  });

  it('a single payload above maxQueuedBytes says it is too large (dispatcher.ts)', async () => {
    const dispatcher = createDispatcher({ maxQueuedBytes: 10, overflow: 'reject' });
    try {
      expect(() => dispatcher.send('http://127.0.0.1:9/', { body: 'x'.repeat(11) })).toThrow(/too large/);
    } finally {
      await dispatcher.close({ timeout: 0 });
    }
  });

  it('#2 logUrls: "full" is the opt-in for full URLs in log lines (dispatcher.ts)', async () => {
    const lines: object[] = [];
    const options = {
      retry: false,
      logUrls: 'full',
      logger: { warn: (obj: object) => void lines.push(obj), error: () => undefined },
    } as unknown as DispatcherOptions;
    const dispatcher: Dispatcher = createDispatcher(options);
    try {
      await dispatcher.send('http://127.0.0.1:9/hook?token=t').done;
      expect(lines[0]).toMatchObject({ url: 'http://127.0.0.1:9/hook?token=t' });
    } finally {
      await dispatcher.close({ timeout: 0 });
    }
  });

  it('#2 a full batcher names only the origin in its DroppedError (batch.ts)', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const batcher = createBatcher(dispatcher, {
      url: `${receiver.url}/PATHSECRET?token=QUERYSECRET`,
      maxPending: 1,
      maxItems: 100,
      maxWaitMs: 60_000,
    });
    batcher.add({ n: 1 });
    const dropped = batcher.add({ n: 2 });
    const result = await dropped.done;
    expect(result.state).toBe('dropped');
    expect(result.error?.message).not.toMatch(/PATHSECRET|QUERYSECRET/);
  });

  it('#14 express 4 with afterward() alone keeps the full template for a nested router error (afterward.ts)', async () => {
    const dispatcher = testDispatcher();
    const seen: Array<string | undefined> = [];
    const app = express4();
    app.use(expressAfterward({ dispatcher }));
    app.use((_req: Request, res: Response, next: NextFunction) => {
      res.after((info: ResponseInfo) => void seen.push(info.route));
      next();
    });
    const inner = express4.Router();
    inner.get('/:id/fail', () => {
      throw new Error('inside');
    });
    const outer = express4.Router();
    outer.use('/users', inner);
    app.use('/api', outer);
    app.use((_error: Error, _req: Request, res: Response, _next: NextFunction) => void res.status(500).end());
    await request(app).get('/api/users/7/fail').expect(500);
    await dispatcher.drain({ timeout: 5_000 });
    expect(seen).toEqual(['/api/users/:id/fail']);
  });
});
