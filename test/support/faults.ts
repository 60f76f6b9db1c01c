/**
 * In-process servers that misbehave in one precise way each, for the fault suite.
 *
 * Each listens on 127.0.0.1 port 0 and counts what it saw. `close()` clears its timers, destroys
 * every socket and resolves once the server is closed, so a test can check the event loop drains.
 * node:http is used where it can produce the fault; raw node:net where it cannot (a response that
 * never finishes its headers, a header larger than node:http's parser accepts).
 *
 * @example
 * const server = await statusSequence([503, { status: 429, headers: { 'retry-after': '1' } }, 200]);
 * // ... deliver to server.url ...
 * expect(server.arrivals).toHaveLength(3);
 * await server.close();
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { listen, originOf, ServerTracker } from './net.js';

export interface FaultServer {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Requests whose request line (for node:http servers: whole head) arrived. */
  readonly requestsStarted: number;
  /** Currently open sockets. */
  openConnections(): number;
  /** Clears timers, destroys all sockets, closes the server. Idempotent. */
  close(): Promise<void>;
}

const HOST = '127.0.0.1';

/** The tracker plus the counters every fault server exposes. */
class Fault extends ServerTracker implements FaultServer {
  url = '';
  port = 0;
  requestsStarted = 0;

  async start(): Promise<this> {
    this.port = await listen(this.server, HOST);
    this.url = originOf(HOST, this.port);
    return this;
  }
}

/** A node:http server whose requests are counted; `onRequest` runs for each. */
function httpFault<TFault extends Fault>(
  make: (server: Server) => TFault,
  onRequest: (fault: TFault, req: IncomingMessage, res: ServerResponse) => void,
): Promise<TFault> {
  const server = createServer();
  const fault = make(server);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    fault.requestsStarted += 1;
    req.on('error', () => {});
    onRequest(fault, req, res);
  });
  return fault.start();
}

/** Runs `fn` once the request body has been read (and discarded). */
function afterBody(req: IncomingMessage, fn: () => void): void {
  req.on('end', fn);
  req.resume();
}

/**
 * A raw node:net server. `onRequest` runs once per connection, when the request head
 * (through the blank line) has arrived; the rest of what the client sends is read and ignored.
 */
function rawFault(onRequest: (fault: Fault, socket: Socket) => void): Promise<Fault> {
  const server = createNetServer();
  const fault = new Fault(server);
  server.on('connection', (socket: Socket) => {
    let head = '';
    let started = false;
    const onData = (chunk: Buffer): void => {
      if (!started) {
        started = true;
        fault.requestsStarted += 1;
      }
      head += chunk.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData);
        // Keep reading so a client still sending a body is not blocked by a full window.
        socket.resume();
        onRequest(fault, socket);
      } else if (head.length > 1024 * 1024) {
        socket.destroy();
      }
    };
    socket.on('data', onData);
  });
  return fault.start();
}

/**
 * A URL to a port with nothing listening: binds port 0, reads the port, closes. Connecting gives
 * ECONNREFUSED. (Another process could take the port in between; on a test machine it does not.)
 */
export async function refusingPort(): Promise<FaultServer> {
  const fault = new Fault(createNetServer());
  await fault.start();
  await fault.close();
  return fault;
}

/** Accepts, reads the whole request, never responds. */
export function neverAnswers(): Promise<FaultServer> {
  return httpFault(
    (server) => new Fault(server),
    (_fault, req) => req.resume(),
  );
}

export interface TrickleServer extends FaultServer {
  /** Body bytes written so far, over all requests. */
  readonly bytesWritten: number;
}

class ByteCountingFault extends Fault {
  bytesWritten = 0;
}

/**
 * After the request body arrived: 200 with its headers at once (chunked, no length), then one
 * byte of body every `intervalMs`, until the client goes away or the server closes.
 */
export function trickle({ intervalMs = 300 }: { intervalMs?: number } = {}): Promise<TrickleServer> {
  return httpFault(
    (server) => new ByteCountingFault(server),
    (fault, req, res) => {
      afterBody(req, () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.flushHeaders();
        const timer = fault.setInterval(intervalMs, () => {
          res.write('.');
          fault.bytesWritten += 1;
        });
        res.on('close', () => fault.clearTimer(timer));
      });
    },
  );
}

/**
 * Raw: once the request head arrived, writes the status line and then one byte of an endless
 * header every `intervalMs`, so the response head never completes.
 */
export function slowHeaders({ intervalMs = 300 }: { intervalMs?: number } = {}): Promise<FaultServer> {
  return rawFault((fault, socket) => {
    socket.write('HTTP/1.1 200 OK\r\nx-slow: ');
    const timer = fault.setInterval(intervalMs, () => {
      if (socket.writable) socket.write('a');
    });
    socket.once('close', () => fault.clearTimer(timer));
  });
}

export interface HugeBodyServer extends FaultServer {
  /**
   * Body bytes the server handed to its socket before the client went away (over all
   * requests). An upper bound on what the client read: kernel buffers on loopback hold a few MB.
   */
  readonly bytesWritten: number;
}

