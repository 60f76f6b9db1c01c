import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import {
  CancelledError,
  createDispatcher,
  HttpStatusError,
  type DeliveryState,
  type Dispatcher,
  type DispatcherOptions,
} from '../src/index.js';
import {
  cleanupScope,
  startReceiver,
  type Receiver,
  neverAnswers,
  type FaultServer,
  sleep,
  waitUntil,
  FAST_RETRY,
  recordingLogger,
  guardUnhandledRejections,
} from '../../../test/support/index.js';

guardUnhandledRejections();

const { cleanups: cleanup } = cleanupScope();

function dispatcherFor(options: DispatcherOptions = {}): Dispatcher {
  const dispatcher = createDispatcher({ retry: FAST_RETRY, logger: recordingLogger(), ...options });
  cleanup.push(() => dispatcher.close({ timeout: 0 }));
  return dispatcher;
}
async function receiverFor(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
  const receiver = await startReceiver(...args);
  cleanup.push(() => receiver.close());
  return receiver;
}
async function silentServer(): Promise<FaultServer> {
  const server = await neverAnswers();
  cleanup.push(() => server.close());
  return server;
}

/** Records each distinct state the handle passes through, by polling (the polling style of use). */
function watchStates(handle: { readonly state: DeliveryState; readonly settled: boolean }): DeliveryState[] {
  const seen: DeliveryState[] = [handle.state];
  const timer = setInterval(() => {
    if (seen.at(-1) !== handle.state) seen.push(handle.state);
    if (handle.settled) clearInterval(timer);
  }, 2);
  return seen;
}

describe('handle.id', () => {
  it('is stable across a 503 → 200 retry and sent as webhook-id and idempotency-key', async () => {
    let calls = 0;
    const receiver = await receiverFor((_req, res) => {
      res.statusCode = ++calls === 1 ? 503 : 200;
      res.end();
    });
    const handle = dispatcherFor().send(`${receiver.url}/hook`, { json: { a: 1 } });
    const result = await handle.done;
    expect(result).toMatchObject({ state: 'delivered', attempts: 2, id: handle.id });
    const [first, second] = await receiver.waitFor(2);
    for (const request of [first, second]) {
      expect(request?.headers['webhook-id']).toBe(handle.id);
      expect(request?.headers['idempotency-key']).toBe(handle.id);
    }
  });
});

describe('handle.state, settled and attempts', () => {
  it('goes queued → sending → retrying → sending → delivered', async () => {
    let calls = 0;
    const receiver = await receiverFor(async (_req, res) => {
      await sleep(100);
      if (++calls === 1) {
        res.writeHead(503, { 'retry-after': '1' });
      } else {
        res.statusCode = 200;
      }
      res.end();
    });
    // Retry-After 1 s clamped to 300 ms: a retry wait long enough to be seen by polling.
    const dispatcher = dispatcherFor({ retry: { ...FAST_RETRY, maxRetryAfter: 300 } });
    const handle = dispatcher.send(receiver.url);
    expect(handle.state).toBe('queued');
    expect(handle.settled).toBe(false);
    expect(handle.attempts).toBe(0);
    const seen = watchStates(handle);
    await waitUntil(() => handle.settled, { message: 'handle settled' });
    // The watcher samples every 2 ms; take the last sample ourselves so the final state is never missed.
    if (seen.at(-1) !== handle.state) seen.push(handle.state);
    expect(seen).toEqual(['queued', 'sending', 'retrying', 'sending', 'delivered']);
    expect(handle.attempts).toBe(2);
    expect(handle.settled).toBe(true);
    expect(handle.error).toBeUndefined();
  });

  it('lets a caller poll: settled flips once and the handle never changes again', async () => {
    const receiver = await receiverFor();
    const handle = dispatcherFor().send(receiver.url);
    await waitUntil(() => handle.settled, { message: 'settled by polling' });
    expect(handle.state).toBe('delivered');
    expect(handle.cancel()).toBe(false);
    expect(handle.state).toBe('delivered');
  });
});

