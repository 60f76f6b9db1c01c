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
});
