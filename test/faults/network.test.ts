/**
 * Fault matrix, network rows: one misbehaving receiver per test, a real dispatcher on undici, and
 * a precise expectation about the handle, the attempts the receiver saw and the sockets left open.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { request as undiciRequest } from 'undici';
import { describe, expect, it } from 'vitest';
import {
  hugeBody,
  hugeHeader,
  neverAnswers,
  redirect,
  redirectLoop,
  refusingPort,
  resetMidRequest,
  resetMidResponse,
  slowHeaders,
  statusSequence,
  trickle,
  type FaultServer,
  listen,
  originOf,
  ServerTracker,
  sleep,
  waitUntil,
  startReceiver,
} from '../support/index.js';
import {
  cleanupScope,
  HttpStatusError,
  isAfterwardError,
  NetworkError,
  SHORT_TIMEOUT,
  TimeoutError,
} from './support.js';
import type { Dispatcher, RetryEvent } from './support.js';

const { cleanups, dispatcherFor } = cleanupScope();

/** Registers something to close after the test, and returns it. */
function track<T extends { close(): Promise<unknown> }>(thing: T): T {
  cleanups.push(() => thing.close());
  return thing;
}

function retriesOf(dispatcher: Dispatcher): RetryEvent[] {
  const events: RetryEvent[] = [];
  dispatcher.on('retry', (event) => events.push(event));
  return events;
}

/** Waits for the fault server to see every socket closed: the client dropped what it held. */
async function socketsClosed(server: FaultServer, message: string): Promise<void> {
  await waitUntil(() => server.openConnections() === 0, { timeoutMs: 5000, message });
}

describe('fault: receiver refuses connections, then comes back', () => {
  it('retries with backoff and delivers once the receiver is up', async () => {
    const refusing = await refusingPort();
    const dispatcher = dispatcherFor({ retry: { attempts: 20, minDelay: 20, maxDelay: 100, factor: 2 } });
    const retries = retriesOf(dispatcher);
    const handle = dispatcher.send(`${refusing.url}/hook`, { json: { n: 1 } });

    await waitUntil(() => retries.length >= 3, { message: 'three refused attempts' });
    for (const event of retries) {
      expect(event.error).toBeInstanceOf(NetworkError);
      expect(String((event.error.cause as { code?: string } | undefined)?.code)).toBe('ECONNREFUSED');
    }
    // Full jitter within an exponential window: 0..20, 0..40, 0..80, then capped at 100.
    retries.forEach((event, i) => expect(event.delayMs).toBeLessThanOrEqual(Math.min(100, 20 * 2 ** i)));

    // The receiver comes back on the very port that refused.
    const received: string[] = [];
    const server: Server = createServer((req, res) => {
      req.on('data', (chunk: Buffer) => received.push(chunk.toString()));
      req.on('end', () => res.writeHead(204).end());
    });
    const tracker = track(new ServerTracker(server));
    server.listen(refusing.port, '127.0.0.1');

    const result = await handle.done;
    expect(result.state).toBe('delivered');
    expect(result.attempts).toBeGreaterThanOrEqual(4);
    expect(result.attempts).toBe(retries.length + 1);
    expect(received).toEqual(['{"n":1}']);
    expect(dispatcher.stats()).toMatchObject({ delivered: 1, failed: 0, retries: retries.length });
    expect(tracker.connections).toBe(1);
  });
});

describe('fault: connects but never answers', () => {
  it('ends each attempt at the headers timeout, retries, fails with TimeoutError and closes the socket', async () => {
    const server = track(await neverAnswers());
    // undici runs its headers timer on a coarse clock (ticks of ~0.5 s), so a 300 ms headers
    // timeout fires somewhere in 0.3-1.5 s: the total deadline is set well clear of it.
    const timeout = { ...SHORT_TIMEOUT, total: 3000 };
    const dispatcher = dispatcherFor({ timeout, retry: { attempts: 2, minDelay: 5, maxDelay: 20 } });
    const retries = retriesOf(dispatcher);
    const started = performance.now();
    const result = await dispatcher.send(server.url, { json: { n: 1 } }).done;
    const elapsed = performance.now() - started;

    expect(result.state).toBe('failed');
    expect(result.attempts).toBe(2);
    expect(result.error).toBeInstanceOf(TimeoutError);
    expect(result.error).toMatchObject({ phase: 'headers', code: 'AFTERWARD_ERR_HEADERS_TIMEOUT' });
    expect(retries).toHaveLength(1);
    expect(retries[0]?.error).toMatchObject({ phase: 'headers' });
    expect(server.requestsStarted).toBe(2);
    // Two headers timeouts, not two total deadlines.
    expect(elapsed).toBeGreaterThanOrEqual(2 * SHORT_TIMEOUT.response - 50);
    expect(elapsed).toBeLessThan(2 * timeout.total);
    await socketsClosed(server, 'the never-answering receiver sees its sockets closed');
  });
});

