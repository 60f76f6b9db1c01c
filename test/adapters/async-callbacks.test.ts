/**
 * Issue 11 #7: async callbacks are awaited (within the hook timeout), never turned into a wrong
 * body or a silent skip: `json: async (info) => …`, `when: async …` (sends and hooks), and the
 * audit log's `fields: async …` and `when: async …`.
 */
import { HookTimeoutError, InvalidArgumentError } from '@afterward/core';
import type { DeliveryHandle } from '@afterward/core';
import { afterward, auditLog } from '@afterward/express';
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { testDispatcher, testReceiver } from './setup.js';

const tick = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

describe('issue 11 #7: async callbacks', () => {
  it('json: async (info) => … sends the resolved payload, and drain() waits for it', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    let handle: DeliveryHandle | undefined;
    const app = express();
    app.use(afterward({ dispatcher }));
    app.post('/orders', (_req, res) => {
      handle = res.fireAndForget(receiver.url, {
        json: async (info: { statusCode: number }) => {
          await tick(30);
          return { status: info.statusCode };
        },
      });
      res.status(201).end();
    });
    await request(app).post('/orders').expect(201);
    const drained = await dispatcher.drain({ timeout: 5_000 });
    expect(drained.drained).toBe(true);
    expect((await handle?.done)?.state).toBe('delivered');
    expect(receiver.requests.map((r) => r.json())).toEqual([{ status: 201 }]);
  });

  it('json: an async function that rejects fails the handle with InvalidArgumentError; nothing is sent', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    let handle: DeliveryHandle | undefined;
    const app = express();
    app.use(afterward({ dispatcher }));
    app.get('/', (_req, res) => {
      handle = res.fireAndForget(receiver.url, {
        json: () => Promise.reject(new Error('db down')),
      });
      res.end();
    });
    await request(app).get('/').expect(200);
    const result = await handle?.done;
    expect(result?.state).toBe('failed');
    expect(result?.error).toBeInstanceOf(InvalidArgumentError);
    expect(result?.error?.message).toMatch(/json function rejected: db down/);
    expect(receiver.requests).toHaveLength(0);
  });

  it('json: an async function that never settles fails with HookTimeoutError at hookTimeout', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher({ hookTimeout: 100 });
    let handle: DeliveryHandle | undefined;
    const app = express();
    app.use(afterward({ dispatcher }));
    app.get('/', (_req, res) => {
      handle = res.fireAndForget(receiver.url, { json: () => new Promise(() => undefined) });
      res.end();
    });
    await request(app).get('/').expect(200);
    const result = await handle?.done;
    expect(result?.state).toBe('failed');
    expect(result?.error).toBeInstanceOf(HookTimeoutError);
    expect(receiver.requests).toHaveLength(0);
  });

  it('when: async predicates decide sends and hooks; a rejecting one cancels', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const handles: DeliveryHandle[] = [];
    const hooks: string[] = [];
    const app = express();
    app.use(afterward({ dispatcher }));
    app.get('/', (_req, res) => {
      handles.push(
        res.fireAndForget(`${receiver.url}/yes`, { when: async () => (await tick(10), true) }),
        res.fireAndForget(`${receiver.url}/no`, { when: () => Promise.resolve(false) }),
        res.fireAndForget(`${receiver.url}/throws`, { when: () => Promise.reject(new Error('nope')) }),
      );
      res.after(() => void hooks.push('yes'), { when: () => Promise.resolve(true) });
      res.after(() => void hooks.push('no'), { when: () => Promise.resolve(false) });
      res.end();
    });
    await request(app).get('/').expect(200);
    const [yes, no, throws] = await Promise.all(handles.map((h) => h.done));
    await dispatcher.drain({ timeout: 5_000 });
    expect(yes?.state).toBe('delivered');
    expect(no?.state).toBe('cancelled');
    expect(throws?.state).toBe('cancelled');
    expect(String(throws?.error?.message)).toMatch(/when predicate threw: nope/);
    expect(hooks).toEqual(['yes']);
    expect(receiver.requests.map((r) => r.url)).toEqual(['/yes']);
  });

  it('audit fields: async … are awaited into the record; when: async … decides', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = express();
    app.use(
      auditLog({
        url: receiver.url,
        dispatcher,
        batch: false,
        when: (info) => Promise.resolve(info.statusCode !== 404),
        fields: async (req) => {
          await tick(20);
          return { tenant: req.get('x-tenant') };
        },
      }),
    );
    app.get('/found', (_req, res) => void res.end());
    await request(app).get('/found').set('x-tenant', 'acme').expect(200);
    await request(app).get('/missing').expect(404);
    const drained = await dispatcher.drain({ timeout: 5_000 });
    expect(drained.drained).toBe(true);
    const records = receiver.requests.map((r) => r.json<{ path: string; tenant?: string }>());
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ path: '/found', tenant: 'acme' });
  });

  it('json: a promise (not a function) is refused at the call, by send() and fireAndForget()', async () => {
    const dispatcher = testDispatcher();
    expect(() => dispatcher.send('http://127.0.0.1:9/', { json: Promise.resolve({ a: 1 }) })).toThrow(
      /json is a promise/,
    );
    let thrown: unknown;
    const app = express();
    app.use(afterward({ dispatcher }));
    app.get('/', (_req, res) => {
      try {
        res.fireAndForget('http://127.0.0.1:9/', { json: Promise.resolve({ a: 1 }) });
      } catch (error) {
        thrown = error;
      }
      res.end();
    });
    await request(app).get('/').expect(200);
    expect(thrown).toBeInstanceOf(InvalidArgumentError);
    expect(dispatcher.stats()).toMatchObject({ queued: 0, delivered: 0, failed: 0 });
  });
});