const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/** 200 with content-length `bytes` (default 200 MiB), streamed with backpressure. */
export function hugeBody({ bytes = 200 * 1024 * 1024 }: { bytes?: number } = {}): Promise<HugeBodyServer> {
  return httpFault(
    (server) => new ByteCountingFault(server),
    (fault, req, res) => {
      afterBody(req, () => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes) });
        let sent = 0;
        const pump = (): void => {
          while (sent < bytes && !res.destroyed) {
            const n = Math.min(CHUNK.length, bytes - sent);
            sent += n;
            fault.bytesWritten += n;
            // Stop at a full buffer: writing on regardless would buffer 200 MiB in this process.
            if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
              res.once('drain', pump);
              return;
            }
          }
          if (sent >= bytes) res.end();
        };
        pump();
      });
    },
  );
}

/**
 * Raw: answers 200 with one header whose value is `bytes` long (default 64 KiB, four times
 * node:http's default 16 KiB limit), content-length 0, then closes the connection.
 */
export function hugeHeader({ bytes = 64 * 1024 }: { bytes?: number } = {}): Promise<FaultServer> {
  return rawFault((_fault, socket) => {
    socket.end(
      `HTTP/1.1 200 OK\r\nx-huge: ${'a'.repeat(bytes)}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
    );
  });
}

/**
 * Resets the connection (TCP RST) once `afterBytes` (default 1) of the request body arrived, or
 * when the request ends if its body is shorter. Send a body larger than the socket buffers
 * (say 4 MiB) to have the reset land while the client is still writing.
 */
export function resetMidRequest({ afterBytes = 1 }: { afterBytes?: number } = {}): Promise<FaultServer> {
  return httpFault(
    (server) => new Fault(server),
    (_fault, req) => {
      let received = 0;
      const reset = (): void => {
        req.socket.resetAndDestroy();
      };
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received >= afterBytes) reset();
      });
      req.on('end', reset);
    },
  );
}

/**
 * After the request body arrived: 200 with content-length `contentLength` (default 1000), writes
 * `sentBytes` of it (default half), waits `delayMs` (default 50) so the client has read the head,
 * then resets the connection.
 */
export function resetMidResponse({
  contentLength = 1000,
  sentBytes = Math.floor(contentLength / 2),
  delayMs = 50,
}: { contentLength?: number; sentBytes?: number; delayMs?: number } = {}): Promise<FaultServer> {
  return httpFault(
    (server) => new Fault(server),
    (fault, req, res) => {
      afterBody(req, () => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(contentLength) });
        res.write(Buffer.alloc(sentBytes, 0x62), () => {
          // Without the pause the RST can overtake the data and the client never sees a response.
          fault.setTimeout(delayMs, () => req.socket.resetAndDestroy());
        });
      });
    },
  );
}

export type RedirectStatus = 301 | 302 | 303 | 307 | 308;

/** Answers every request with `status` (default 302) and `location: <location>`. */
export function redirect({
  location,
  status = 302,
}: {
  location: string;
  status?: RedirectStatus;
}): Promise<FaultServer> {
  return httpFault(
    (server) => new Fault(server),
    (_fault, req, res) => {
      afterBody(req, () => {
        res.writeHead(status, { location });
        res.end();
      });
    },
  );
}

/** Redirects every request to itself (absolute URL, same path), forever. */
export function redirectLoop({ status = 302 }: { status?: RedirectStatus } = {}): Promise<FaultServer> {
  return httpFault(
    (server) => new Fault(server),
    (fault, req, res) => {
      afterBody(req, () => {
        res.writeHead(status, { location: `${fault.url}${req.url ?? '/'}` });
        res.end();
      });
    },
  );
}

export type StatusEntry = number | { status: number; headers?: Record<string, string>; body?: string };

export interface StatusSequenceServer extends FaultServer {
  /** performance.now() when each request's head arrived, in order: check the backoff with these. */
  arrivals: number[];
}

class SequenceFault extends Fault {
  arrivals: number[] = [];
}

/**
 * Answers the i-th request with statuses[i], after reading its body; the last entry repeats.
 * `[503, 503, 200]`, or `[{ status: 429, headers: { 'retry-after': '1' } }, 200]`.
 */
export function statusSequence(statuses: StatusEntry[]): Promise<StatusSequenceServer> {
  const last = statuses.at(-1);
  if (last === undefined) throw new TypeError('statusSequence: give at least one status');
  return httpFault(
    (server) => new SequenceFault(server),
    (fault, req, res) => {
      const entry = statuses[fault.arrivals.length] ?? last;
      fault.arrivals.push(performance.now());
      afterBody(req, () => {
        const { status, headers = {}, body } = typeof entry === 'number' ? { status: entry } : entry;
        res.writeHead(status, headers);
        res.end(body);
      });
    },
  );
}

/**
 * Every `failEvery`-th request (default 2: the 2nd, 4th, ...) is reset after its body arrived;
 * the others get 204.
 */
export function flaky({ failEvery = 2 }: { failEvery?: number } = {}): Promise<FaultServer> {
  return httpFault(
    (server) => new Fault(server),
    (fault, req, res) => {
      const n = fault.requestsStarted;
      afterBody(req, () => {
        if (n % failEvery === 0) {
          req.socket.resetAndDestroy();
        } else {
          res.statusCode = 204;
          res.end();
        }
      });
    },
  );
}
