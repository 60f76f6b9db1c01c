import { describe, expect, it } from 'vitest';
import {
  createDispatcher,
  DroppedError,
  QueueFullError,
  type DeliveryEvent,
  type DeliveryHandle,
  type Dispatcher,
  type DispatcherOptions,
} from '../src/index.js';
import { DEFAULTS } from '../src/options/options.js';
import { createRecordingTransport, type RecordingTransport } from '../src/testing.js';
import {
  cleanupScope,
  startReceiver,
  type Receiver,
  sleep,
  waitUntil,
  FAST_RETRY,
  recordingLogger,
  guardUnhandledRejections,
} from '../../../test/support/index.js';

guardUnhandledRejections();

const URL_A = 'http://a.test/hook';
const { cleanups: cleanup } = cleanupScope();

/** A dispatcher on a recording transport whose answers wait until `release()`. */
function held(options: DispatcherOptions = {}): {
  dispatcher: Dispatcher;
  transport: RecordingTransport;
  dropped: DeliveryEvent[];
  logger: ReturnType<typeof recordingLogger>;
  release: () => void;
} {
  const transport = createRecordingTransport();
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  transport.respondWith(async () => {
    await gate;
    return 204;
  });
  const logger = recordingLogger();
  const dispatcher = createDispatcher({ concurrency: 1, retry: FAST_RETRY, logger, ...options, transport });
  const dropped: DeliveryEvent[] = [];
  dispatcher.on('dropped', (event) => dropped.push(event));
  cleanup.push(async () => {
    open();
    await dispatcher.close({ timeout: 1_000 });
  });
  return { dispatcher, transport, dropped, logger, release: open };
}

/** What a notification to URL_A with a string body holds besides its body: URL, path, headers. */
function overhead(): number {
  const { dispatcher } = held({ concurrency: 1 });
  dispatcher.send(URL_A, { body: '' });
  return dispatcher.stats().queuedBytes;
}

async function inFlight(handle: DeliveryHandle): Promise<void> {
  await waitUntil(() => handle.state === 'sending', { message: 'first notification in flight' });
}

