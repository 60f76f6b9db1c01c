import { request as httpRequest } from 'node:http';
import type { DeliveryHandle, ResponseInfo } from '@afterward/core';
import { drain } from '@afterward/core/testing';
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../support/index.js';
import { KITS, abortMidResponse } from './harness.js';
import { testDispatcher, testReceiver, track } from './setup.js';

describe.each(KITS)('$name: a client that disconnects mid-response', (kit) => {
  it("onClientAbort: 'send' (default) still sends and runs hooks, with outcome 'aborted'", async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const hookOutcomes: string[] = [];
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/stream',
          handler: (h) => {
            h.fireAndForget(receiver.url, {
              json: (info: ResponseInfo) => ({ outcome: info.outcome, status: info.statusCode }),
            });
            h.after((info) => void hookOutcomes.push(info.outcome));
            h.sendPart();
          },
        },
      ]),
    );

    await abortMidResponse(`${app.url}/stream`);
    const [received] = await receiver.waitFor(1);
    expect(received?.json()).toEqual({ outcome: 'aborted', status: 200 });
    await waitUntil(() => hookOutcomes.length === 1, { message: 'the hook ran' });
    expect(hookOutcomes).toEqual(['aborted']);
  });

  it("onClientAbort: 'cancel' cancels parked notifications and skips hooks", async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    let handle: DeliveryHandle | undefined;
    let hookRan = false;
    const app = track(
      await kit.start({ dispatcher, onClientAbort: 'cancel' }, [
        {
          path: '/stream',
          handler: (h) => {
            handle = h.fireAndForget(receiver.url, { json: { never: true } });
            h.after(() => {
              hookRan = true;
            });
            h.sendPart();
          },
        },
      ]),
    );

    await abortMidResponse(`${app.url}/stream`);
    const result = await handle?.done;
    await drain(dispatcher);

    expect(result?.state).toBe('cancelled');
    expect(result?.error?.message).toContain('the client disconnected');
    expect(hookRan).toBe(false);
    expect(receiver.requests).toHaveLength(0);
    expect(dispatcher.stats().cancelled).toBe(1);
  });

  it("a client gone before anything was written: work parked while the handler waits is released as 'aborted'", async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const hookOutcomes: string[] = [];
    let parked!: () => void;
    const parkedNow = new Promise<void>((resolve) => (parked = resolve));
    let release!: () => void;
    const never = new Promise<void>((resolve) => (release = resolve));
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/slow',
          handler: async (h) => {
            h.fireAndForget(receiver.url, { json: (info: ResponseInfo) => ({ outcome: info.outcome }) });
            h.after((info) => void hookOutcomes.push(info.outcome));
            parked();
            // Writes nothing until the test ends: only the client can end this response.
            await never;
          },
        },
      ]),
    );
    const req = httpRequest(`${app.url}/slow`);
    req.on('error', () => undefined);
    req.end();
    await parkedNow;
    req.destroy();
    try {
      const [received] = await receiver.waitFor(1);
      expect(received?.json()).toEqual({ outcome: 'aborted' });
      await waitUntil(() => hookOutcomes.length === 1, { message: 'the hook ran' });
      expect(hookOutcomes).toEqual(['aborted']);
    } finally {
      release();
    }
  });
});

describe.each(KITS)('$name: work first parked once the response has closed', (kit) => {
  it("is released on the next turn, with outcome 'finished'", async () => {
    const receiver = await testReceiver();
    const dispatcher = testDispatcher();
    const handles: DeliveryHandle[] = [];
    const hookOutcomes: string[] = [];
    const app = track(
      await kit.start({ dispatcher }, [
        {
          path: '/late',
          handler: (h) => {
            // Captured now, called once the response emitted 'close' (a later tick of the request).
            const { fireAndForget, after } = h;
            setTimeout(() => {
              handles.push(
                fireAndForget(receiver.url, { json: (info: ResponseInfo) => ({ outcome: info.outcome }) }),
              );
              after((info) => void hookOutcomes.push(info.outcome));
            }, 50);
            h.send(200, { ok: true });
          },
        },
      ]),
    );
    const res = await fetch(`${app.url}/late`);
    expect(res.status).toBe(200);
    await res.text();
    const [received] = await receiver.waitFor(1);
    expect(received?.json()).toEqual({ outcome: 'finished' });
    await waitUntil(() => hookOutcomes.length === 1, { message: 'the hook ran' });
    expect(hookOutcomes).toEqual(['finished']);
    expect((await handles[0]?.done)?.state).toBe('delivered');
  });
});