describe('fault: trickles one byte every 300 ms forever', () => {
  it('the total deadline ends the attempt and closes the socket', async () => {
    const server = track(await trickle({ intervalMs: 300 }));
    const dispatcher = dispatcherFor({ timeout: { ...SHORT_TIMEOUT, total: 1200 } });
    const started = performance.now();
    const result = await dispatcher.send(server.url, { json: { n: 1 } }).done;
    const elapsed = performance.now() - started;

    // The 200 head arrived before the trickle: the status decides (confirm: 'response'), and the
    // deadline only stops the body from holding the attempt (and its socket) forever.
    expect(result.state).toBe('delivered');
    expect(result.response?.status).toBe(200);
    expect(result.attempts).toBe(1);
    expect(elapsed).toBeGreaterThanOrEqual(1100);
    expect(elapsed).toBeLessThan(5000);
    await socketsClosed(server, 'the trickling receiver sees its socket closed');
    const written = server.bytesWritten;
    expect(written).toBeLessThan(20);
    await sleep(700);
    expect(server.bytesWritten).toBe(written);
  });

  it("undici's per-chunk body timeout alone never ends it (why a total deadline is needed)", async () => {
    const server = track(await trickle({ intervalMs: 100 }));
    const controller = new AbortController();
    const { body } = await undiciRequest(server.url, {
      method: 'POST',
      body: 'x',
      bodyTimeout: 400,
      signal: controller.signal,
    });
    let ended = false;
    let chunks = 0;
    const reading = (async () => {
      try {
        for await (const _chunk of body) chunks++;
      } catch {
        // The abort below.
      }
      ended = true;
    })();
    // Three body timeouts' worth of time: every chunk resets the per-chunk timer, so it never fires.
    await sleep(1200);
    expect(ended).toBe(false);
    expect(chunks).toBeGreaterThanOrEqual(3);
    controller.abort();
    await reading;
    await socketsClosed(server, 'the aborted trickle closes');
  });
});

describe('fault: slow header bytes', () => {
  it('fails with a headers timeout while the head never completes', async () => {
    const server = track(await slowHeaders({ intervalMs: 100 }));
    const dispatcher = dispatcherFor({ timeout: { ...SHORT_TIMEOUT, total: 3000 }, retry: false });
    const result = await dispatcher.send(server.url, { json: { n: 1 } }).done;

    expect(result.state).toBe('failed');
    expect(result.attempts).toBe(1);
    expect(result.error).toBeInstanceOf(TimeoutError);
    expect(result.error).toMatchObject({ phase: 'headers', code: 'AFTERWARD_ERR_HEADERS_TIMEOUT' });
    await socketsClosed(server, 'the slow-header receiver sees its socket closed');
  });
});

describe('fault: 200 MiB response body', () => {
  it.each([
    ['discarded (default)', {}],
    ['keepBody: 1 KiB', { keepBody: 1024 }],
  ])('reads at most the bounded bytes, drops the socket, memory stays flat: %s', async (_name, init) => {
    const server = track(await hugeBody());
    const dispatcher = dispatcherFor({ timeout: { ...SHORT_TIMEOUT, total: 5000 } });
    const rssBefore = process.memoryUsage().rss;
    const result = await dispatcher.send(server.url, { json: { n: 1 }, ...init }).done;

    expect(result.state).toBe('delivered');
    expect(result.response?.status).toBe(200);
    if ('keepBody' in init) expect(result.response?.body?.length).toBe(1024);
    await socketsClosed(server, 'the huge-body receiver sees its socket dropped');
    // What the server could hand over before the drop: kernel buffers, a few MB at most.
    expect(server.bytesWritten).toBeLessThan(32 * 1024 * 1024);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(100 * 1024 * 1024);
  });
});

