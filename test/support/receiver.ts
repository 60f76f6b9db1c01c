/**
 * A real HTTP receiver for tests: records every request it fully received, answers with a
 * replaceable handler, and closes without leaving sockets behind.
 *
 * @example
 * const receiver = await startReceiver();
 * dispatcher.send(`${receiver.url}/hook`, { json: { ok: true } });
 * const [req] = await receiver.waitFor(1);
 * expect(req?.json()).toEqual({ ok: true });
 * await receiver.close();
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { listen, originOf, ServerTracker } from './net.js';

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Names and values as they came on the wire, so repeated headers and casing can be checked. */
  rawHeaders: string[];
  body: Buffer;
  /** JSON.parse of the body as UTF-8. */
  json<T = unknown>(): T;
  /** performance.now() when the whole body had arrived. */
  receivedAt: number;
  remotePort: number;
}

export type ReceiverHandler = (req: ReceivedRequest, res: ServerResponse) => void | Promise<void>;

export interface ReceiverOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Wait this long after the body was read before calling the handler. */
  delayMs?: number;
}

export interface Receiver {
  /** e.g. http://127.0.0.1:PORT (same as origin). */
  url: string;
  origin: string;
  port: number;
  /** Every fully received request, in arrival order. */
  requests: ReceivedRequest[];
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Currently open sockets. */
  openConnections(): number;
  /**
   * Resolves once at least n requests arrived (with requests.slice(0, n)); rejects with an
   * error naming what did arrive after timeoutMs (default 5000).
   */
  waitFor(n: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  /** Replace how requests are answered; the handler gets the already-read body. Default: 204. */
  respondWith(handler: ReceiverHandler): void;
  /** Destroys all sockets and closes the server; resolves when closed. */
  close(): Promise<void>;
}

const noContent: ReceiverHandler = (_req, res) => {
  res.statusCode = 204;
  res.end();
};

interface Waiter {
  n: number;
  resolve: (requests: ReceivedRequest[]) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

function record(req: IncomingMessage, body: Buffer, remotePort: number): ReceivedRequest {
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    body,
    json<T = unknown>(): T {
      return JSON.parse(body.toString('utf8')) as T;
    },
    receivedAt: performance.now(),
    remotePort,
  };
}

export async function startReceiver(
  handler: ReceiverHandler = noContent,
  { host = '127.0.0.1', delayMs = 0 }: ReceiverOptions = {},
): Promise<Receiver> {
  let current = handler;
  const requests: ReceivedRequest[] = [];
  const waiters = new Set<Waiter>();
  const server = createServer();
  const tracker = new ServerTracker(server);

  const settleWaiters = (): void => {
    for (const waiter of waiters) {
      if (requests.length >= waiter.n) {
        waiters.delete(waiter);
        clearTimeout(waiter.timer);
        waiter.resolve(requests.slice(0, waiter.n));
      }
    }
  };

  const answer = async (received: ReceivedRequest, res: ServerResponse): Promise<void> => {
    try {
      await current(received, res);
    } catch (err) {
      // A throwing handler is a test bug or a deliberate 500; either way the client gets an answer.
      if (!res.headersSent) {
        res.statusCode = 500;
        res.end(err instanceof Error ? err.message : String(err));
      } else {
        res.destroy();
      }
    }
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // Read now: a socket destroyed by the time the body ends no longer reports its peer.
    const remotePort = req.socket.remotePort ?? 0;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A client that aborts mid-body is not a received request; only 'end' records one.
    req.on('error', () => {});
    req.on('end', () => {
      const received = record(req, Buffer.concat(chunks), remotePort);
      requests.push(received);
      settleWaiters();
      const go = (): void => {
        if (res.destroyed) return;
        void answer(received, res).catch(() => res.destroy());
      };
      if (delayMs > 0) tracker.setTimeout(delayMs, go);
      else go();
    });
  });

  const port = await listen(server, host);
  const origin = originOf(host, port);

  return {
    url: origin,
    origin,
    port,
    requests,
    get connections() {
      return tracker.connections;
    },
    openConnections: () => tracker.openConnections(),
    waitFor(n: number, timeoutMs = 5000): Promise<ReceivedRequest[]> {
      if (requests.length >= n) return Promise.resolve(requests.slice(0, n));
      return new Promise((resolve, reject) => {
        const waiter: Waiter = {
          n,
          resolve,
          reject,
          timer: setTimeout(() => {
            waiters.delete(waiter);
            const seen = requests.map((r) => `${r.method} ${r.url}`).join(', ');
            reject(
              new Error(
                `Receiver ${origin}: expected ${n} request(s) within ${timeoutMs} ms, got ${requests.length}` +
                  (seen === '' ? '' : ` [${seen}]`),
              ),
            );
          }, timeoutMs),
        };
        waiters.add(waiter);
      });
    },
    respondWith(next: ReceiverHandler): void {
      current = next;
    },
    close(): Promise<void> {
      // Pending waiters would otherwise hold a timer and fail later, far from the close.
      for (const waiter of waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error(`Receiver ${origin}: closed with ${requests.length} request(s) received`));
      }
      waiters.clear();
      return tracker.close();
    },
  };
}