describe('handle.response and handle.error', () => {
  it('carries status, statusText and headers, without the body unless keepBody', async () => {
    const receiver = await receiverFor((_req, res) => {
      res.writeHead(201, 'Made It', { 'x-receipt': 'r-1', 'content-type': 'text/plain' });
      res.end('hello world');
    });
    const dispatcher = dispatcherFor();
    const plain = await dispatcher.send(receiver.url).done;
    expect(plain.response).toMatchObject({ status: 201, statusText: 'Made It' });
    expect(plain.response?.headers['x-receipt']).toBe('r-1');
    expect(plain.response?.body).toBeUndefined();

    const kept = await dispatcher.send(receiver.url, { keepBody: 5 }).done;
    expect(kept.response?.body?.toString()).toBe('hello');
    const whole = await dispatcher.send(receiver.url, { keepBody: true }).done;
    expect(whole.response?.body?.toString()).toBe('hello world');
  });

  it('keeps a typed error, and done resolves (never rejects) on failure', async () => {
    const receiver = await receiverFor((_req, res) => {
      res.statusCode = 422;
      res.end('nope');
    });
    const handle = dispatcherFor().send(receiver.url, { keepBody: 100 });
    const result = await handle.done;
    expect(result.state).toBe('failed');
    expect(handle.error).toBeInstanceOf(HttpStatusError);
    expect(handle.error?.code).toBe('AFTERWARD_ERR_HTTP_STATUS');
    expect((handle.error as HttpStatusError).status).toBe(422);
    expect(handle.response?.body?.toString()).toBe('nope');
  });
});

describe('handle.cancel()', () => {
  it('removes a queued notification: it is never sent', async () => {
    const silent = await silentServer();
    const receiver = await receiverFor();
    const dispatcher = dispatcherFor({ concurrency: 1 });
    const blocker = dispatcher.send(silent.url);
    const queued = dispatcher.send(receiver.url);
    await waitUntil(() => blocker.state === 'sending');
    expect(queued.state).toBe('queued');
    expect(dispatcher.stats().queued).toBe(1);

    expect(queued.cancel('not needed')).toBe(true);
    expect(queued.cancel()).toBe(false);
    const result = await queued.done;
    expect(result.state).toBe('cancelled');
    expect(result.error).toBeInstanceOf(CancelledError);
    expect((result.error as CancelledError).reason).toBe('not needed');
    expect(result.attempts).toBe(0);
    expect(dispatcher.stats()).toMatchObject({ queued: 0, cancelled: 1 });

    blocker.cancel();
    await sleep(50);
    expect(receiver.requests).toHaveLength(0);
  });

  it('removes a notification waiting out a retry backoff', async () => {
    const receiver = await receiverFor((_req, res) => {
      res.writeHead(503, { 'retry-after': '30' });
      res.end();
    });
    const dispatcher = dispatcherFor();
    const handle = dispatcher.send(receiver.url);
    await waitUntil(() => handle.state === 'retrying');
    expect(handle.cancel()).toBe(true);
    expect((await handle.done).state).toBe('cancelled');
    expect(dispatcher.stats()).toMatchObject({ queued: 0, inFlight: 0, cancelled: 1 });
    await sleep(50);
    expect(receiver.requests).toHaveLength(1);
  });

  it('destroys the socket of an in-flight request, so the receiver sees the close', async () => {
    const silent = await silentServer();
    const dispatcher = dispatcherFor();
    const handle = dispatcher.send(silent.url, { json: { big: 'x'.repeat(1000) } });
    await waitUntil(() => silent.requestsStarted === 1 && silent.openConnections() === 1);
    expect(handle.state).toBe('sending');

    expect(handle.cancel(new Error('user left'))).toBe(true);
    expect(handle.state).toBe('cancelled');
    const result = await handle.done;
    expect(result.error).toBeInstanceOf(CancelledError);
    expect(result.error?.message).toMatch(/user left/);
    await waitUntil(() => silent.openConnections() === 0, { message: 'receiver socket closed' });
    await waitUntil(() => dispatcher.stats().inFlight === 0, { message: 'slot freed' });
    expect(dispatcher.stats()).toMatchObject({ cancelled: 1, failed: 0, retries: 0 });
    expect(silent.requestsStarted).toBe(1);
  });
});