describe('fault: 64 KiB response header', () => {
  it('settles failed with a typed NetworkError, not retried, no crash', async () => {
    const server = track(await hugeHeader({ bytes: 64 * 1024 }));
    const dispatcher = dispatcherFor();
    const result = await dispatcher.send(server.url, { json: { n: 1 } }).done;

    expect(result.state).toBe('failed');
    expect(result.error).toBeInstanceOf(NetworkError);
    expect(isAfterwardError(result.error)).toBe(true);
    expect(result.error?.code).toBe('AFTERWARD_ERR_NETWORK');
    expect((result.error?.cause as { code?: string } | undefined)?.code).toBe('UND_ERR_HEADERS_OVERFLOW');
    // The same oversized answer would come again: retrying it would only repeat the failure.
    expect(result.attempts).toBe(1);
    expect(server.requestsStarted).toBe(1);
    await socketsClosed(server, 'the huge-header socket is closed');
  });
});

/** Raw server that writes part of a response head, then resets the connection. */
async function resetMidHead(): Promise<FaultServer & { requestsStarted: number }> {
  const server = createNetServer();
  const tracker = new ServerTracker(server);
  const fault = Object.assign(tracker, { url: '', port: 0, requestsStarted: 0 });
  server.on('connection', (socket) => {
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (head.includes('\r\n\r\n') && head.includes('{"n":1}')) {
        head = '';
        fault.requestsStarted += 1;
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/pl', () => {
          tracker.setTimeout(30, () => socket.resetAndDestroy());
        });
      }
    });
  });
  fault.port = await listen(server);
  fault.url = originOf('127.0.0.1', fault.port);
  return fault;
}

describe('fault: resets mid-request and mid-response', () => {
  it('mid-request (4 MiB body cut by a RST): typed NetworkError before sent, retried', async () => {
    const server = track(await resetMidRequest({ afterBytes: 1 }));
    const dispatcher = dispatcherFor({ retry: { attempts: 3, minDelay: 5, maxDelay: 20 } });
    const retries = retriesOf(dispatcher);
    const result = await dispatcher.send(server.url, { body: Buffer.alloc(4 * 1024 * 1024, 0x63) }).done;

    expect(result.state).toBe('failed');
    expect(result.attempts).toBe(3);
    expect(result.error).toBeInstanceOf(NetworkError);
    expect(retries.map((e) => e.error.code)).toEqual(['AFTERWARD_ERR_NETWORK', 'AFTERWARD_ERR_NETWORK']);
    expect(server.requestsStarted).toBe(3);
    await socketsClosed(server, 'reset sockets are gone');
  });

  it('mid-response, inside the head: typed NetworkError, retried', async () => {
    const server = track(await resetMidHead());
    const dispatcher = dispatcherFor({ retry: { attempts: 3, minDelay: 5, maxDelay: 20 } });
    const retries = retriesOf(dispatcher);
    const result = await dispatcher.send(server.url, { json: { n: 1 } }).done;

    expect(result.state).toBe('failed');
    expect(result.attempts).toBe(3);
    expect(result.error).toBeInstanceOf(NetworkError);
    expect((result.error as NetworkError).beforeSent).toBe(false);
    expect(retries).toHaveLength(2);
    expect(server.requestsStarted).toBe(3);
    await socketsClosed(server, 'reset sockets are gone');
  });

  it('mid-response, inside the body of a 200: the status decides, delivered once, not retried', async () => {
    const server = track(await resetMidResponse({ contentLength: 1000, sentBytes: 500 }));
    const dispatcher = dispatcherFor();
    const result = await dispatcher.send(server.url, { json: { n: 1 } }).done;

    // The receiver said 200: retrying would deliver twice. The cut body changes nothing.
    expect(result.state).toBe('delivered');
    expect(result.attempts).toBe(1);
    expect(server.requestsStarted).toBe(1);
    await socketsClosed(server, 'reset socket is gone');
  });
});

describe('fault: redirects', () => {
  it('a redirect loop is not followed: failed with HttpStatusError 302 after one attempt', async () => {
    const server = track(await redirectLoop({ status: 302 }));
    const dispatcher = dispatcherFor();
    const result = await dispatcher.send(`${server.url}/loop`, { json: { n: 1 } }).done;

    expect(result.state).toBe('failed');
    expect(result.error).toBeInstanceOf(HttpStatusError);
    expect(result.error).toMatchObject({ status: 302, retryable: false });
    expect(result.attempts).toBe(1);
    expect(server.requestsStarted).toBe(1);
  });

  it.each([301, 307, 308] as const)('a %i to elsewhere is not followed, not retried', async (status) => {
    const elsewhere = track(await startReceiver());
    const server = track(await redirect({ location: `${elsewhere.url}/stolen`, status }));
    const dispatcher = dispatcherFor();
    const result = await dispatcher.send(`${server.url}/hook`, { json: { secret: 1 } }).done;

    expect(result.state).toBe('failed');
    expect(result.error).toMatchObject({ status, retryable: false });
    expect(result.response?.headers.location).toBe(`${elsewhere.url}/stolen`);
    expect(result.attempts).toBe(1);
    expect(server.requestsStarted).toBe(1);
    await sleep(50);
    expect(elsewhere.requests).toHaveLength(0);
  });
});

