import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createDispatcher, NetworkError, type Dispatcher, type RetryEvent } from '../src/index.js';
import {
  cleanupScope,
  listen,
  refusingPort,
  ServerTracker,
  resetMidRequest,
  statusSequence,
  type FaultServer,
  sleep,
  waitUntil,
  startReceiver,
  FAST_RETRY,
  recordingLogger,
  guardUnhandledRejections,
} from '../../../test/support/index.js';

guardUnhandledRejections();

const { cleanups: cleanup } = cleanupScope();

function dispatcherFor(): { dispatcher: Dispatcher; retries: RetryEvent[] } {
  const dispatcher = createDispatcher({ retry: { ...FAST_RETRY, attempts: 3 }, logger: recordingLogger() });
  const retries: RetryEvent[] = [];
  dispatcher.on('retry', (event) => retries.push(event));
  cleanup.push(() => dispatcher.close({ timeout: 0 }));
  return { dispatcher, retries };
}

interface SlowReader {
  url: string;
  /** Bytes read so far, head included. */
  readonly bytesRead: number;
  /** Length and sha256 of each fully received body. */
  readonly bodies: Array<{ length: number; sha256: string }>;
  openConnections(): number;
  close(): Promise<void>;
}

/**
 * A raw TCP receiver that waits before reading, then reads slowly and never answers, so the
 * client's socket buffers fill and "queued on the socket" and "handed to the kernel" are far
 * apart in time. Raw, not node:http: node:http aborts an unanswered request as soon as the client
 * closes, dropping body bytes it had not yet handed to a slow handler; a raw socket reads
 * everything the kernel received.
 */
