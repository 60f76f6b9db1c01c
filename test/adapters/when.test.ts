import type { ResponseInfo, When } from '@afterward/core';
import { drain } from '@afterward/core/testing';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { KITS, abortMidResponse } from './harness.js';
import type { Handle } from './harness.js';
import { testDispatcher, testReceiver, track } from './setup.js';

const WHENS: Array<[string, When]> = [
  ['always', 'always'],
  ['ok', 'ok'],
  ['error', 'error'],
  ['aborted', 'aborted'],
  ['predicate', (info: ResponseInfo) => info.statusCode === 404],
];

/** For each `when`, which of the three responses (200, 404, aborted) its work runs for. */
const EXPECTED: Record<string, string[]> = {
  always: ['200', '404', 'aborted'],
  ok: ['200'],
  error: ['404'],
  aborted: ['aborted'],
  predicate: ['404'],
};

describe.each(KITS)('$name: when', (kit) => {
  it.each(WHENS)("when: '%s' selects notifications and hooks", async (name, when) => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const hooked: string[] = [];
    const park = (tag: string) => (h: Handle) => {
      h.fireAndForget(`${receiver.url}/${tag}`, { when });
      h.after(() => void hooked.push(tag), { when });
    };
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/ok',
          handler: (h) => {
            park('200')(h);
            h.send(200, {});
          },
        },
        {
          path: '/missing',
          handler: (h) => {
            park('404')(h);
            h.send(404, {});
          },
        },
        {
          path: '/abort',
          handler: (h) => {
            park('aborted')(h);
            h.sendPart();
          },
        },
      ]),
    );

    await request(app.url).get('/ok').expect(200);
    await request(app.url).get('/missing').expect(404);
    await abortMidResponse(`${app.url}/abort`);
    await drain(dispatcher);

    const expected = EXPECTED[name];
    expect(receiver.requests.map((r) => r.url.slice(1)).sort()).toEqual(expected);
    expect(hooked.sort()).toEqual(expected);
    expect(dispatcher.stats().cancelled).toBe(3 - (expected?.length ?? 0));
  });

  it('a when predicate that throws skips the work and is reported as cancelled', async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const reasons: unknown[] = [];
    dispatcher.on('cancelled', (event) => reasons.push(event.error?.message));
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/',
          handler: (h) => {
            h.fireAndForget(receiver.url, {
              when: () => {
                throw new Error('boom');
              },
            });
            h.send(200, {});
          },
        },
      ]),
    );

    await request(app.url).get('/').expect(200);
    await drain(dispatcher);
    expect(receiver.requests).toHaveLength(0);
    expect(reasons).toEqual([expect.stringContaining('the when predicate threw: boom')]);
  });
});