describe('fault: 429 with Retry-After, 503 storm', () => {
  it('honours Retry-After: 1 on a 429 (gap between arrivals about a second)', async () => {
    const server = track(await statusSequence([{ status: 429, headers: { 'retry-after': '1' } }, 200]));
    const dispatcher = dispatcherFor();
    const retries = retriesOf(dispatcher);
    const result = await dispatcher.send(server.url, { json: { n: 1 } }).done;

    expect(result.state).toBe('delivered');
    expect(result.attempts).toBe(2);
    expect(retries).toHaveLength(1);
    expect(retries[0]?.delayMs).toBe(1000);
    expect(retries[0]?.error).toMatchObject({ status: 429, retryAfterMs: 1000 });
    expect(server.arrivals).toHaveLength(2);
    const [first = 0, second = 0] = server.arrivals;
    expect(second - first).toBeGreaterThanOrEqual(900);
  });

  it('a Retry-After past maxRetryAfter is clamped', async () => {
    const server = track(await statusSequence([{ status: 503, headers: { 'retry-after': '3600' } }, 204]));
    const dispatcher = dispatcherFor({ retry: { minDelay: 5, maxDelay: 20, maxRetryAfter: 200 } });
    const retries = retriesOf(dispatcher);
    const result = await dispatcher.send(server.url, { json: { n: 1 } }).done;

    expect(result.state).toBe('delivered');
    expect(retries.map((e) => e.delayMs)).toEqual([200]);
  });

  it('a 503 storm, breaker off: every notification makes exactly `attempts` requests, then fails', async () => {
    const server = track(await statusSequence([503]));
    const attempts = 4;
    const notifications = 25;
    const dispatcher = dispatcherFor({ breaker: false, retry: { attempts, minDelay: 5, maxDelay: 20 } });
    const handles = Array.from({ length: notifications }, (_, n) =>
      dispatcher.send(server.url, { json: { n } }),
    );
    const results = await Promise.all(handles.map((h) => h.done));

    for (const result of results) {
      expect(result.state).toBe('failed');
      expect(result.attempts).toBe(attempts);
      expect(result.error).toMatchObject({ status: 503, retryable: true });
    }
    expect(server.arrivals).toHaveLength(notifications * attempts);
    expect(dispatcher.stats()).toMatchObject({
      failed: notifications,
      retries: notifications * (attempts - 1),
      queued: 0,
      inFlight: 0,
    });
    // Nothing keeps knocking once they failed.
    await sleep(200);
    expect(server.arrivals).toHaveLength(notifications * attempts);
  });

  it('a 503 storm, default breaker: the circuit opens and holds the rest back; close() accounts for all', async () => {
    const server = track(await statusSequence([503]));
    const notifications = 40;
    const dispatcher = dispatcherFor({
      breaker: { openMs: 400 },
      retry: { attempts: 4, minDelay: 5, maxDelay: 20 },
    });
    const opened: string[] = [];
    dispatcher.on('circuit-open', ({ origin }) => opened.push(origin));
    const handles = Array.from({ length: notifications }, (_, n) =>
      dispatcher.send(server.url, { json: { n } }),
    );
    await waitUntil(() => opened.length >= 1, { message: 'the circuit opens' });
    // Attempts already in flight when it opened finish; after that only probes go.
    await waitUntil(() => dispatcher.stats().inFlight === 0, { message: 'in-flight attempts end' });
    const atOpen = server.arrivals.length;
    await sleep(1200);
    // One probe per openMs (400 ms), each failing and re-opening it: no storm.
    const probes = server.arrivals.length - atOpen;
    expect(probes).toBeLessThanOrEqual(5);
    expect(server.arrivals.length).toBeLessThan(notifications * 4);

    const closed = await dispatcher.close({ timeout: 0 });
    const results = await Promise.all(handles.map((h) => h.done));
    const failed = results.filter((r) => r.state === 'failed').length;
    const cancelled = results.filter((r) => r.state === 'cancelled').length;
    expect(failed + cancelled).toBe(notifications);
    expect(closed.cancelled).toBe(cancelled);
    expect(closed.stats).toMatchObject({ failed, cancelled, delivered: 0, queued: 0, inFlight: 0 });
  });
});