async function slowReader({ startAfterMs = 300 } = {}): Promise<SlowReader> {
  const sockets = new Set<Socket>();
  const bodies: Array<{ length: number; sha256: string }> = [];
  let bytesRead = 0;
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    socket.pause();
    let head = Buffer.alloc(0);
    let expected = -1;
    let length = 0;
    const hash = createHash('sha256');
    const onData = (chunk: Buffer): void => {
      bytesRead += chunk.length;
      if (expected < 0) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const match = /content-length: *(\d+)/i.exec(head.subarray(0, end).toString('latin1'));
        expected = Number(match?.[1] ?? 0);
        chunk = head.subarray(end + 4);
      }
      hash.update(chunk);
      length += chunk.length;
      if (length >= expected) bodies.push({ length, sha256: hash.digest('hex') });
      socket.pause();
      setTimeout(() => socket.resume(), 1);
    };
    const timer = setTimeout(() => {
      socket.on('data', onData);
      socket.resume();
    }, startAfterMs);
    socket.once('close', () => clearTimeout(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    get bytesRead() {
      return bytesRead;
    },
    bodies,
    openConnections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("confirm: 'sent'", () => {
  it('settles only once the whole large body was written; the slow receiver gets all of it', async () => {
    const reader = await slowReader();
    cleanup.push(() => reader.close());
    const { dispatcher } = dispatcherFor();
    const body = randomBytes(16 * 1024 * 1024);
    const handle = dispatcher.send(`${reader.url}/big`, { body, confirm: 'sent' });

    const result = await handle.done;
    const readWhenSent = reader.bytesRead;
    expect(result.state).toBe('sent');
    expect(result.attempts).toBe(1);
    expect(result.response).toBeUndefined();
    // 16 MiB exceeds loopback socket buffers, and the receiver only starts reading after 300 ms:
    // settling before it read anything would mean "sent" was reported with bytes still in memory.
    expect(readWhenSent).toBeGreaterThan(0);

    await waitUntil(() => reader.bodies.length === 1, { timeoutMs: 15_000, message: 'full body received' });
    expect(reader.bodies[0]).toEqual({
      length: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    });
    expect(dispatcher.stats()).toMatchObject({ sent: 1, delivered: 0, inFlight: 0 });
  });

  it('settles without waiting for the answer; the connection lingers only until the linger deadline', async () => {
    let handlerCalls = 0;
    const receiver = await startReceiver(() => {
      handlerCalls++;
      // The receiver's work never ends; it never answers.
      return new Promise<void>(() => undefined);
    });
    cleanup.push(() => receiver.close());
    const { dispatcher } = dispatcherFor();
    const started = performance.now();
    const handle = dispatcher.send(receiver.url, {
      json: { event: 'x' },
      confirm: 'sent',
      timeout: { response: 10_000 },
    });
    const result = await handle.done;
    expect(result.state).toBe('sent');
    // Settled at the flush: the 10 s response timeout (the linger deadline) never came into play.
    expect(performance.now() - started).toBeLessThan(5_000);
    const [request] = await receiver.waitFor(1);
    expect(request?.json()).toEqual({ event: 'x' });
    expect(receiver.openConnections()).toBe(1);
    // The connection lingers, unref'd, until the linger deadline (the response timeout) ends.
    const short = dispatcher.send(receiver.url, { body: 'y', confirm: 'sent', timeout: { response: 200 } });
    expect((await short.done).state).toBe('sent');
    await receiver.waitFor(2);
    await waitUntil(() => receiver.openConnections() === 1, {
      message: 'the 200 ms linger closed its connection',
    });
    // The handler is still waiting: the close came from our side, not from an answer.
    expect(handlerCalls).toBe(2);
  });

  it('does not read (or wait for) the status: a 503 receiver still counts as sent, once', async () => {
    const server = await statusSequence([503]);
    cleanup.push(() => server.close());
    const { dispatcher, retries } = dispatcherFor();
    const result = await dispatcher.send(server.url, { body: 'x', confirm: 'sent' }).done;
    expect(result).toMatchObject({ state: 'sent', attempts: 1 });
    await sleep(50);
    expect(server.requestsStarted).toBe(1);
    expect(retries).toHaveLength(0);
  });

  it('retries a refused connection (nothing left yet)', async () => {
    const refusing = await refusingPort();
    const { dispatcher, retries } = dispatcherFor();
    const result = await dispatcher.send(refusing.url, { body: 'x', confirm: 'sent' }).done;
    expect(result).toMatchObject({ state: 'failed', attempts: 3 });
    expect(result.error).toBeInstanceOf(NetworkError);
    expect((result.error as NetworkError).beforeSent).toBe(true);
    expect(retries).toHaveLength(2);
  });

  it('retries a connection reset before the request was fully written', async () => {
    const server: FaultServer = await resetMidRequest({ afterBytes: 1 });
    cleanup.push(() => server.close());
    const { dispatcher } = dispatcherFor();
    const result = await dispatcher.send(server.url, { body: randomBytes(8 * 1024 * 1024), confirm: 'sent' })
      .done;
    expect(result).toMatchObject({ state: 'failed', attempts: 3 });
    expect(server.requestsStarted).toBe(3);
  });

  it('never retries once the bytes have left, even if the connection then breaks', async () => {
    const server = await resetMidRequest({ afterBytes: 1_000_000 });
    cleanup.push(() => server.close());
    const { dispatcher, retries } = dispatcherFor();
    // A small body: the receiver resets at the end of it, after everything was written.
    const result = await dispatcher.send(server.url, { body: 'small', confirm: 'sent' }).done;
    expect(result).toMatchObject({ state: 'sent', attempts: 1 });
    await sleep(50);
    expect(server.requestsStarted).toBe(1);
    expect(retries).toHaveLength(0);
  });
});

type ReadMode = 'flowing' | 'for await' | 'paused then resumed' | 'slow pipe';

/** Reads the body the way `mode` says, then resolves with it. */
async function readBody(req: IncomingMessage, mode: ReadMode): Promise<Buffer> {
  const chunks: Buffer[] = [];
  switch (mode) {
    case 'flowing':
      return new Promise((resolve, reject) => {
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.once('end', () => resolve(Buffer.concat(chunks)));
        req.once('error', reject);
      });
    case 'for await':
      await sleep(20);
      for await (const chunk of req) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    case 'paused then resumed':
      req.pause();
      await sleep(150);
      // A listener alone does not restart a stream paused explicitly: resume() does.
      setImmediate(() => req.resume());
      return readBody(req, 'flowing');
    case 'slow pipe':
      return new Promise((resolve, reject) => {
        const sink = new Writable({
          highWaterMark: 16 * 1024,
          write(chunk: Buffer, _encoding, callback) {
            chunks.push(chunk);
            setTimeout(callback, 1);
          },
        });
        sink.once('finish', () => resolve(Buffer.concat(chunks)));
        req.once('error', reject);
        req.pipe(sink);
      });
  }
}

describe("confirm: 'sent' with Node http receivers that read asynchronously", () => {
  const modes: ReadMode[] = ['flowing', 'for await', 'paused then resumed', 'slow pipe'];
  const sizes = [16 * 1024, 1024 * 1024, 16 * 1024 * 1024];

  it.each(modes)(
    '%s: every byte of 16 KiB to 16 MiB arrives and the receiver sees no error',
    async (mode) => {
      const received: Array<{ length: number; sha256: string }> = [];
      const errors: string[] = [];
      const server = createHttpServer((req, res) => {
        req.once('aborted', () => errors.push('aborted'));
        req.on('error', (error) => errors.push(`request: ${error.message}`));
        res.on('error', (error) => errors.push(`response: ${error.message}`));
        readBody(req, mode).then(
          (body) => {
            received.push({ length: body.length, sha256: createHash('sha256').update(body).digest('hex') });
            res.statusCode = 204;
            res.end();
          },
          (error: unknown) => errors.push(`read: ${String(error)}`),
        );
      });
      const tracker = new ServerTracker(server);
      const port = await listen(server);
      cleanup.push(() => tracker.close());
      const { dispatcher } = dispatcherFor();
      const bodies = sizes.map((size) => randomBytes(size));
      const results = await Promise.all(
        bodies.map((body) => dispatcher.send(`http://127.0.0.1:${port}/`, { body, confirm: 'sent' }).done),
      );
      expect(results.map((result) => result.state)).toEqual(['sent', 'sent', 'sent']);
      await waitUntil(() => received.length === sizes.length || errors.length > 0, {
        message: `${mode}: every body read`,
      });
      expect(errors).toEqual([]);
      const expected = bodies.map((body) => ({
        length: body.length,
        sha256: createHash('sha256').update(body).digest('hex'),
      }));
      expect([...received].sort((a, b) => a.length - b.length)).toEqual(expected);
      // Answered, so the sender closed its connections.
      await waitUntil(() => tracker.openConnections() === 0, {
        message: 'connections closed after the answers',
      });
      expect(errors).toEqual([]);
    },
  );
});
