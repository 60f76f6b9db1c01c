/**
 * Tests of the shared test infrastructure, seen from a plain node:http client (undici is a
 * dependency of packages/core only and does not resolve from here). Each fault test also checks
 * that closing the server leaves no socket, server or timer behind.
 */
import { request } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  flaky,
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
} from './faults.js';
import type { FaultServer } from './faults.js';
import { cleanupScope, recordingLogger } from './index.js';
import { sleep, waitUntil } from './net.js';
import { startReceiver } from './receiver.js';
import type { Receiver } from './receiver.js';

interface CallOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Give up (destroy the request) after this long. */
  timeoutMs?: number;
  /** Destroy the response once this many body bytes were read. */
  readLimit?: number;
  maxHeaderSize?: number;
}

interface Outcome {
  status?: number;
  headers?: IncomingHttpHeaders;
  body: Buffer;
  /** performance.now() of each body chunk, to check a trickle's pace. */
  chunkTimes: number[];
  error?: NodeJS.ErrnoException;
  timedOut: boolean;
}

/** One request with its own socket (no agent pool), resolving with whatever happened. */
function call(url: string, options: CallOptions = {}): Promise<Outcome> {
  const { method = 'POST', headers = {}, body, timeoutMs = 3000, readLimit, maxHeaderSize } = options;
  return new Promise((resolve) => {
    const outcome: Outcome = { body: Buffer.alloc(0), chunkTimes: [], timedOut: false };
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      outcome.body = Buffer.concat(chunks);
      resolve(outcome);
    };
    const fail = (err: NodeJS.ErrnoException): void => {
      outcome.error ??= err;
      finish();
    };
    const req = request(url, {
      method,
      headers,
      agent: false,
      ...(maxHeaderSize === undefined ? {} : { maxHeaderSize }),
    });
    const timer = setTimeout(() => {
      outcome.timedOut = true;
      req.destroy();
      finish();
    }, timeoutMs);
    req.on('error', fail);
    req.on('response', (res) => {
      outcome.status = res.statusCode ?? 0;
      outcome.headers = res.headers;
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        outcome.chunkTimes.push(performance.now());
        read += chunk.length;
        if (readLimit !== undefined && read >= readLimit) {
          req.destroy();
          finish();
        }
      });
      res.on('error', fail);
      res.on('end', finish);
    });
    req.end(body);
  });
}

/** Counts of the resources that would keep the event loop alive. */
function resources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const name of process.getActiveResourcesInfo()) counts.set(name, (counts.get(name) ?? 0) + 1);
  return counts;
}

/** Waits until no more TCP handles or timers are active than at `before`. */
async function expectDrained(before: Map<string, number>): Promise<void> {
  const extra = (): string[] => {
    const now = resources();
    return ['TCPSocketWrap', 'TCPServerWrap', 'Timeout'].filter(
      (name) => (now.get(name) ?? 0) > (before.get(name) ?? 0),
    );
  };
  await waitUntil(() => extra().length === 0, {
    timeoutMs: 1000,
    message: 'event loop drained',
  }).catch((err: unknown) => {
    throw new Error(`${String(err)}; extra now: ${extra().join(', ')}`);
  });
}

describe('net', () => {
  it('sleep waits and waitUntil polls until true', async () => {
    const start = performance.now();
    await sleep(30);
    expect(performance.now() - start).toBeGreaterThanOrEqual(25);
    let n = 0;
    await waitUntil(() => ++n >= 3, { intervalMs: 5 });
    expect(n).toBe(3);
  });

  it('waitUntil rejects with the message on timeout', async () => {
    await expect(waitUntil(() => false, { timeoutMs: 50, message: 'the moon' })).rejects.toThrow(
      'waitUntil: the moon not met within 50 ms',
    );
  });
});