describe('bounded queue', () => {
  it("drops the oldest waiting notification by default ('drop-oldest')", async () => {
    const { dispatcher, dropped, logger, release } = held({ maxQueued: 3 });
    const a = dispatcher.send(URL_A, { body: 'a' });
    await inFlight(a);
    const b = dispatcher.send(URL_A, { body: 'b' });
    const c = dispatcher.send(URL_A, { body: 'c' });
    const d = dispatcher.send(URL_A, { body: 'd' });

    expect(b.state).toBe('dropped');
    expect(b.error).toBeInstanceOf(DroppedError);
    expect(b.error?.code).toBe('AFTERWARD_ERR_DROPPED');
    // Made when first read (nobody reads most in a storm), and the same error on every read.
    expect(b.error?.message).toBe('queue full: dropped the oldest to make room');
    expect(b.error).toBe(b.error);
    expect([c.state, d.state]).toEqual(['queued', 'queued']);
    expect(dropped.map((e) => e.id)).toEqual([b.id]);
    expect(dispatcher.stats()).toMatchObject({ dropped: 1, queued: 2, inFlight: 1 });
    expect(logger.lines.some((call) => call.level === 'warn' && /dropped/.test(call.msg ?? ''))).toBe(true);

    release();
    const results = await Promise.all([a.done, c.done, d.done]);
    expect(results.map((r) => r.state)).toEqual(['delivered', 'delivered', 'delivered']);
    expect((await b.done).state).toBe('dropped');
  });

  it("settles every evicted notification 'dropped' when a 'dropped' listener sends again", async () => {
    // The store reuses its answer from put to put: a send from the listener must not make the
    // dispatcher lose the second of two notifications one put evicted.
    const base = overhead();
    const { dispatcher } = held({ maxQueued: 100, maxQueuedBytes: 3 * base + 30 });
    const a = dispatcher.send(URL_A, { body: 'a' });
    await inFlight(a);
    const b = dispatcher.send(URL_A, { body: 'b' });
    const c = dispatcher.send(URL_A, { body: 'c' });
    const again: DeliveryHandle[] = [];
    dispatcher.once('dropped', () => void again.push(dispatcher.send(URL_A, { body: 'e' })));
    // Needs the room of both b and c: two evicted by one put, and the listener's send evicts d.
    const d = dispatcher.send(URL_A, { body: 'd'.repeat(base + 10) });
    expect([b.state, c.state]).toEqual(['dropped', 'dropped']);
    expect(d.state).toBe('dropped');
    expect(again.map((handle) => handle.state)).toEqual(['queued']);
    expect(dispatcher.stats()).toMatchObject({ dropped: 3, queued: 1, inFlight: 1 });
  });

  it("drops the newcomer with 'drop-newest'", async () => {
    const { dispatcher, dropped } = held({ maxQueued: 2, overflow: 'drop-newest' });
    const a = dispatcher.send(URL_A);
    await inFlight(a);
    const b = dispatcher.send(URL_A);
    const c = dispatcher.send(URL_A);
    expect(b.state).toBe('queued');
    expect(c.state).toBe('dropped');
    expect(c.settled).toBe(true);
    expect(dropped.map((e) => e.id)).toEqual([c.id]);
    expect(dispatcher.stats()).toMatchObject({ dropped: 1, queued: 1 });
  });

  it("throws QueueFullError at the call with 'reject', leaving nothing behind", async () => {
    const { dispatcher, dropped, transport } = held({ maxQueued: 2, overflow: 'reject' });
    const a = dispatcher.send(URL_A);
    await inFlight(a);
    dispatcher.send(URL_A);
    const before = dispatcher.stats();
    let thrown: unknown;
    try {
      dispatcher.send(URL_A, { signal: new AbortController().signal });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(QueueFullError);
    expect((thrown as QueueFullError).code).toBe('AFTERWARD_ERR_QUEUE_FULL');
    expect(dispatcher.stats()).toEqual(before);
    expect(dropped).toHaveLength(0);
    expect(transport.requests).toHaveLength(1);
  });

  it('bounds the bytes held (maxQueuedBytes), evicting the oldest to make room', async () => {
    const o = overhead();
    expect(o).toBeGreaterThan(URL_A.length);
    const { dispatcher } = held({ maxQueuedBytes: 100 + 2 * o });
    const a = dispatcher.send(URL_A, { body: 'a'.repeat(60) });
    await inFlight(a);
    const b = dispatcher.send(URL_A, { body: 'b'.repeat(30) });
    expect(dispatcher.stats().queuedBytes).toBe(90 + 2 * o);
    const c = dispatcher.send(URL_A, { body: 'c'.repeat(30) });
    expect(b.state).toBe('dropped');
    expect(c.state).toBe('queued');
    expect(dispatcher.stats().queuedBytes).toBe(90 + 2 * o);
    // One notification larger than the whole bound can never fit, and says so.
    const huge = dispatcher.send(URL_A, { body: 'x'.repeat(101 + o) });
    expect(huge.state).toBe('dropped');
    expect(huge.error?.message).toBe(
      `notification too large: ${101 + 2 * o} bytes, above maxQueuedBytes (${100 + 2 * o})`,
    );
    expect(dispatcher.stats().dropped).toBe(2);
  });

  it("throws for bytes too with 'reject'", async () => {
    const o = overhead();
    const { dispatcher } = held({ maxQueuedBytes: 50 + 2 * o, overflow: 'reject' });
    const a = dispatcher.send(URL_A, { body: 'a'.repeat(40) });
    await inFlight(a);
    expect(() => dispatcher.send(URL_A, { body: 'b'.repeat(20) })).toThrow(/^queue full/);
    expect(dispatcher.send(URL_A, { body: 'b'.repeat(10) }).state).toBe('queued');
  });

  it('counts the whole request against maxQueuedBytes: 20 kB of query and headers each', () => {
    const { dispatcher } = held({ maxQueuedBytes: 1024 * 1024, maxQueued: 1_000, overflow: 'reject' });
    const query = { q: 'x'.repeat(10_000) };
    const headers = { 'x-big': 'y'.repeat(10_000) };
    let accepted = 0;
    let thrown: unknown;
    try {
      for (; accepted < 1_000; accepted++) dispatcher.send(URL_A, { query, headers, body: '' });
    } catch (error) {
      thrown = error;
    }
    // Bodies alone (0 bytes) took all 1,000. Each holds its query twice (URL and path) and the header.
    expect(thrown).toBeInstanceOf(QueueFullError);
    expect(accepted).toBeGreaterThan(30);
    expect(accepted).toBeLessThan(40);
    expect(dispatcher.stats().queuedBytes).toBeGreaterThan(accepted * 30_000);
    expect(dispatcher.stats().queuedBytes).toBeLessThanOrEqual(1024 * 1024);
  });

  it('drops a newcomer (never what is in flight) when everything held is in flight', async () => {
    const { dispatcher } = held({ maxQueued: 1 });
    const a = dispatcher.send(URL_A);
    await inFlight(a);
    const b = dispatcher.send(URL_A);
    expect(b.state).toBe('dropped');
    expect(a.state).toBe('sending');
  });

  it('logs a storm of drops rate-limited, with a count of what was suppressed', async () => {
    const { dispatcher, logger } = held({ maxQueued: 1, overflow: 'drop-newest' });
    const a = dispatcher.send(URL_A);
    await inFlight(a);
    for (let i = 0; i < 50; i++) dispatcher.send(URL_A);
    expect(dispatcher.stats().dropped).toBe(50);
    const drops = logger.lines.filter((call) => /dropped/.test(call.msg ?? ''));
    expect(drops.length).toBeGreaterThanOrEqual(1);
    expect(drops.length).toBeLessThanOrEqual(2);
  });

  it('has the documented defaults', () => {
    expect(DEFAULTS).toMatchObject({
      concurrency: 256,
      concurrencyPerOrigin: 128,
      maxQueued: 10_000,
      maxQueuedBytes: 32 * 1024 * 1024,
      overflow: 'drop-oldest',
      timeout: { connect: 5_000, response: 10_000, total: 15_000 },
      retry: { attempts: 5, minDelay: 500, maxDelay: 30_000, factor: 2, maxRetryAfter: 60_000 },
      maxResponseBytes: 64 * 1024,
      closeTimeout: 10_000,
    });
  });

  it('holds 10,000 by default, then drops the oldest', async () => {
    const { dispatcher } = held();
    const first = dispatcher.send(URL_A);
    await inFlight(first);
    const handles = Array.from({ length: 10_000 }, () => dispatcher.send(URL_A));
    expect(dispatcher.stats()).toMatchObject({ queued: 9_999, dropped: 1 });
    expect(handles[0]?.state).toBe('dropped');
    expect(handles[1]?.state).toBe('queued');
    for (const handle of handles) handle.cancel();
  });
});

describe('concurrency', () => {
  /** A receiver that holds every request 80 ms and records the most it saw at once. */
  async function counting(shared?: {
    active: number;
    max: number;
  }): Promise<Receiver & { max: () => number }> {
    let active = 0;
    let max = 0;
    const receiver = await startReceiver(async (_req, res) => {
      active++;
      max = Math.max(max, active);
      if (shared) {
        shared.active++;
        shared.max = Math.max(shared.max, shared.active);
      }
      await sleep(80);
      active--;
      if (shared) shared.active--;
      res.statusCode = 204;
      res.end();
    });
    cleanup.push(() => receiver.close());
    return Object.assign(receiver, { max: () => max });
  }

  it('sends at most concurrencyPerOrigin at once to one origin', async () => {
    const receiver = await counting();
    const dispatcher = createDispatcher({
      concurrency: 10,
      concurrencyPerOrigin: 3,
      logger: recordingLogger(),
    });
    cleanup.push(() => dispatcher.close());
    const handles = Array.from({ length: 12 }, (_v, i) => dispatcher.send(receiver.url, { json: { i } }));
    await waitUntil(() => dispatcher.stats().inFlight > 0);
    expect(dispatcher.stats().inFlight).toBeLessThanOrEqual(3);
    const results = await Promise.all(handles.map((h) => h.done));
    expect(results.every((r) => r.state === 'delivered')).toBe(true);
    expect(receiver.max()).toBeLessThanOrEqual(3);
    expect(receiver.max()).toBeGreaterThanOrEqual(2);
  });

  it('sends at most concurrency at once across origins, and serves both', async () => {
    const shared = { active: 0, max: 0 };
    const one = await counting(shared);
    const two = await counting(shared);
    const dispatcher = createDispatcher({
      concurrency: 4,
      concurrencyPerOrigin: 3,
      logger: recordingLogger(),
    });
    cleanup.push(() => dispatcher.close());
    const handles = [
      ...Array.from({ length: 8 }, () => dispatcher.send(one.url)),
      ...Array.from({ length: 8 }, () => dispatcher.send(two.url)),
    ];
    const results = await Promise.all(handles.map((h) => h.done));
    expect(results.every((r) => r.state === 'delivered')).toBe(true);
    expect(shared.max).toBeLessThanOrEqual(4);
    expect(shared.max).toBeGreaterThanOrEqual(3);
    expect(one.max()).toBeLessThanOrEqual(3);
    expect(two.max()).toBeLessThanOrEqual(3);
    // One busy origin does not starve the other: both were being served at the same time.
    expect(one.max()).toBeGreaterThanOrEqual(1);
    expect(two.max()).toBeGreaterThanOrEqual(1);
  });

  it('does not let one slow origin hold back another (round-robin across origins)', async () => {
    const transport = createRecordingTransport();
    transport.respondWith(async (request) => {
      if (request.url.startsWith('http://slow.test')) await sleep(300);
      return 204;
    });
    const dispatcher = createDispatcher({
      concurrency: 4,
      concurrencyPerOrigin: 2,
      transport,
      logger: recordingLogger(),
    });
    cleanup.push(() => dispatcher.close({ timeout: 0 }));
    for (let i = 0; i < 6; i++) dispatcher.send('http://slow.test/x');
    const fast = dispatcher.send('http://fast.test/x');
    const started = performance.now();
    await fast.done;
    expect(performance.now() - started).toBeLessThan(250);
  });
});
