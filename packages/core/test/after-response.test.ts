import {
  createServer,
  IncomingMessage,
  request as httpRequest,
  ServerResponse,
  type Server,
} from 'node:http';
import { connect, Socket, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createAfterResponse, type AfterResponse } from '../src/adapter.js';
import {
  CancelledError,
  createDispatcher,
  HookError,
  HookTimeoutError,
  InvalidArgumentError,
  QueueFullError,
  type ClientAbortPolicy,
  type Dispatcher,
  type HookErrorEvent,
  type ResponseInfo,
} from '../src/index.js';
import { createRecordingTransport, type RecordingTransport } from '../src/testing.js';
import {
  cleanupScope,
  sleep,
  waitUntil,
  recordingLogger,
  guardUnhandledRejections,
} from '../../../test/support/index.js';

guardUnhandledRejections();

type Info = ResponseInfo<IncomingMessage, ServerResponse>;
type Handler = (work: AfterResponse<Info>, req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

interface App {
  url: string;
  dispatcher: Dispatcher;
  transport: RecordingTransport;
  hookErrors: HookErrorEvent[];
  /** Errors thrown by a handler, as the framework would see them. */
  handlerErrors: unknown[];
}

const { cleanups: cleanup } = cleanupScope();

/** A plain node:http server whose handler gets the after-response machinery for its response. */
async function app(
  handler: Handler,
  options: { onClientAbort?: ClientAbortPolicy; maxPerResponse?: number } = {},
): Promise<App> {
  const transport = createRecordingTransport();
  const dispatcher = createDispatcher({
    transport,
    logger: recordingLogger(),
    retry: false,
    hookTimeout: 2_000,
  });
  const hookErrors: HookErrorEvent[] = [];
  const handlerErrors: unknown[] = [];
  dispatcher.on('hook-error', (event) => hookErrors.push(event));
  const server: Server = createServer((req, res) => {
    const started = performance.now();
    const work = createAfterResponse<Info>(res, {
      dispatcher,
      startedAt: started,
      ...options,
      describe: (outcome, durationMs) => ({
        outcome,
        statusCode: res.statusCode,
        durationMs,
        method: req.method ?? '',
        url: req.url ?? '',
        route: undefined,
        req,
        res,
      }),
    });
    Promise.resolve()
      .then(() => handler(work, req, res))
      .catch((error: unknown) => {
        handlerErrors.push(error);
        if (!res.headersSent) res.statusCode = 500;
        res.end();
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(async () => {
    await dispatcher.close({ timeout: 0 });
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, dispatcher, transport, hookErrors, handlerErrors };
}

/** GET that resolves with the status once the whole response arrived. */
function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    })
      .on('error', reject)
      .end();
  });
}

/** GET that destroys its socket as soon as the response headers arrived (a client that goes away). */
function getAndAbort(url: string): Promise<void> {
  return new Promise((resolve) => {
    const req = httpRequest(url, (res) => {
      res.socket.destroy();
      resolve();
    });
    req.on('error', () => resolve());
    req.end();
  });
}

describe('createAfterResponse with node:http', () => {
  it('parks a notification until the response finished, then sends it', async () => {
    let handle: ReturnType<AfterResponse<Info>['fireAndForget']> | undefined;
    const seenWhileOpen: { state?: string; sent?: number; drained?: boolean } = {};
    const { url, transport, dispatcher } = await app(async (work, _req, res) => {
      handle = work.fireAndForget('http://hooks.test/a', { json: { event: 'order.paid' } });
      await sleep(30);
      seenWhileOpen.state = handle.state;
      seenWhileOpen.sent = transport.requests.length;
      seenWhileOpen.drained = (await dispatcher.drain({ timeout: 20 })).drained;
      expect(work.released).toBe(false);
      res.statusCode = 201;
      res.end('ok');
    });
    expect(await get(url)).toBe(201);
    expect(seenWhileOpen).toEqual({ state: 'pending', sent: 0, drained: false });
    await dispatcher.drain({ timeout: 2_000 });
    expect(handle?.state).toBe('delivered');
    expect(transport.requests[0]?.json()).toEqual({ event: 'order.paid' });
  });

  it('fireAndForget and after work taken off the object, and keep their identity', async () => {
    let same = false;
    const ran: string[] = [];
    const { url, transport, dispatcher } = await app((work, _req, res) => {
      const { fireAndForget, after } = work;
      same = work.fireAndForget === fireAndForget && work.after === after;
      fireAndForget('http://hooks.test/detached', { json: { detached: true } });
      after((info) => void ran.push(info.outcome));
      res.end();
    });
    await get(url);
    await dispatcher.drain({ timeout: 2_000 });
    expect(same).toBe(true);
    expect(transport.requests.map((r) => r.json())).toEqual([{ detached: true }]);
    expect(ran).toEqual(['finished']);
  });

  it('computes a lazy json payload once, from the final status and outcome', async () => {
    let calls = 0;
    const { url, transport, dispatcher } = await app((work, _req, res) => {
      work.fireAndForget({
        url: 'http://hooks.test/b',
        json: (info: Info) => {
          calls++;
          return { status: info.statusCode, outcome: info.outcome, path: info.url, ms: info.durationMs >= 0 };
        },
      });
      res.statusCode = 202;
      res.end();
    });
    await get(`${url}/orders?x=1`);
    await dispatcher.drain({ timeout: 2_000 });
    expect(calls).toBe(1);
    expect(transport.requests[0]?.json()).toEqual({
      status: 202,
      outcome: 'finished',
      path: '/orders?x=1',
      ms: true,
    });
  });

  it('a lazy json function that throws fails that notification only, with a typed error', async () => {
    let handle: ReturnType<AfterResponse<Info>['fireAndForget']> | undefined;
    const { url, dispatcher, transport } = await app((work, _req, res) => {
      handle = work.fireAndForget('http://hooks.test/c', {
        json: () => {
          throw new Error('payload bug');
        },
      });
      res.end();
    });
    expect(await get(url)).toBe(200);
    await dispatcher.drain({ timeout: 2_000 });
    expect(handle?.state).toBe('failed');
    expect(handle?.error).toBeInstanceOf(InvalidArgumentError);
    expect(transport.requests).toHaveLength(0);
  });

  it.each([
    ['always', 200, true],
    ['always', 500, true],
    ['ok', 200, true],
    ['ok', 404, false],
    ['error', 404, true],
    ['error', 200, false],
    ['aborted', 200, false],
  ] as const)("when '%s' with status %i → sent: %s", async (when, status, sent) => {
    let handle: ReturnType<AfterResponse<Info>['fireAndForget']> | undefined;
    const { url, dispatcher } = await app((work, _req, res) => {
      handle = work.fireAndForget('http://hooks.test/w', { when });
      res.statusCode = status;
      res.end();
    });
    await get(url);
    await dispatcher.drain({ timeout: 2_000 });
    expect(handle?.state).toBe(sent ? 'delivered' : 'cancelled');
    if (!sent) expect(handle?.error).toBeInstanceOf(CancelledError);
  });

  it('takes a predicate for when, and a throwing predicate skips instead of crashing', async () => {
    const handles: Array<ReturnType<AfterResponse<Info>['fireAndForget']>> = [];
    const { url, dispatcher } = await app((work, _req, res) => {
      handles.push(work.fireAndForget('http://hooks.test/p', { when: (info) => info.statusCode === 418 }));
      handles.push(work.fireAndForget('http://hooks.test/q', { when: (info) => info.statusCode === 200 }));
      handles.push(
        work.fireAndForget('http://hooks.test/r', {
          when: () => {
            throw new Error('predicate bug');
          },
        }),
      );
      res.statusCode = 418;
      res.end();
    });
    await get(url);
    await dispatcher.drain({ timeout: 2_000 });
    expect(handles.map((h) => h.state)).toEqual(['delivered', 'cancelled', 'cancelled']);
    expect(handles[2]?.error?.message).toMatch(/predicate bug/);
  });

  it('throws bad input in the handler, where the bug is', async () => {
    const { url, handlerErrors, dispatcher } = await app((work, _req, res) => {
      const attempts = [
        () => work.fireAndForget('not a url'),
        () => work.fireAndForget('http://hooks.test/', { when: 'sometimes' as never }),
        () => work.fireAndForget('http://hooks.test/', { method: 'GET', json: () => ({}) }),
        () => work.fireAndForget({ url: 'http://hooks.test/' } as never, {}),
        () => work.after('nope' as never),
        () => work.after(() => undefined, { timeout: 0 }),
        () => work.after(() => undefined, { when: 'later' as never }),
      ];
      for (const attempt of attempts) {
        try {
          attempt();
          handlerErrors.push('no throw');
        } catch (error) {
          handlerErrors.push(error);
        }
      }
      res.end();
    });
    await get(url);
    expect(handlerErrors).toHaveLength(7);
    for (const error of handlerErrors) expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(dispatcher.stats()).toMatchObject({ queued: 0, delivered: 0, cancelled: 0, failed: 0 });
  });

  it('runs after() hooks once the response finished, with info and a signal', async () => {
    const ran: Array<{ outcome: string; status: number; finished: boolean; signal: boolean }> = [];
    const { url, dispatcher } = await app((work, _req, res) => {
      work.after((info, signal) => {
        ran.push({
          outcome: info.outcome,
          status: info.statusCode,
          finished: info.res.writableFinished,
          signal: signal instanceof AbortSignal && !signal.aborted,
        });
      });
      work.after(() => ran.push({ outcome: 'skipped', status: 0, finished: false, signal: false }), {
        when: 'error',
      });
      res.statusCode = 204;
      res.end();
    });
    await get(url);
    await dispatcher.drain({ timeout: 2_000 });
    expect(ran).toEqual([{ outcome: 'finished', status: 204, finished: true, signal: true }]);
    expect(dispatcher.stats().hooks).toMatchObject({ completed: 1, failed: 0, running: 0, queued: 0 });
  });

  it("reports a throwing, rejecting or timed-out hook as 'hook-error', and the others still run", async () => {
    let abortedBy: unknown;
    let fine = 0;
    const { url, dispatcher, hookErrors } = await app((work, _req, res) => {
      work.after(() => {
        throw new Error('sync hook bug');
      });
      work.after(async () => {
        await sleep(1);
        throw new Error('async hook bug');
      });
      work.after(
        (_info, signal) =>
          new Promise<void>(() => {
            signal.addEventListener('abort', () => {
              abortedBy = signal.reason as unknown;
            });
          }),
        { timeout: 50 },
      );
      work.after(() => {
        fine++;
      });
      res.end();
    });
    await get(url);
    await waitUntil(() => hookErrors.length === 3, { message: 'three hook errors' });
    await dispatcher.drain({ timeout: 2_000 });
    expect(fine).toBe(1);
    const errors = hookErrors.map((e) => e.error);
    expect(
      errors
        .filter((e) => e instanceof HookError)
        .map((e) => (e.cause as Error).message)
        .sort(),
    ).toEqual(['async hook bug', 'sync hook bug']);
    const timeout = errors.find((e) => e instanceof HookTimeoutError);
    expect(timeout).toBeInstanceOf(HookTimeoutError);
    expect(abortedBy).toBe(timeout);
    expect((hookErrors[0]?.info as Info).outcome).toBe('finished');
    expect(dispatcher.stats().hooks).toMatchObject({ completed: 1, failed: 3, running: 0 });
  });

  it('drain() waits for parked work on an open response and for running hooks', async () => {
    let hookDone = false;
    let finishResponse!: () => void;
    const { url, dispatcher } = await app((work, _req, res) => {
      work.after(async () => {
        await sleep(150);
        hookDone = true;
      });
      finishResponse = () => res.end();
    });
    const response = get(url);
    await waitUntil(() => finishResponse !== undefined);
    // A parked hook on an open response counts as pending.
    expect(await dispatcher.drain({ timeout: 30 })).toEqual({ drained: false, pending: 1 });
    finishResponse();
    await response;
    const drained = await dispatcher.drain({ timeout: 2_000 });
    expect(drained).toEqual({ drained: true, pending: 0 });
    expect(hookDone).toBe(true);
  });

  it("gives outcome 'aborted' when the client goes away mid-response; parked work still goes by default", async () => {
    const infos: Info[] = [];
    let handle: ReturnType<AfterResponse<Info>['fireAndForget']> | undefined;
    const { url, dispatcher } = await app((work, _req, res) => {
      handle = work.fireAndForget('http://hooks.test/abort', {
        json: (info: Info) => ({ outcome: info.outcome }),
      });
      work.after((info) => {
        infos.push(info);
      });
      // Head and part of a body; the rest never comes, so only the client can end this.
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial');
    });
    await getAndAbort(url);
    await waitUntil(() => infos.length === 1, { message: 'hook ran after abort' });
    await dispatcher.drain({ timeout: 2_000 });
    expect(infos[0]?.outcome).toBe('aborted');
    expect(handle?.state).toBe('delivered');
  });

  it("onClientAbort: 'cancel' cancels parked notifications and skips hooks when the client went away", async () => {
    let ran = 0;
    let handle: ReturnType<AfterResponse<Info>['fireAndForget']> | undefined;
    const { url, dispatcher, transport } = await app(
      (work, _req, res) => {
        handle = work.fireAndForget('http://hooks.test/cancel');
        work.after(() => {
          ran++;
        });
        res.writeHead(200, { 'content-length': '1000' });
        res.write('partial');
      },
      { onClientAbort: 'cancel' },
    );
    await getAndAbort(url);
    await waitUntil(() => handle?.settled === true, { message: 'parked notification settled' });
    await dispatcher.drain({ timeout: 2_000 });
    expect(handle?.state).toBe('cancelled');
    expect(handle?.error?.message).toMatch(/client disconnected/);
    expect(ran).toBe(0);
    expect(transport.requests).toHaveLength(0);
  });

  it("when: 'aborted' runs only for aborted responses", async () => {
    const outcomes: string[] = [];
    const { url, dispatcher } = await app((work, req, res) => {
      work.after((info) => void outcomes.push(info.outcome), { when: 'aborted' });
      if (req.url === '/abort') {
        res.writeHead(200, { 'content-length': '10' });
        res.write('x');
      } else {
        res.end();
      }
    });
    await get(`${url}/fine`);
    await getAndAbort(`${url}/abort`);
    await waitUntil(() => outcomes.length === 1);
    await dispatcher.drain({ timeout: 2_000 });
    expect(outcomes).toEqual(['aborted']);
  });

  it('work added after the response finished is released at once', async () => {
    let late: ReturnType<AfterResponse<Info>['fireAndForget']> | undefined;
    const { url, dispatcher } = await app((work, _req, res) => {
      work.after(() => undefined);
      res.on('finish', () => {
        setImmediate(() => {
          late = work.fireAndForget('http://hooks.test/late');
        });
      });
      res.end();
    });
    await get(url);
    await waitUntil(() => late !== undefined);
    await dispatcher.drain({ timeout: 2_000 });
    expect(late?.state).toBe('delivered');
  });

  it('bounds the work one response may park (maxPerResponse)', async () => {
    const errors: unknown[] = [];
    const { url, dispatcher, transport } = await app(
      (work, _req, res) => {
        work.fireAndForget('http://hooks.test/1');
        work.after(() => undefined);
        try {
          work.fireAndForget('http://hooks.test/3');
        } catch (error) {
          errors.push(error);
        }
        try {
          work.after(() => undefined);
        } catch (error) {
          errors.push(error);
        }
        res.end();
      },
      { maxPerResponse: 2 },
    );
    await get(url);
    expect(errors).toHaveLength(2);
    for (const error of errors) expect(error).toBeInstanceOf(QueueFullError);
    await dispatcher.drain({ timeout: 2_000 });
    // The refused calls left nothing behind: no handle made, nothing counted.
    expect(transport.requests.map((r) => r.url)).toEqual(['http://hooks.test/1']);
    expect(dispatcher.stats()).toMatchObject({ delivered: 1, cancelled: 0, dropped: 0 });
    expect(dispatcher.stats().hooks).toMatchObject({ completed: 1, failed: 0 });
  });

  it('does not run hooks parked on a response that ends after close()', async () => {
    let finish: (() => void) | undefined;
    let ran = false;
    const { url, dispatcher, hookErrors } = await app((work, _req, res) => {
      work.after(() => {
        ran = true;
      });
      res.write('partial');
      finish = () => res.end();
    });
    const pending = get(url);
    await waitUntil(() => finish !== undefined);
    // Counted as cancelled by close() (issue 11 #15), then never run nor reported as failed.
    const closed = await dispatcher.close({ timeout: 0 });
    expect(closed.cancelled).toBe(1);
    finish?.();
    await pending;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(ran).toBe(false);
    expect(hookErrors).toEqual([]);
    expect(dispatcher.stats().hooks.failed).toBe(0);
  });

  it('a throwing describe() does not lose the parked work', async () => {
    const transport = createRecordingTransport();
    const logger = recordingLogger();
    const dispatcher = createDispatcher({ transport, logger });
    const server = createServer((_req, res) => {
      const work = createAfterResponse(res, {
        dispatcher,
        describe: () => {
          throw new Error('describe bug');
        },
      });
      work.fireAndForget('http://hooks.test/d');
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(async () => {
      await dispatcher.close();
      await new Promise((resolve) => server.close(resolve));
    });
    await get(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    await dispatcher.drain({ timeout: 2_000 });
    expect(transport.requests).toHaveLength(1);
    expect(logger.lines.some((c) => /describing the response failed/.test(c.msg ?? ''))).toBe(true);
  });
});

describe('parked work is bounded over all open responses (issue 11 #8)', () => {
  it('long polls parking 1 MB each hit maxParkedBytes; stats() shows parked work; release frees it', async () => {
    const transport = createRecordingTransport();
    const dispatcher = createDispatcher({
      transport,
      logger: recordingLogger(),
      maxParkedBytes: 5 * 1024 * 1024,
      maxParked: 100,
    });
    const open: ServerResponse[] = [];
    const states: string[] = [];
    const payload = 'x'.repeat(1024 * 1024);
    const server = createServer((req, res) => {
      const work = createAfterResponse(res, {
        dispatcher,
        describe: (outcome, durationMs) => ({
          outcome,
          statusCode: res.statusCode,
          durationMs,
          method: '',
          url: '',
          route: undefined,
          req,
          res,
        }),
      });
      const handle = work.fireAndForget('http://127.0.0.1:9/hook', { body: payload });
      states.push(handle.state);
      work.after(() => undefined);
      // A long poll: the response stays open until the test ends it.
      res.flushHeaders();
      open.push(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(async () => {
      await dispatcher.close({ timeout: 0 });
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    const { port } = server.address() as AddressInfo;
    const responses = Array.from({ length: 10 }, () => get(`http://127.0.0.1:${port}/`));
    await waitUntil(() => open.length === 10, { message: '10 long polls open' });
    // Four notifications of 1 MB (and their hooks) fit under 5 MiB; the rest were dropped.
    expect(states.filter((state) => state === 'pending')).toHaveLength(4);
    expect(states.filter((state) => state === 'dropped')).toHaveLength(6);
    const stats = dispatcher.stats();
    expect(stats.parked).toBe(4 + 10);
    expect(stats.parkedBytes).toBeGreaterThan(4 * 1024 * 1024);
    expect(stats.parkedBytes).toBeLessThanOrEqual(5 * 1024 * 1024);
    expect(stats.dropped).toBe(6);
    for (const res of open) res.end();
    await Promise.all(responses);
    await waitUntil(() => transport.requests.length === 4, { message: 'the parked four sent' });
    expect(dispatcher.stats()).toMatchObject({ parked: 0, parkedBytes: 0 });
  });

  it("refuses at the call with overflow 'reject' once maxParked is reached", () => {
    const dispatcher = createDispatcher({
      transport: createRecordingTransport(),
      logger: recordingLogger(),
      maxParked: 2,
      overflow: 'reject',
    });
    cleanup.push(() => dispatcher.close({ timeout: 0 }));
    const res = new ServerResponse(new IncomingMessage(new Socket()));
    const work = createAfterResponse(res, {
      dispatcher,
      describe: (outcome, durationMs) => ({
        outcome,
        statusCode: 200,
        durationMs,
        method: '',
        url: '',
        route: undefined,
        req: undefined,
        res,
      }),
    });
    work.fireAndForget('http://127.0.0.1:9/');
    work.after(() => undefined);
    expect(() => work.fireAndForget('http://127.0.0.1:9/')).toThrow(QueueFullError);
    expect(() => work.after(() => undefined)).toThrow(QueueFullError);
    expect(dispatcher.stats()).toMatchObject({ parked: 2, queued: 0, dropped: 0 });
  });
});

describe('release when the response closes (no on-finished: one listener on the response)', () => {
  it("work first parked after the response emitted 'close' is still released, outcome finished", async () => {
    const outcomes: string[] = [];
    let late: ReturnType<AfterResponse<Info>['fireAndForget']> | undefined;
    const { url, dispatcher } = await app((work, _req, res) => {
      res.once('close', () => {
        expect(res.closed).toBe(true);
        late = work.fireAndForget('http://hooks.test/after-close', {
          json: (info: Info) => ({ outcome: info.outcome }),
        });
        work.after((info) => void outcomes.push(info.outcome));
      });
      res.end('done');
    });
    expect(await get(url)).toBe(200);
    await waitUntil(() => outcomes.length === 1, { message: 'hook parked after close ran' });
    await dispatcher.drain({ timeout: 2_000 });
    expect(outcomes).toEqual(['finished']);
    expect(late?.state).toBe('delivered');
  });

  it("work first parked from a 'finish' listener runs once, after the finish", async () => {
    const outcomes: string[] = [];
    const { url, dispatcher } = await app((work, _req, res) => {
      res.once('finish', () => work.after((info) => void outcomes.push(info.outcome)));
      res.end('done');
    });
    expect(await get(url)).toBe(200);
    await waitUntil(() => outcomes.length === 1, { message: 'hook parked at finish ran' });
    await dispatcher.drain({ timeout: 2_000 });
    expect(outcomes).toEqual(['finished']);
  });

  it('a keep-alive connection: each response releases its own work, and no listener stays on the socket', async () => {
    const seen: string[] = [];
    const sockets = new Set<Socket>();
    const { url, dispatcher } = await app((work, req, res) => {
      sockets.add(res.socket as Socket);
      work.after((info) => void seen.push(`${info.url} ${info.outcome}`));
      res.end('ok');
    });
    const { port } = new URL(url);
    const client = connect(Number(port), '127.0.0.1');
    cleanup.push(() => client.destroy());
    let answered = 0;
    client.on('data', (chunk: Buffer) => {
      answered += chunk.toString('latin1').split('HTTP/1.1 200').length - 1;
    });
    for (let i = 0; i < 20; i++) {
      client.write(`GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await waitUntil(() => answered === i + 1, { message: `response ${i}` });
    }
    await waitUntil(() => seen.length === 20, { message: 'every hook ran' });
    await dispatcher.drain({ timeout: 2_000 });
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => `/${i} finished`));
    expect(sockets.size).toBe(1);
    const [socket] = [...sockets] as [Socket];
    const listeners = socket.eventNames().reduce((n, name) => n + socket.listenerCount(name), 0);
    // What Node's server itself keeps on a connection; a per-response listener left behind would
    // grow with the 20 responses served.
    expect(listeners).toBeLessThan(20);
  });

  it('a response the server destroys mid-body releases its work as aborted', async () => {
    const outcomes: string[] = [];
    const { url, dispatcher } = await app((work, _req, res) => {
      work.after((info) => void outcomes.push(info.outcome));
      res.writeHead(200, { 'content-length': '100' });
      res.write('part');
      setImmediate(() => res.destroy());
    });
    await new Promise<void>((resolve) => {
      httpRequest(url, (res) => {
        res.on('error', () => resolve());
        res.on('close', () => resolve());
        res.resume();
      })
        .on('error', () => resolve())
        .end();
    });
    await waitUntil(() => outcomes.length === 1, { message: 'hook of the destroyed response ran' });
    await dispatcher.drain({ timeout: 2_000 });
    expect(outcomes).toEqual(['aborted']);
  });

  // Node 22 emits nothing on such a queued response (nor did on-finished's listeners fire there,
  // on any version): the request's socket is watched while the response has none.
  it('a response queued behind another on a pipelined connection is released as aborted when the client goes away', async () => {
    const outcomes: string[] = [];
    let handled = 0;
    const { url, dispatcher } = await app((work, req, res) => {
      handled++;
      work.after((info) => void outcomes.push(`${info.url} ${info.outcome}`));
      if (req.url === '/first') {
        // Never ends: the second response waits behind it for the socket.
        res.writeHead(200, { 'content-length': '100' });
        res.write('part');
      } else {
        res.end('second');
      }
    });
    const { port } = new URL(url);
    const client = connect(Number(port), '127.0.0.1');
    cleanup.push(() => client.destroy());
    client.on('error', () => undefined);
    client.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitUntil(() => handled === 2, { message: 'both requests reached the handler' });
    client.destroy();
    await waitUntil(() => outcomes.length === 2, { message: 'both responses released their work' });
    await dispatcher.drain({ timeout: 2_000 });
    expect(outcomes.sort()).toEqual(['/first aborted', '/second aborted']);
  });
});

describe('a parked notification on an idle dispatcher (issue 15)', () => {
  it('waits for the coalescing window, then starts with what the other responses released in it, in one turn', async () => {
    const recording = createRecordingTransport();
    const starts: Array<{ path: string; at: number; turn: number }> = [];
    let turn = 0;
    let spinning: NodeJS.Immediate | undefined;
    const spin = (): void => {
      turn++;
      spinning = setImmediate(spin);
    };
    const transport = {
      send: (...args: Parameters<RecordingTransport['send']>) => {
        starts.push({ path: args[0].path, at: performance.now(), turn });
        return recording.send(...args);
      },
      close: () => recording.close(),
    };
    const dispatcher = createDispatcher({ transport, logger: recordingLogger(), coalesce: 200 });
    const closed: Array<{ state: string; at: number }> = [];
    const open: ServerResponse[] = [];
    const server = createServer((req, res) => {
      const work = createAfterResponse(res, { dispatcher, describe: (outcome) => ({ outcome }) as Info });
      const handle = work.fireAndForget(`http://hooks.test${req.url ?? '/'}`, { json: { ok: true } });
      res.on('close', () => closed.push({ state: handle.state, at: performance.now() }));
      // Both responses end together, once the second request is in.
      open.push(res);
      if (open.length === 2) for (const pending of open) pending.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(async () => {
      clearImmediate(spinning);
      await dispatcher.close();
      await new Promise((resolve) => server.close(resolve));
    });
    spin();
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await Promise.all([get(`${base}/first`), get(`${base}/second`)]);
    await waitUntil(() => closed.length === 2 && starts.length === 2, { timeoutMs: 5_000 });
    // Queued at the close, not started: the window is open.
    expect(closed.map((c) => c.state)).toEqual(['queued', 'queued']);
    expect(starts.map((s) => s.path).sort()).toEqual(['/first', '/second']);
    // Both in the same turn of the event loop, once the window (opened by the first) ended.
    expect(starts[0]?.turn).toBe(starts[1]?.turn);
    const firstClose = Math.min(...closed.map((c) => c.at));
    expect(starts[0]!.at - firstClose).toBeGreaterThanOrEqual(190);
  });

  it('with coalesce: 0, starts while the response closes, not a microtask later; a send() handle still reads queued', async () => {
    const transport = createRecordingTransport();
    const dispatcher = createDispatcher({ transport, logger: recordingLogger(), coalesce: 0 });
    const states: string[] = [];
    const server = createServer((_req, res) => {
      const work = createAfterResponse(res, { dispatcher, describe: (outcome) => ({ outcome }) as Info });
      const handle = work.fireAndForget('http://hooks.test/idle', { json: { ok: true } });
      // Added after the work's own listener: it sees what the release did.
      res.on('close', () => states.push(handle.state));
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(async () => {
      await dispatcher.close();
      await new Promise((resolve) => server.close(resolve));
    });
    await get(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    await waitUntil(() => states.length === 1, { timeoutMs: 2_000 });
    expect(states).toEqual(['sending']);
    const sent = dispatcher.send('http://hooks.test/call', { json: { ok: true } });
    expect(sent.state).toBe('queued');
    await dispatcher.drain({ timeout: 2_000 });
    expect(transport.requests).toHaveLength(2);
  });
});
