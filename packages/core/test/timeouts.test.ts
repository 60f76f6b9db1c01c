import { describe, expect, it } from 'vitest';
import { createDispatcher, TimeoutError, type Dispatcher, type DispatcherOptions } from '../src/index.js';
import {
  cleanupScope,
  neverAnswers,
  slowHeaders,
  trickle,
  type FaultServer,
  waitUntil,
  blackhole,
  recordingLogger,
  guardUnhandledRejections,
  startReceiver,
} from '../../../test/support/index.js';

guardUnhandledRejections();

const { cleanups: cleanup } = cleanupScope();

function dispatcherFor(options: DispatcherOptions): Dispatcher {
  const dispatcher = createDispatcher({ retry: false, logger: recordingLogger(), ...options });
  cleanup.push(() => dispatcher.close({ timeout: 0 }));
  return dispatcher;
}
function track<T extends FaultServer>(server: T): T {
  cleanup.push(() => server.close());
  return server;
}

describe('per-attempt deadlines', () => {
  it('ends a receiver that never answers with a headers TimeoutError, closing the socket', async () => {
    const server = track(await neverAnswers());
    const dispatcher = dispatcherFor({ timeout: { response: 200 } });
    const started = performance.now();
    const result = await dispatcher.send(server.url, { json: {} }).done;
    expect(result.state).toBe('failed');
    expect(result.error).toBeInstanceOf(TimeoutError);
    expect((result.error as TimeoutError).phase).toBe('headers');
    expect(result.error?.code).toBe('AFTERWARD_ERR_HEADERS_TIMEOUT');
    expect(result.error?.retryable).toBe(true);
    expect(performance.now() - started).toBeLessThan(5_000);
    await waitUntil(() => server.openConnections() === 0, { message: 'socket closed' });
  });

  it('ends response headers that never complete (byte by byte) with the headers deadline', async () => {
    const server = track(await slowHeaders({ intervalMs: 50 }));
    const dispatcher = dispatcherFor({ timeout: { response: 300 } });
    const result = await dispatcher.send(server.url).done;
    expect(result.error).toBeInstanceOf(TimeoutError);
    expect((result.error as TimeoutError).phase).toBe('headers');
  });

  it('a per-send timeout overrides the dispatcher; a number sets the total deadline', async () => {
    const server = track(await neverAnswers());
    const dispatcher = dispatcherFor({});
    const result = await dispatcher.send(server.url, { timeout: 250 }).done;
    expect(result.error).toBeInstanceOf(TimeoutError);
    expect((result.error as TimeoutError).phase).toBe('total');
    expect((result.error as TimeoutError).timeoutMs).toBe(250);
    expect(result.error?.code).toBe('AFTERWARD_ERR_TOTAL_TIMEOUT');
  });

  it('ends a receiver trickling its body with the total deadline', async () => {
    const server = track(await trickle({ intervalMs: 50 }));
    const dispatcher = dispatcherFor({ timeout: { total: 600 } });
    const started = performance.now();
    const handle = dispatcher.send(server.url, { json: { a: 1 } });
    const result = await handle.done;
    const elapsed = performance.now() - started;
    // The 200 arrived, so it counts as delivered; the deadline stopped the endless body.
    expect(result.state).toBe('delivered');
    expect(result.response?.status).toBe(200);
    expect(elapsed).toBeGreaterThanOrEqual(500);
    expect(elapsed).toBeLessThan(5_000);
    await waitUntil(() => server.openConnections() === 0, { message: 'trickling socket closed' });
    const written = server.bytesWritten;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(server.bytesWritten).toBe(written);
  });

  it('gives up connecting with a connect TimeoutError', async () => {
    const hole = await blackhole();
    cleanup.push(() => hole.close());
    const dispatcher = dispatcherFor({ timeout: { connect: 200 } });
    const started = performance.now();
    const result = await dispatcher.send(`${hole.url}/x`).done;
    expect(result.error).toBeInstanceOf(TimeoutError);
    expect((result.error as TimeoutError).phase).toBe('connect');
    expect(result.error?.code).toBe('AFTERWARD_ERR_CONNECT_TIMEOUT');
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('a distinct timeout.connect per send shares one pool: 2,000 values, per-origin cap holds', async () => {
    const receiver = await startReceiver();
    cleanup.push(() => receiver.close());
    const dispatcher = dispatcherFor({ concurrencyPerOrigin: 4, maxQueued: 2_000 });
    const handles = Array.from({ length: 2_000 }, (_, i) =>
      dispatcher.send(receiver.url, { body: 'x', timeout: { connect: 1_000 + i } }),
    );
    const results = await Promise.all(handles.map((handle) => handle.done));
    expect(results.filter((result) => result.state === 'delivered')).toHaveLength(2_000);
    // A pool per value dialled a connection per value (2,000) past the cap of 4.
    expect(receiver.connections).toBeLessThanOrEqual(4);
  });

  it('a connect timeout still applies per send, with one pool', async () => {
    const hole = await blackhole();
    cleanup.push(() => hole.close());
    const dispatcher = dispatcherFor({ timeout: { connect: 5_000 } });
    const started = performance.now();
    const result = await dispatcher.send(`${hole.url}/x`, { timeout: { connect: 150 } }).done;
    expect((result.error as TimeoutError).phase).toBe('connect');
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('retries timeouts', async () => {
    const server = track(await neverAnswers());
    const dispatcher = dispatcherFor({ timeout: 150, retry: { attempts: 3, minDelay: 5, maxDelay: 20 } });
    const result = await dispatcher.send(server.url).done;
    expect(result).toMatchObject({ state: 'failed', attempts: 3 });
    expect(server.requestsStarted).toBe(3);
  });
});
