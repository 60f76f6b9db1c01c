import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createAfterResponse } from '../src/adapter.js';
import { createDispatcher, NetworkError, TimeoutError } from '../src/index.js';
import { createRecordingTransport, createTestDispatcher, drain } from '../src/testing.js';
import { recordingLogger, guardUnhandledRejections } from '../../../test/support/index.js';

guardUnhandledRejections();

describe('@afterward/core/testing', () => {
  it('records every outbound notification, so a test asserts without a network', async () => {
    const transport = createRecordingTransport();
    const dispatcher = createDispatcher({ transport });
    dispatcher.send('https://hooks.example.com/orders', {
      json: { type: 'order.created', id: 7 },
      headers: { 'x-tenant': ['t1', 't2'] },
      query: { v: 2 },
    });
    dispatcher.send('https://hooks.example.com/ping', { method: 'GET', confirm: 'sent' });
    await drain(dispatcher);

    expect(transport.requests).toHaveLength(2);
    const [order, ping] = transport.requests;
    expect(order).toMatchObject({
      method: 'POST',
      url: 'https://hooks.example.com/orders?v=2',
      confirm: 'response',
      attempt: 1,
    });
    expect(order?.json()).toEqual({ type: 'order.created', id: 7 });
    expect(order?.text()).toBe('{"type":"order.created","id":7}');
    expect(order?.headers['x-tenant']).toEqual(['t1', 't2']);
    expect(order?.headers['content-type']).toBe('application/json');
    expect(ping).toMatchObject({ method: 'GET', confirm: 'sent', body: null });
    expect(ping?.text()).toBe('');
    expect(dispatcher.stats()).toMatchObject({ delivered: 1, sent: 1 });
    transport.clear();
    expect(transport.requests).toHaveLength(0);
  });

  it('answers as told: a status, a response with headers and body, an error, or per request', async () => {
    const { dispatcher, transport } = createTestDispatcher({
      retry: { attempts: 2, minDelay: 1, maxDelay: 2 },
      logger: recordingLogger(),
    });
    transport.respondWith({ status: 202, headers: { 'x-id': 'r1' }, body: 'accepted' });
    const full = await dispatcher.send('https://a.example/', { keepBody: true }).done;
    expect(full.response).toMatchObject({ status: 202, headers: { 'x-id': 'r1' } });
    expect(full.response?.body?.toString()).toBe('accepted');

    transport.respondWith(new TimeoutError('headers', 10));
    const timedOut = await dispatcher.send('https://a.example/').done;
    expect(timedOut).toMatchObject({ state: 'failed', attempts: 2 });
    expect(timedOut.error).toBeInstanceOf(TimeoutError);

    transport.respondWith(new Error('ECONNRESET'));
    expect((await dispatcher.send('https://a.example/').done).error).toBeInstanceOf(NetworkError);

    transport.clear();
    transport.respondWith((request) => (request.attempt === 1 ? 503 : 200));
    const retried = await dispatcher.send('https://a.example/').done;
    expect(retried).toMatchObject({ state: 'delivered', attempts: 2 });
    expect(transport.requests.map((r) => r.attempt)).toEqual([1, 2]);
    expect(transport.requests[0]?.id).toBe(transport.requests[1]?.id);
  });

  it('drain() waits for after-response work deterministically, and rejects instead of hanging', async () => {
    const { dispatcher, transport } = createTestDispatcher();
    let hookRan = false;
    const server = createServer((_req, res) => {
      const work = createAfterResponse(res, {
        dispatcher,
        describe: (outcome, durationMs) => ({
          outcome,
          durationMs,
          statusCode: res.statusCode,
          method: 'GET',
          url: '/',
          route: undefined,
          req: undefined,
          res: undefined,
        }),
      });
      work.fireAndForget('https://audit.example/log', {
        json: (info: { statusCode: number }) => ({ status: info.statusCode }),
      });
      work.after(async () => {
        await new Promise((resolve) => setTimeout(resolve, 50));
        hookRan = true;
      });
      res.end('hi');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => {
      httpRequest(`http://127.0.0.1:${port}/`, (res) => res.resume().on('end', resolve)).end();
    });
    await drain(dispatcher);
    expect(hookRan).toBe(true);
    expect(transport.requests[0]?.json()).toEqual({ status: 200 });
    server.close();

    transport.respondWith(() => new Promise(() => undefined));
    dispatcher.send('https://stuck.example/');
    await expect(drain(dispatcher, 50)).rejects.toThrow(/1 item\(s\) still pending after 50 ms/);
    await dispatcher.close({ timeout: 0 });
  });
});