describe('startReceiver', () => {
  let receiver: Receiver | undefined;
  afterEach(async () => {
    await receiver?.close();
    receiver = undefined;
  });

  it('records method, url, headers, body and order; answers 204 by default', async () => {
    receiver = await startReceiver();
    expect(receiver.url).toBe(`http://127.0.0.1:${receiver.port}`);
    expect(receiver.origin).toBe(receiver.url);
    const first = await call(`${receiver.url}/one?x=1`, {
      headers: { 'content-type': 'application/json', 'x-multi': ['a', 'b'] },
      body: JSON.stringify({ n: 1 }),
    });
    const second = await call(`${receiver.url}/two`, { method: 'PUT', body: 'plain' });
    expect(first.status).toBe(204);
    expect(second.status).toBe(204);

    const [a, b] = await receiver.waitFor(2);
    expect(a?.method).toBe('POST');
    expect(a?.url).toBe('/one?x=1');
    expect(a?.headers['content-type']).toBe('application/json');
    expect(a?.json()).toEqual({ n: 1 });
    // Repeated headers survive as separate raw entries.
    expect(a?.rawHeaders.filter((v, i, all) => all[i - 1] === 'x-multi' && i % 2 === 1)).toEqual(['a', 'b']);
    expect(b?.method).toBe('PUT');
    expect(b?.body.toString()).toBe('plain');
    expect(b?.receivedAt).toBeGreaterThan(a?.receivedAt ?? Infinity);
    expect(a?.remotePort).toBeGreaterThan(0);
    expect(receiver.requests).toHaveLength(2);
    expect(receiver.connections).toBe(2);
  });

  it('waitFor resolves for requests arriving later, and rejects with a clear error on timeout', async () => {
    receiver = await startReceiver();
    const waiting = receiver.waitFor(1);
    await call(`${receiver.url}/late`, { body: 'x' });
    expect((await waiting).map((r) => r.url)).toEqual(['/late']);

    await expect(receiver.waitFor(3, 100)).rejects.toThrow(
      `Receiver ${receiver.url}: expected 3 request(s) within 100 ms, got 1 [POST /late]`,
    );
  });

  it('respondWith replaces the answer; a throwing handler gives 500; delayMs delays it', async () => {
    receiver = await startReceiver(undefined, { delayMs: 150 });
    receiver.respondWith(async (req, res) => {
      await sleep(1);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ got: req.json<{ n: number }>().n }));
    });
    const start = performance.now();
    const ok = await call(receiver.url, { body: '{"n":7}' });
    expect(performance.now() - start).toBeGreaterThanOrEqual(140);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body.toString())).toEqual({ got: 7 });

    receiver.respondWith(() => {
      throw new Error('handler blew up');
    });
    const failed = await call(receiver.url, { body: '{}' });
    expect(failed.status).toBe(500);
    expect(failed.body.toString()).toBe('handler blew up');
  });

  it('close destroys keep-alive sockets, and rejects pending waiters', async () => {
    const before = resources();
    receiver = await startReceiver();
    const socket = connect(receiver.port, '127.0.0.1');
    socket.write(`GET /keep HTTP/1.1\r\nhost: x\r\n\r\n`);
    socket.resume();
    await receiver.waitFor(1);
    await waitUntil(() => receiver?.openConnections() === 1);
    const pending = receiver.waitFor(2, 10_000);
    const clientClosed = new Promise((resolve) => socket.once('close', resolve));
    await receiver.close();
    receiver = undefined;
    await expect(pending).rejects.toThrow('closed with 1 request(s) received');
    await clientClosed;
    await expectDrained(before);
  });
});

