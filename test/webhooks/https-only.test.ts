/**
 * `httpsOnly: true`: a customer endpoint given as http: is refused at the call, in the caller's
 * stack, and nothing is queued or dialled.
 */
import { describe, expect, it } from 'vitest';
import { createRecordingTransport } from '../../packages/core/dist/testing.js';
import {
  BlockedAddressError,
  countingListener,
  createDispatcher,
  InvalidArgumentError,
  recordingLogger,
  track,
  trackDispatcher,
} from './support.js';

describe('httpsOnly', () => {
  it('throws InvalidArgumentError at the call for http: URLs, queueing and dialling nothing', async () => {
    const listener = track(await countingListener());
    const d = trackDispatcher(createDispatcher({ httpsOnly: true, logger: recordingLogger() }));

    for (const url of [listener.url, `${listener.url}/hook`, listener.url.replace('http:', 'HTTP:')]) {
      expect(() => d.send(url, { json: {} })).toThrow(InvalidArgumentError);
    }
    expect(() => d.send({ url: new URL(listener.url), json: {} })).toThrow(/httpsOnly/);

    await d.drain({ timeout: 100 });
    expect(d.stats()).toMatchObject({ queued: 0, inFlight: 0, failed: 0, dropped: 0 });
    expect(listener.connections).toBe(0);
  });

  it('sends https: URLs as usual', async () => {
    const transport = createRecordingTransport();
    const d = trackDispatcher(createDispatcher({ httpsOnly: true, transport, logger: recordingLogger() }));

    const result = await d.send('https://hooks.customer.example/orders', { json: { id: 1 } }).done;

    expect(result.state).toBe('delivered');
    expect(transport.requests.map((r) => r.url)).toEqual(['https://hooks.customer.example/orders']);
  });

  it('layers with the guard: an https: URL to an internal address still fails as blocked', async () => {
    const d = trackDispatcher(
      createDispatcher({ httpsOnly: true, guard: 'public-only', logger: recordingLogger() }),
    );

    const result = await d.send('https://169.254.169.254/latest/meta-data/', { json: {} }).done;

    expect(result).toMatchObject({ state: 'failed', attempts: 1 });
    expect(result.error).toBeInstanceOf(BlockedAddressError);
  });

  it('must be a boolean', () => {
    expect(() => createDispatcher({ httpsOnly: 'yes' as unknown as boolean })).toThrow(InvalidArgumentError);
  });
});
