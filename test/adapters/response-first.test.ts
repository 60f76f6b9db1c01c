import type { DeliveryHandle, ResponseInfo } from '@afterward/core';
import { drain } from '@afterward/core/testing';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../support/index.js';
import { KITS, timedGet } from './harness.js';
import { testDispatcher, testReceiver, track } from './setup.js';

describe.each(KITS)('$name: parked work leaves only after the response', (kit) => {
  it('the client has the whole body before the receiver sees the notification', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const body = 'x'.repeat(256 * 1024);
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/',
          handler: (h) => {
            h.fireAndForget(`${receiver.url}/hook`, { json: { hello: 'world' } });
            h.send(200, { body });
          },
        },
      ]),
    );

    const response = await timedGet(`${app.url}/`);
    const [received] = await receiver.waitFor(1);

    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ body });
    expect(received?.json()).toEqual({ hello: 'world' });
    expect(received?.receivedAt).toBeGreaterThan(response.endedAt);
  });

  it('a receiver that takes 2 s does not change the response time', async () => {
    const receiver = await testReceiver(undefined, { delayMs: 2_000 });
    const dispatcher = testDispatcher();
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/',
          handler: (h) => {
            h.fireAndForget(receiver.url, { json: { slow: true } });
            h.send(200, { ok: true });
          },
        },
      ]),
    );

    const response = await timedGet(`${app.url}/`);
    expect(response.status).toBe(200);
    expect(response.ms).toBeLessThan(1_000);

    await receiver.waitFor(1);
    expect(dispatcher.stats().delivered).toBe(0);
    await drain(dispatcher, 10_000);
    expect(dispatcher.stats().delivered).toBe(1);
  });

  it('sends several notifications and runs several hooks per request', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const hookRuns: string[] = [];
    const handles: DeliveryHandle[] = [];
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/',
          handler: (h) => {
            for (const n of [1, 2, 3])
              handles.push(h.fireAndForget(`${receiver.url}/n${n}`, { json: { n } }));
            h.after(() => void hookRuns.push('a'));
            h.after(async () => {
              await Promise.resolve();
              hookRuns.push('b');
            });
            expect(handles.map((handle) => handle.state)).toEqual(['pending', 'pending', 'pending']);
            h.send(200, { ok: true });
          },
        },
      ]),
    );

    await request(app.url).get('/').expect(200);
    await drain(dispatcher);

    expect(receiver.requests.map((r) => r.url).sort()).toEqual(['/n1', '/n2', '/n3']);
    expect(handles.map((handle) => handle.state)).toEqual(['delivered', 'delivered', 'delivered']);
    expect(hookRuns.sort()).toEqual(['a', 'b']);
  });

  it('a lazy payload and hooks see the final status, duration and route', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    let hookInfo: ResponseInfo | undefined;
    const app = track(
      await kit.start({ dispatcher }, [
        {
          method: 'post',
          prefix: '/api',
          path: '/orders/:id',
          handler: async (h) => {
            h.fireAndForget(receiver.url, {
              json: (info: ResponseInfo) => ({
                outcome: info.outcome,
                status: info.statusCode,
                durationMs: info.durationMs,
                method: info.method,
                url: info.url,
                route: info.route,
              }),
            });
            h.after((info) => {
              hookInfo = info;
            });
            await new Promise((resolve) => setTimeout(resolve, 30));
            h.send(201, { created: true });
          },
        },
      ]),
    );

    await request(app.url).post('/api/orders/7?x=1').expect(201);
    const [received] = await receiver.waitFor(1);
    const payload = received?.json<{ durationMs: number }>();

    expect(payload).toMatchObject({
      outcome: 'finished',
      status: 201,
      method: 'POST',
      url: '/api/orders/7?x=1',
      route: '/api/orders/:id',
    });
    expect(payload?.durationMs).toBeGreaterThanOrEqual(25);
    await waitUntil(() => hookInfo !== undefined, { message: 'the hook ran' });
    expect(hookInfo).toMatchObject({ outcome: 'finished', statusCode: 201, route: '/api/orders/:id' });
    expect(hookInfo?.req).toBeDefined();
    expect(hookInfo?.res).toBeDefined();
  });

  it('releases work added after the response finished at once, describing the finished response', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    let late: DeliveryHandle | undefined;
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/',
          handler: (h) => {
            h.send(204, null);
            // Once the response is flushed, from outside the request's own flow.
            setTimeout(() => {
              late = h.fireAndForget(receiver.url, {
                json: (info: ResponseInfo) => ({ outcome: info.outcome, status: info.statusCode }),
              });
            }, 50);
          },
        },
      ]),
    );

    await request(app.url).get('/').expect(204);
    const [received] = await receiver.waitFor(1);
    expect(received?.json()).toEqual({ outcome: 'finished', status: 204 });
    expect(late?.state).toMatch(/sending|delivered/);
  });
});