describe('signal', () => {
  it('aborting mid-request destroys the socket like cancel()', async () => {
    const silent = await silentServer();
    const controller = new AbortController();
    const handle = dispatcherFor().send(silent.url, { signal: controller.signal });
    await waitUntil(() => silent.openConnections() === 1);
    controller.abort('shutting down');
    const result = await handle.done;
    expect(result.state).toBe('cancelled');
    expect((result.error as CancelledError).reason).toBe('shutting down');
    await waitUntil(() => silent.openConnections() === 0, { message: 'receiver socket closed' });
  });

  it('aborting a queued one unqueues it', async () => {
    const silent = await silentServer();
    const receiver = await receiverFor();
    const dispatcher = dispatcherFor({ concurrency: 1 });
    const blocker = dispatcher.send(silent.url);
    const controller = new AbortController();
    const handle = dispatcher.send(receiver.url, { signal: controller.signal });
    await waitUntil(() => blocker.state === 'sending');
    controller.abort();
    expect((await handle.done).state).toBe('cancelled');
    expect(dispatcher.stats().queued).toBe(0);
    blocker.cancel();
    await sleep(30);
    expect(receiver.requests).toHaveLength(0);
  });

  it('an already-aborted signal cancels at once and sends nothing', async () => {
    const receiver = await receiverFor();
    const dispatcher = dispatcherFor();
    const cancelled: string[] = [];
    dispatcher.on('cancelled', (event) => cancelled.push(event.id));
    const handle = dispatcher.send(receiver.url, { signal: AbortSignal.abort('too late') });
    expect(handle.state).toBe('cancelled');
    expect(handle.settled).toBe(true);
    expect((handle.error as CancelledError).reason).toBe('too late');
    expect(cancelled).toEqual([handle.id]);
    expect(dispatcher.stats()).toMatchObject({ queued: 0, inFlight: 0, cancelled: 1 });
    await sleep(30);
    expect(receiver.requests).toHaveLength(0);
  });

  it('a signal aborted after delivery changes nothing', async () => {
    const receiver = await receiverFor();
    const controller = new AbortController();
    const handle = dispatcherFor().send(receiver.url, { signal: controller.signal });
    await handle.done;
    controller.abort();
    expect(handle.state).toBe('delivered');
  });
});

describe('one AbortSignal shared by many sends', () => {
  it('adds one listener to it, not one per send (no MaxListenersExceededWarning), and cancels them all', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.name);
    process.on('warning', onWarning);
    cleanup.push(() => void process.off('warning', onWarning));
    // A transport that never answers until aborted: every send stays in flight or queued.
    const dispatcher = dispatcherFor({
      transport: {
        send: (_request, attempt) =>
          new Promise((resolve) => {
            attempt.signal.addEventListener('abort', () =>
              resolve({ kind: 'error', error: attempt.signal.reason as never }),
            );
          }),
        close: () => Promise.resolve(),
      },
      concurrency: 2,
    });
    const controller = new AbortController();
    const handles = Array.from({ length: 50 }, () =>
      dispatcher.send('http://127.0.0.1:9/', { signal: controller.signal }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    // A listener per send passed Node's EventTarget limit of 10 where it applies.
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    expect(warnings).toEqual([]);
    controller.abort(new Error('stop'));
    const results = await Promise.all(handles.map((handle) => handle.done));
    expect(results.every((result) => result.state === 'cancelled')).toBe(true);
    // A settled send lets go of the signal: a new one on it still works.
    const again = new AbortController();
    const one = dispatcher.send('http://127.0.0.1:9/', { signal: again.signal, confirm: 'sent' });
    const two = dispatcher.send('http://127.0.0.1:9/', { signal: again.signal, confirm: 'sent' });
    two.cancel();
    await two.done;
    expect(getEventListeners(again.signal, 'abort')).toHaveLength(1);
    again.abort();
    expect((await one.done).state).toBe('cancelled');
    expect(warnings).toEqual([]);
  });
});