describe('faults', () => {
  let server: FaultServer | undefined;
  let before = new Map<string, number>();
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await expectDrained(before);
  });
  const start = async <TServer extends FaultServer>(created: Promise<TServer>): Promise<TServer> => {
    before = resources();
    const s = await created;
    server = s;
    return s;
  };

  it('refusingPort: nothing listens, connecting gives ECONNREFUSED', async () => {
    const s = await start(refusingPort());
    const out = await call(s.url);
    expect(out.error?.code).toBe('ECONNREFUSED');
  });

  it('neverAnswers: reads the request and never responds', async () => {
    const s = await start(neverAnswers());
    const out = await call(s.url, { body: 'hello', timeoutMs: 200 });
    expect(out.timedOut).toBe(true);
    expect(out.status).toBeUndefined();
    expect(s.requestsStarted).toBe(1);
    expect(s.connections).toBe(1);
  });

  it('trickle: headers at once, then about one byte per interval', async () => {
    const s = await start(trickle({ intervalMs: 50 }));
    const out = await call(s.url, { timeoutMs: 420 });
    expect(out.status).toBe(200);
    expect(out.timedOut).toBe(true);
    // ~8 ticks in 420 ms; loose bounds for a loaded 2-core machine.
    expect(out.body.length).toBeGreaterThanOrEqual(4);
    expect(out.body.length).toBeLessThanOrEqual(9);
    expect(out.chunkTimes.every((t, i, all) => i === 0 || t - (all[i - 1] ?? 0) >= 30)).toBe(true);
  });

  it('slowHeaders: the status line arrives, the head never completes', async () => {
    const s = await start(slowHeaders({ intervalMs: 20 }));
    const out = await call(s.url, { timeoutMs: 250 });
    expect(out.timedOut).toBe(true);
    expect(out.status).toBeUndefined();

    const socket = connect(s.port, '127.0.0.1');
    let seen = '';
    socket.on('data', (chunk: Buffer) => (seen += chunk.toString('latin1')));
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await waitUntil(() => seen.length >= 'HTTP/1.1 200 OK\r\nx-slow: '.length + 3);
    expect(seen).toMatch(/^HTTP\/1\.1 200 OK\r\nx-slow: a+$/);
    socket.destroy();
    expect(s.requestsStarted).toBe(2);
  });

  it('hugeBody: streams with backpressure and stops when the client goes away', async () => {
    const s = await start(hugeBody());
    const out = await call(s.url, { readLimit: 1024 * 1024 });
    expect(out.status).toBe(200);
    expect(out.headers?.['content-length']).toBe(String(200 * 1024 * 1024));
    await waitUntil(() => s.openConnections() === 0);
    // Kernel and stream buffers on loopback hold a few MB at most, never the 200 MiB.
    expect(s.bytesWritten).toBeGreaterThanOrEqual(1024 * 1024);
    expect(s.bytesWritten).toBeLessThan(32 * 1024 * 1024);
  });

  it('hugeBody: a small one is delivered whole', async () => {
    const s = await start(hugeBody({ bytes: 3 * 1024 * 1024 + 5 }));
    const out = await call(s.url);
    expect(out.body.length).toBe(3 * 1024 * 1024 + 5);
    expect(s.bytesWritten).toBe(3 * 1024 * 1024 + 5);
  });

  it('hugeHeader: node:http refuses it with HPE_HEADER_OVERFLOW', async () => {
    const s = await start(hugeHeader());
    const out = await call(s.url);
    expect(out.error?.code).toBe('HPE_HEADER_OVERFLOW');
    // With a larger limit the same answer parses, so the header really is 64 KiB.
    const lenient = await call(s.url, { maxHeaderSize: 128 * 1024 });
    expect(lenient.status).toBe(200);
    expect(lenient.headers?.['x-huge']).toHaveLength(64 * 1024);
  });

  it('resetMidRequest: the client sees a reset while sending', async () => {
    const s = await start(resetMidRequest());
    const out = await call(s.url, { body: Buffer.alloc(8 * 1024 * 1024) });
    expect(out.status).toBeUndefined();
    expect(['ECONNRESET', 'EPIPE']).toContain(out.error?.code);
    expect(s.requestsStarted).toBe(1);
  });

  it('resetMidResponse: head and part of the body, then ECONNRESET', async () => {
    const s = await start(resetMidResponse({ contentLength: 1000, sentBytes: 400 }));
    const out = await call(s.url, { body: 'x' });
    expect(out.status).toBe(200);
    expect(out.headers?.['content-length']).toBe('1000');
    expect(out.body.length).toBe(400);
    expect(out.error?.code).toBe('ECONNRESET');
  });

  it('redirect and redirectLoop answer 3xx and count requests', async () => {
    const s = await start(redirect({ location: 'http://127.0.0.1:1/elsewhere', status: 307 }));
    const out = await call(`${s.url}/a`);
    expect(out.status).toBe(307);
    expect(out.headers?.location).toBe('http://127.0.0.1:1/elsewhere');
    await s.close();

    const loop = await start(redirectLoop());
    const first = await call(`${loop.url}/again`);
    expect(first.status).toBe(302);
    expect(first.headers?.location).toBe(`${loop.url}/again`);
    await call(first.headers?.location ?? '');
    expect(loop.requestsStarted).toBe(2);
  });

  it('statusSequence answers in order, repeats the last, records arrivals', async () => {
    const s = await start(
      statusSequence([503, { status: 429, headers: { 'retry-after': '1' } }, { status: 200, body: 'ok' }]),
    );
    const statuses: Array<number | undefined> = [];
    const out429 = [];
    for (let i = 0; i < 4; i += 1) {
      const out = await call(s.url, { body: String(i) });
      statuses.push(out.status);
      out429.push(out.headers?.['retry-after']);
    }
    expect(statuses).toEqual([503, 429, 200, 200]);
    expect(out429).toEqual([undefined, '1', undefined, undefined]);
    expect(s.arrivals).toHaveLength(4);
    expect([...s.arrivals].sort((x, y) => x - y)).toEqual(s.arrivals);
  });

  it('flaky resets every n-th request', async () => {
    const s = await start(flaky({ failEvery: 2 }));
    const outs = [];
    for (let i = 0; i < 4; i += 1) outs.push(await call(s.url, { body: 'x' }));
    expect(outs.map((o) => o.status ?? o.error?.code)).toEqual([204, 'ECONNRESET', 204, 'ECONNRESET']);
  });
});

describe('cleanupScope', () => {
  const order: string[] = [];
  const { cleanups, defer, track } = cleanupScope();
  const closable = { closed: false, close: () => void (closable.closed = true) };

  it('collects cleanups during a test', () => {
    cleanups.push(() => void order.push('first'));
    defer(async () => {
      await sleep(5);
      order.push('second');
    });
    expect(track(closable)).toBe(closable);
    expect(order).toEqual([]);
    expect(closable.closed).toBe(false);
  });

  it('ran them after that test, newest first, one at a time, and emptied the list', () => {
    expect(closable.closed).toBe(true);
    expect(order).toEqual(['second', 'first']);
    expect(cleanups).toHaveLength(0);
  });
});

describe('recordingLogger', () => {
  it('keeps every call in order with its level, object and message', () => {
    const logger = recordingLogger();
    logger.warn({ origin: 'a' }, 'afterward: one');
    logger.error({ code: 'X' });
    logger.debug({}, 'afterward: three');
    expect(logger.lines).toEqual([
      { level: 'warn', obj: { origin: 'a' }, msg: 'afterward: one' },
      { level: 'error', obj: { code: 'X' }, msg: undefined },
      { level: 'debug', obj: {}, msg: 'afterward: three' },
    ]);
  });
});
