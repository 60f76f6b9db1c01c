import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createDispatcher,
  HttpStatusError,
  type DeliveryEvent,
  type DispatcherEventName,
  type DispatcherOptions,
  type RetryEvent,
} from '../src/index.js';
import { createRecordingTransport } from '../src/testing.js';
import { sleep, FAST_RETRY, recordingLogger, guardUnhandledRejections } from '../../../test/support/index.js';

guardUnhandledRejections();

const URL_A = 'http://a.test/hook';
const names: DispatcherEventName[] = ['delivered', 'sent', 'failed', 'dropped', 'cancelled', 'retry'];

afterEach(() => {
  vi.restoreAllMocks();
});

function setup(options: Omit<DispatcherOptions, 'transport'> = {}) {
  const transport = createRecordingTransport();
  const logger = recordingLogger();
  const dispatcher = createDispatcher({ retry: FAST_RETRY, logger, ...options, transport });
  const events: Array<{ name: DispatcherEventName; payload: DeliveryEvent | RetryEvent }> = [];
  for (const name of names) {
    dispatcher.on(name, (payload) => events.push({ name, payload: payload as DeliveryEvent | RetryEvent }));
  }
  return { dispatcher, transport, logger, events };
}

describe('an event and a counter for every outcome', () => {
  it('delivered', async () => {
    const { dispatcher, events } = setup();
    const handle = dispatcher.send(URL_A, { json: { a: 1 } });
    await handle.done;
    expect(events).toHaveLength(1);
    expect(events[0]?.name).toBe('delivered');
    expect(events[0]?.payload).toMatchObject({
      handle,
      id: handle.id,
      url: URL_A,
      method: 'POST',
      state: 'delivered',
      attempts: 1,
      response: { status: 204 },
      error: undefined,
    });
    expect(dispatcher.stats()).toMatchObject({ delivered: 1, queued: 0, inFlight: 0 });
  });

  it('sent', async () => {
    const { dispatcher, events } = setup();
    await dispatcher.send(URL_A, { confirm: 'sent' }).done;
    expect(events.map((e) => e.name)).toEqual(['sent']);
    expect(dispatcher.stats()).toMatchObject({ sent: 1, delivered: 0 });
  });

  it('retry, then failed, logged at warn', async () => {
    const { dispatcher, transport, events, logger } = setup({ retry: { ...FAST_RETRY, attempts: 2 } });
    transport.respondWith(503);
    const handle = dispatcher.send(URL_A);
    await handle.done;
    expect(events.map((e) => e.name)).toEqual(['retry', 'failed']);
    const retry = events[0]?.payload as RetryEvent;
    expect(retry).toMatchObject({ id: handle.id, url: URL_A, attempt: 1 });
    expect(retry.error).toBeInstanceOf(HttpStatusError);
    expect(retry.delayMs).toBeGreaterThanOrEqual(0);
    expect(events[1]?.payload).toMatchObject({ state: 'failed', attempts: 2 });
    expect(dispatcher.stats()).toMatchObject({ failed: 1, retries: 1 });
    const warn = logger.lines.find((c) => c.msg === 'afterward: notification failed');
    expect(warn?.level).toBe('warn');
    expect(warn?.obj).toMatchObject({ id: handle.id, origin: 'http://a.test', attempts: 2 });
    expect(warn?.obj).not.toHaveProperty('url');
    expect(warn?.obj['err']).toBeInstanceOf(HttpStatusError);
  });

  it('dropped, logged at warn', async () => {
    const { dispatcher, transport, events, logger } = setup({ maxQueued: 1, overflow: 'drop-newest' });
    transport.respondWith(() => sleep(50).then(() => 204));
    const first = dispatcher.send(URL_A);
    const second = dispatcher.send(URL_A);
    expect(second.state).toBe('dropped');
    await first.done;
    expect(events.map((e) => e.name)).toEqual(['dropped', 'delivered']);
    expect(dispatcher.stats()).toMatchObject({ dropped: 1, delivered: 1 });
    expect(logger.lines.some((c) => c.level === 'warn' && c.msg === 'afterward: notification dropped')).toBe(
      true,
    );
  });

  it('cancelled', async () => {
    const { dispatcher, events, logger } = setup();
    const handle = dispatcher.send(URL_A);
    handle.cancel('changed my mind');
    await handle.done;
    expect(events.map((e) => e.name)).toEqual(['cancelled']);
    expect(dispatcher.stats()).toMatchObject({ cancelled: 1 });
    // A cancel is the caller's own decision: not a warning.
    expect(logger.lines.filter((c) => c.level === 'warn')).toHaveLength(0);
  });

  it('once() listeners fire once; off() removes', async () => {
    const { dispatcher } = setup();
    const once = vi.fn();
    const on = vi.fn();
    dispatcher.once('delivered', once);
    dispatcher.on('delivered', on);
    await dispatcher.send(URL_A).done;
    dispatcher.off('delivered', on);
    await dispatcher.send(URL_A).done;
    expect(once).toHaveBeenCalledTimes(1);
    expect(on).toHaveBeenCalledTimes(1);
  });
});

