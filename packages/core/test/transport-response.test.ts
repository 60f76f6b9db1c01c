import { describe, expect, it } from 'vitest';
import { createDispatcher, TimeoutError, type DispatcherOptions } from '../src/index.js';
import { AttemptAbort } from '../src/transport/attempt-abort.js';
import type { TransportRequest } from '../src/transport/transport.js';
import { createUndiciTransport } from '../src/transport/undici.js';
import {
  cleanupScope,
  guardUnhandledRejections,
  recordingLogger,
  startReceiver,
  waitUntil,
  type Receiver,
} from '../../../test/support/index.js';

guardUnhandledRejections();

const { cleanups: cleanup } = cleanupScope();

function dispatcherFor(options: DispatcherOptions = {}) {
  const dispatcher = createDispatcher({ retry: false, logger: recordingLogger(), ...options });
  cleanup.push(() => dispatcher.close({ timeout: 0 }));
  return dispatcher;
}

async function receiver(handler: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const started = await startReceiver(handler);
  cleanup.push(() => started.close());
  return started;
}

describe("the built-in transport's response handling (confirm: 'response')", () => {
  it('reads a small body to its end and reuses the connection', async () => {
    const target = await receiver((_req, res) => {
      res.statusCode = 200;
      res.end('x'.repeat(1_000));
    });
    const dispatcher = dispatcherFor({ concurrencyPerOrigin: 1 });
    for (let i = 0; i < 3; i++) {
      const result = await dispatcher.send(target.url, { json: { i } }).done;
      expect(result.state).toBe('delivered');
      expect(result.response?.status).toBe(200);
      expect(result.response?.body).toBeUndefined();
    }
    expect(target.connections).toBe(1);
  });

  it('drops the socket at once for a declared length past maxResponseBytes, and still delivers', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 'x');
    const target = await receiver((_req, res) => {
      res.statusCode = 201;
      res.setHeader('content-length', big.length);
      res.end(big);
    });
    const dispatcher = dispatcherFor({ maxResponseBytes: 1024 });
    const result = await dispatcher.send(target.url, { body: 'a' }).done;
    expect(result).toMatchObject({ state: 'delivered', response: { status: 201 } });
    await waitUntil(() => target.openConnections() === 0, { message: 'socket dropped' });
  });

  it('drops the socket once an endless chunked body passes maxResponseBytes, before the total deadline', async () => {
    const target = await receiver((_req, res) => {
      res.statusCode = 200;
      const chunk = Buffer.alloc(4096, 'y');
      const timer = setInterval(() => {
        if (!res.destroyed) res.write(chunk);
      }, 2);
      res.on('close', () => clearInterval(timer));
    });
    const dispatcher = dispatcherFor({ maxResponseBytes: 64 * 1024, timeout: { total: 10_000 } });
    const started = performance.now();
    const result = await dispatcher.send(target.url).done;
    expect(result).toMatchObject({ state: 'delivered', response: { status: 200 } });
    expect(performance.now() - started).toBeLessThan(5_000);
    await waitUntil(() => target.openConnections() === 0, { message: 'socket dropped' });
  });

  it('keeps the first keepBody bytes of a body that comes in many chunks', async () => {
    const target = await receiver((_req, res) => {
      res.statusCode = 200;
      let n = 0;
      const timer = setInterval(() => {
        if (n === 5) {
          clearInterval(timer);
          res.end();
        } else res.write(`chunk${n++};`);
      }, 5);
    });
    const dispatcher = dispatcherFor();
    const result = await dispatcher.send(target.url, { keepBody: 15 }).done;
    expect(result.response?.body?.toString()).toBe('chunk0;chunk1;c');
  });

  it('an attempt aborted while it waits for a connection in undici never reaches the receiver', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const target = await receiver(async (_req, res) => {
      await held;
      res.statusCode = 204;
      res.end();
    });
    const transport = createUndiciTransport({ connectionsPerOrigin: 1 });
    cleanup.push(() => transport.close());
    const request = (path: string): TransportRequest => {
      const url = new URL(path, target.url);
      return {
        id: path,
        url,
        origin: url.origin,
        path: url.pathname,
        method: 'POST',
        headers: ['content-type', 'text/plain'],
        body: Buffer.from('x'),
        confirm: 'response',
        keepBody: 0,
        timeout: { connect: 5_000, response: 10_000, total: 15_000 },
      };
    };
    const first = transport.send(request('/first'), new AttemptAbort(1));
    await target.waitFor(1);
    // One connection, busy: the second waits in undici's queue.
    const abort = new AttemptAbort(1);
    const second = transport.send(request('/second'), abort);
    abort.abort(new TimeoutError('total', 1));
    const result = await second;
    expect(result.kind).toBe('error');
    expect(result.kind === 'error' && result.error).toBeInstanceOf(TimeoutError);
    release();
    expect((await first).kind).toBe('response');
    // Taken out of the queue: not sent once the connection was free.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(target.requests.map((r) => r.url)).toEqual(['/first']);
  });
});
