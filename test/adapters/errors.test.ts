import {
  InvalidArgumentError,
  isAfterwardError,
  NotInstalledError,
  QueueFullError,
  type ResponseInfo,
} from '@afterward/core';
import { drain } from '@afterward/core/testing';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { KITS } from './harness.js';
import { testDispatcher, testReceiver, track } from './setup.js';

describe.each(KITS)('$name: errors', (kit) => {
  it("responses ended by the framework's error handling still release their work", async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/http-error',
          handler: (h) => {
            h.fireAndForget(`${receiver.url}/http-error`, {
              json: (info: ResponseInfo) => ({ status: info.statusCode }),
              when: 'error',
            });
            h.fail(422, 'unprocessable');
          },
        },
        {
          path: '/thrown',
          handler: async (h) => {
            h.fireAndForget(`${receiver.url}/thrown`, {
              json: (info: ResponseInfo) => ({ status: info.statusCode }),
            });
            await Promise.resolve();
            throw new Error('exploded');
          },
        },
      ]),
    );

    await request(app.url).get('/http-error').expect(422);
    await request(app.url).get('/thrown').expect(500);
    await drain(dispatcher);

    const byUrl = Object.fromEntries(receiver.requests.map((r) => [r.url, r.json()]));
    expect(byUrl).toEqual({ '/http-error': { status: 422 }, '/thrown': { status: 500 } });
    expect(app.errors.map((e) => (e as Error).message)).toEqual(['unprocessable', 'exploded']);
  });

  it('bad input throws in the handler, reaches the error handling as InvalidArgumentError, enqueues nothing', async () => {
    const dispatcher = testDispatcher();
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    const app = track(
      await kit.start({ dispatcher }, [
        { path: '/bad-url', handler: (h) => h.fireAndForget('not a url') },
        { path: '/bad-json', handler: (h) => h.fireAndForget('http://127.0.0.1:9/', { json: circular }) },
        {
          path: '/get-body',
          handler: (h) => h.fireAndForget('http://127.0.0.1:9/', { method: 'GET', body: 'x' }),
        },
        {
          path: '/bad-when',
          handler: (h) => h.fireAndForget('http://127.0.0.1:9/', { when: 'sometimes' as 'always' }),
        },
        { path: '/bad-hook', handler: (h) => h.after('not a function' as unknown as () => void) },
        { path: '/bad-timeout', handler: (h) => h.after(() => {}, { timeout: -1 }) },
      ]),
    );

    for (const path of ['/bad-url', '/bad-json', '/get-body', '/bad-when', '/bad-hook', '/bad-timeout']) {
      await request(app.url).get(path).expect(500);
    }
    expect(app.errors).toHaveLength(6);
    for (const error of app.errors) {
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(isAfterwardError(error) && error.code).toBe('AFTERWARD_ERR_INVALID_ARGUMENT');
    }
    await drain(dispatcher);
    expect(dispatcher.stats()).toMatchObject({
      queued: 0,
      inFlight: 0,
      delivered: 0,
      failed: 0,
      cancelled: 0,
    });
  });

  it('more than maxPerResponse items throws QueueFullError at the call; what was parked still goes', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const app = track(
      await kit.start({ dispatcher, maxPerResponse: 2 }, [
        {
          path: '/',
          handler: (h) => {
            h.fireAndForget(receiver.url);
            h.after(() => {});
            h.fireAndForget(receiver.url);
          },
        },
      ]),
    );

    await request(app.url).get('/').expect(500);
    expect(app.errors[0]).toBeInstanceOf(QueueFullError);
    await drain(dispatcher);
    expect(receiver.requests).toHaveLength(1);
  });
});

describe.each(KITS.filter((kit) => kit.name === 'express5' || kit.name === 'koa3'))(
  '$name: without the middleware',
  (kit) => {
    it('fireAndForget and after throw NotInstalledError with a message that says what to do', async () => {
      const app = track(
        await kit.start(
          {},
          [
            { path: '/send', handler: (h) => h.fireAndForget('http://127.0.0.1:9/') },
            { path: '/after', handler: (h) => h.after(() => {}) },
          ],
          false,
        ),
      );

      await request(app.url).get('/send').expect(500);
      await request(app.url).get('/after').expect(500);
      const [send, after] = app.errors;
      const prefix = kit.framework === 'express' ? 'res' : 'ctx';
      expect(send).toBeInstanceOf(NotInstalledError);
      expect((send as Error).message).toContain(`${prefix}.fireAndForget() was called on a`);
      expect((send as Error).message).toContain('install app.use(afterward()) before the');
      expect(after).toBeInstanceOf(NotInstalledError);
      expect((after as NotInstalledError).code).toBe('AFTERWARD_ERR_NOT_INSTALLED');
    });
  },
);