describe('listeners cannot break delivery', () => {
  it('a throwing listener is logged; later listeners and the delivery go on', async () => {
    const { dispatcher, logger } = setup();
    const after = vi.fn();
    dispatcher.on('delivered', () => {
      throw new Error('listener bug');
    });
    dispatcher.on('delivered', after);
    const first = await dispatcher.send(URL_A).done;
    const second = await dispatcher.send(URL_A).done;
    expect([first.state, second.state]).toEqual(['delivered', 'delivered']);
    expect(after).toHaveBeenCalledTimes(2);
    const logged = logger.lines.find((c) => c.msg === 'afterward: an event listener threw');
    expect(logged?.level).toBe('error');
    expect(logged?.obj).toMatchObject({ event: 'delivered' });
  });

  it('an async listener that rejects becomes a log line, not an unhandled rejection', async () => {
    const { dispatcher, transport, logger } = setup({ retry: false });
    transport.respondWith(500);
    // The listener type says void; plenty of users pass an async function anyway.
    const asyncListener = async (): Promise<void> => {
      await sleep(1);
      throw new Error('async listener bug');
    };
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- exactly the misuse under test
    dispatcher.on('failed', asyncListener);
    await dispatcher.send(URL_A).done;
    await sleep(20);
    expect(logger.lines.some((c) => c.msg === 'afterward: an event listener threw')).toBe(true);
  });

  it('a logger that throws does not break delivery either', async () => {
    const transport = createRecordingTransport();
    transport.respondWith(500);
    const dispatcher = createDispatcher({
      retry: false,
      transport,
      logger: {
        warn: () => {
          throw new Error('logger down');
        },
        error: () => {
          throw new Error('logger down');
        },
      },
    });
    expect((await dispatcher.send(URL_A).done).state).toBe('failed');
  });
});

describe('failures are never invisible by default', () => {
  it('the default logger writes a JSON line to stderr for a failure', async () => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    const transport = createRecordingTransport();
    transport.respondWith(410);
    const dispatcher = createDispatcher({ transport });
    const handle = dispatcher.send(URL_A);
    await handle.done;
    vi.restoreAllMocks();
    const line = lines.find((l) => l.includes('notification failed'));
    expect(line).toBeDefined();
    const parsed = JSON.parse(line ?? '{}') as Record<string, unknown>;
    expect(parsed).toMatchObject({
      level: 'warn',
      name: 'afterward',
      id: handle.id,
      origin: 'http://a.test',
      attempts: 1,
    });
    expect(parsed['err']).toMatchObject({ type: 'HttpStatusError', code: 'AFTERWARD_ERR_HTTP_STATUS' });
  });
});
