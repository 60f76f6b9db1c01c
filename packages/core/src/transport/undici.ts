import { channel } from 'node:diagnostics_channel';
import { STATUS_CODES } from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { Agent, buildConnector, Client, errors } from 'undici';
import type { Dispatcher } from 'undici';
import { abortSourceOf, AttemptAbort, type AbortWatcher } from './attempt-abort.js';
import { checkInteger, checkKeys, checkObject, DEFAULTS } from '../options/options.js';
import type { AddressGuard } from '../policy/guard.js';
import type { DeliveryResponse } from '../notification/handle.js';
import {
  kBodiesReleased,
  kSendDirect,
  toAfterwardError,
  type AttemptDone,
  type DirectTransport,
  type Transport,
  type TransportAttempt,
  type TransportRequest,
  type TransportResult,
} from './transport.js';

/** Options of {@link createUndiciTransport}. */
export interface UndiciTransportOptions {
  /** Most response-body bytes read before the socket is dropped. Default 64 KiB. */
  maxResponseBytes?: number;
  /** Refuses private targets (see `guard` on the dispatcher). */
  guard?: AddressGuard;
  /** How long an idle keep-alive socket is kept. Default 4 000 ms. */
  keepAliveTimeout?: number;
  /**
   * Most sockets kept per origin. The dispatcher passes its `concurrencyPerOrigin`, which bounds
   * what is in flight anyway; without a cap undici opens a new socket whenever a request is queued
   * in the same tick another one finished, and ends up with twice the sockets. Default 16.
   */
  connectionsPerOrigin?: number;
}

type Connector = buildConnector.connector;

// `satisfies` makes a new option in UndiciTransportOptions a compile error here until it is listed.
const TRANSPORT_KEYS = Object.keys({
  maxResponseBytes: true,
  guard: true,
  keepAliveTimeout: true,
  connectionsPerOrigin: true,
} satisfies Record<keyof UndiciTransportOptions, true>);

/** {@link UndiciTransportOptions} with the defaults filled in. */
export interface ResolvedUndiciTransportOptions {
  maxResponseBytes: number;
  guard: AddressGuard | undefined;
  keepAliveTimeout: number;
  connectionsPerOrigin: number;
}

/**
 * Validates the undici transport's options (typos included) and fills in the defaults. Pure;
 * throws InvalidArgumentError.
 *
 * @example
 * ```ts
 * resolveUndiciTransportOptions({}).keepAliveTimeout; // 4000
 * ```
 */
export function resolveUndiciTransportOptions(
  options: UndiciTransportOptions,
): ResolvedUndiciTransportOptions {
  checkKeys('createUndiciTransport options', checkObject('options', options), TRANSPORT_KEYS);
  const defaults = DEFAULTS.transport;
  return {
    maxResponseBytes:
      options.maxResponseBytes === undefined
        ? DEFAULTS.maxResponseBytes
        : checkInteger('maxResponseBytes', options.maxResponseBytes, 0, 16 * 1024 * 1024),
    guard: options.guard,
    keepAliveTimeout:
      options.keepAliveTimeout === undefined
        ? defaults.keepAliveTimeout
        : checkInteger('keepAliveTimeout', options.keepAliveTimeout, 1),
    connectionsPerOrigin:
      options.connectionsPerOrigin === undefined
        ? defaults.connectionsPerOrigin
        : checkInteger('connectionsPerOrigin', options.connectionsPerOrigin, 1, 10_000),
  };
}

/**
 * The default transport, on undici: pooled keep-alive connections for `confirm: 'response'`, and a
 * dedicated connection per attempt for `confirm: 'sent'`, settled as soon as the request bytes are
 * on the wire and closed once the receiver answers (or a bounded linger ends).
 *
 * @example
 * ```ts
 * createDispatcher({ transport: createUndiciTransport({ maxResponseBytes: 16 * 1024 }) });
 * ```
 */
export function createUndiciTransport(options: UndiciTransportOptions = {}): Transport {
  return new UndiciTransport(options);
}

class UndiciTransport implements DirectTransport {
  readonly #maxResponseBytes: number;
  readonly #guard: AddressGuard | undefined;
  readonly #keepAliveTimeout: number;
  readonly #connections: number;
  // One pool for every connect timeout: undici takes the connect timeout per connector, not per
  // request, and a pool per value let each distinct `timeout.connect` open sockets of its own past
  // the per-origin cap, until close(). The connector times the connection itself instead, with the
  // connect timeout of the latest request to the origin (the request the new socket is for, unless
  // another one with a different timeout was queued in between).
  readonly #connect: Connector;
  readonly #connectTimeouts = new Map<string, number>();
  /** The origin and connect timeout last written to {@link #connectTimeouts}: one busy origin skips the lookup. */
  #lastOrigin: string | undefined = undefined;
  #lastConnect = 0;
  #agent: Agent | undefined;
  readonly #clients = new Set<Client>();
  /** Every socket the connector made that has not closed yet (see {@link kBodiesReleased}). */
  readonly #sockets = new Set<Socket>();
  readonly #lingering = new Map<string, Map<Client, () => void>>();

  constructor(options: UndiciTransportOptions) {
    const resolved = resolveUndiciTransportOptions(options);
    this.#maxResponseBytes = resolved.maxResponseBytes;
    this.#guard = resolved.guard;
    this.#keepAliveTimeout = resolved.keepAliveTimeout;
    this.#connections = resolved.connectionsPerOrigin;
    this.#connect = timedConnector(this.#guard, this.#sockets);
  }

  /**
   * undici writes a Buffer body with one `socket.write()`, and a receiver may answer before it read
   * the body: an attempt can end while the body's tail still waits in its socket. A socket whose
   * `writableLength` is 0 has handed every byte it was given to the kernel. undici's diagnostics
   * channels show a subscriber each request, body included, and a subscriber may keep it: with
   * one, never.
   */
  [kBodiesReleased](): boolean {
    for (const shown of BODY_CHANNELS) if (shown.hasSubscribers) return false;
    for (const socket of this.#sockets) if (socket.writableLength !== 0) return false;
    return true;
  }

  send(request: TransportRequest, attempt: TransportAttempt): Promise<TransportResult> {
    return new Promise<TransportResult>((resolve) => {
      this[kSendDirect](request, attempt, { attemptDone: (_attempt, result) => resolve(result) });
    });
  }

  [kSendDirect](request: TransportRequest, attempt: TransportAttempt, done: AttemptDone): void {
    if (this.#guard !== undefined) {
      try {
        this.#guard.checkUrl(request.url);
      } catch (error) {
        done.attemptDone(attempt, {
          kind: 'error',
          error: toAfterwardError(error, request, abortSourceOf(attempt), false),
        });
        return;
      }
    }
    if (request.confirm === 'sent') {
      void this.#sendAndLinger(request, attempt).then(
        (result) => done.attemptDone(attempt, result),
        (error: unknown) =>
          done.attemptDone(attempt, {
            kind: 'error',
            error: toAfterwardError(error, request, abortSourceOf(attempt), true),
          }),
      );
      return;
    }
    this.#dispatch(request, attempt, done);
  }

  async close(): Promise<void> {
    const closing: Array<Promise<void>> = [];
    if (this.#agent !== undefined) closing.push(this.#agent.destroy());
    for (const client of this.#clients) closing.push(client.destroy());
    this.#agent = undefined;
    this.#clients.clear();
    this.#lingering.clear();
    await Promise.allSettled(closing);
  }

  #dispatch(request: TransportRequest, attempt: TransportAttempt, done: AttemptDone): void {
    const { origin } = request;
    const connectTimeout = request.timeout.connect;
    if (
      (origin !== this.#lastOrigin || connectTimeout !== this.#lastConnect) &&
      this.#connectTimeouts.get(origin) !== connectTimeout
    ) {
      // Bounded like undici's own per-origin state; a dropped entry falls back to the default.
      if (this.#connectTimeouts.size >= MAX_ORIGINS_REMEMBERED) this.#connectTimeouts.clear();
      this.#connectTimeouts.set(origin, connectTimeout);
    }
    this.#lastOrigin = origin;
    this.#lastConnect = connectTimeout;
    // dispatch() with a handler of our own rather than request(): no response stream, no dump(),
    // no promise chain per attempt (the dispatcher benchmark measured request() + dump() as the
    // largest cost of the transport). The handler is the dispatch options too: one object less.
    const handler = new ResponseHandler(request, attempt, this.#maxResponseBytes, done);
    if (handler.done) return;
    this.#agentFor().dispatch(handler, handler);
  }

  #sendAndLinger(request: TransportRequest, attempt: TransportAttempt): Promise<TransportResult> {
    return new Promise<TransportResult>((resolve) => {
      let socket: Socket | undefined;
      // True once every byte of the request was handed to the kernel, not merely queued on the socket.
      let flushed = false;
      let settled = false;
      // The receiver answered or went away: nothing more can arrive that it needs.
      let over = false;
      let linger: NodeJS.Timeout | undefined;
      const connector = this.#connect;
      const connectTimeout = request.timeout.connect;
      const client = new Client(request.origin, {
        connect: (opts, callback) => {
          connector({ ...opts, connectTimeout } as buildConnector.Options, (error, connected) => {
            if (connected !== null) socket = connected;
            (callback as (error: Error | null, socket: unknown) => void)(error, connected);
          });
        },
        pipelining: 1,
        headersTimeout: request.timeout.response,
        bodyTimeout: 0,
      });
      this.#clients.add(client);
      const close = (): void => {
        if (!this.#clients.delete(client)) return;
        if (linger !== undefined) clearTimeout(linger);
        this.#unlinger(request.origin, client);
        // Deferred, because undici must not be destroyed from inside its own write path
        // (onRequestSent runs there).
        queueMicrotask(() => {
          client.destroy().catch(() => undefined);
        });
      };
      const finish = (result: TransportResult): void => {
        if (settled) return;
        settled = true;
        attempt.signal.removeEventListener('abort', onAbort);
        resolve(result);
        if (result.kind !== 'sent' || over) {
          close();
          return;
        }
        // Flushed is not read: closing now makes a receiver that reads asynchronously (a paused
        // stream, `for await`, a slow pipe) lose the tail or see a reset, and a half-close does
        // not help (Node's http server aborts an unanswered request on it). So the connection
        // stays open, unref'd, until the receiver answers or closes, or the linger deadline
        // (the response timeout) ends; lingering connections count against the per-origin cap.
        socket?.unref();
        linger = setTimeout(close, request.timeout.response);
        linger.unref();
        this.#linger(request.origin, client, close);
      };
      const onAbort = (): void => {
        finish({
          kind: 'error',
          error: toAfterwardError(attempt.signal.reason, request, attempt.signal, !flushed),
        });
      };
      if (attempt.signal.aborted) {
        onAbort();
        return;
      }
      attempt.signal.addEventListener('abort', onAbort, { once: true });
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: () => undefined,
        // undici calls onRequestSent once the whole request was handed to socket.write.
        onRequestSent: () => {
          // An empty write's callback runs once every earlier byte has been handed to the kernel.
          // It gets an error instead when the connection broke first: then the request did not
          // leave.
          const written = (): void => {
            flushed = true;
            finish({ kind: 'sent' });
          };
          if (socket === undefined || socket.writableLength === 0) {
            written();
          } else {
            socket.write(Buffer.alloc(0), (error?: Error | null) => {
              if (error === undefined || error === null) written();
              else finish({ kind: 'error', error: toAfterwardError(error, request, attempt.signal, true) });
            });
          }
        },
        // An answer can come before the body was read (a 413, say); only the flush decides. The
        // answer's body is not read: its headers say the receiver is done with the request.
        onResponseStart: (controller) => {
          controller.pause();
          over = true;
          if (settled) close();
        },
        onResponseData: () => undefined,
        onResponseEnd: () => undefined,
        onResponseError: (_controller, error) => {
          over = true;
          if (settled) close();
          else
            finish(
              flushed
                ? { kind: 'sent' }
                : { kind: 'error', error: toAfterwardError(error, request, attempt.signal, true) },
            );
        },
      };
      client.dispatch(
        {
          origin: request.origin,
          path: request.path,
          method: request.method,
          headers: request.headers as string[],
          body: request.body,
        },
        handler,
      );
    });
  }

  // Lingering connections of one origin, oldest first. Past the per-origin cap the oldest is
  // closed: a burst of sends to one origin never holds more sockets than `connectionsPerOrigin`.
  #linger(origin: string, client: Client, close: () => void): void {
    let lingering = this.#lingering.get(origin);
    if (lingering === undefined) this.#lingering.set(origin, (lingering = new Map<Client, () => void>()));
    lingering.set(client, close);
    if (lingering.size > this.#connections) {
      for (const oldest of lingering.values()) {
        oldest();
        break;
      }
    }
  }

  #unlinger(origin: string, client: Client): void {
    const lingering = this.#lingering.get(origin);
    if (lingering?.delete(client) === true && lingering.size === 0) this.#lingering.delete(origin);
  }

  #agentFor(): Agent {
    return (this.#agent ??= new Agent({
      connect: (opts, callback) => {
        const connectTimeout =
          this.#connectTimeouts.get(`${opts.protocol}//${opts.host ?? opts.hostname}`) ??
          DEFAULTS.timeout.connect;
        this.#connect({ ...opts, connectTimeout } as buildConnector.Options, callback);
      },
      keepAliveTimeout: this.#keepAliveTimeout,
      pipelining: 1,
      connections: this.#connections,
    }));
  }
}

const MAX_ORIGINS_REMEMBERED = 10_000;

/** undici's diagnostics channels whose messages carry the request, and with it its body. */
const BODY_CHANNELS = [
  'undici:request:create',
  'undici:client:sendHeaders',
  'undici:request:bodyChunkSent',
  'undici:request:bodySent',
  'undici:request:headers',
  'undici:request:bodyChunkReceived',
  'undici:request:trailers',
  'undici:request:error',
].map((name) => channel(name));

/**
 * One connector for every connect timeout: it reads the timeout from the options it is called
 * with (`connectTimeout`, which undici's own connector ignores) and destroys the socket when it
 * runs out, the way undici's connector does with its fixed one.
 */
function timedConnector(guard: AddressGuard | undefined, sockets: Set<Socket>): Connector {
  // timeout 0: undici arms no timer of its own.
  const base = guard ? buildConnector({ timeout: 0, lookup: guard.lookup }) : buildConnector({ timeout: 0 });
  const timed: Connector = (opts, callback) => {
    const timeout = (opts as { connectTimeout?: number }).connectTimeout ?? DEFAULTS.timeout.connect;
    let timer: NodeJS.Timeout | undefined = undefined;
    // undici's connector returns the socket it dials, although its type says void.
    const socket = (base as unknown as (o: typeof opts, c: typeof callback) => Socket | undefined)(
      opts,
      (...result) => {
        clearTimeout(timer);
        callback(...result);
      },
    );
    if (socket === undefined) return;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    timer = setTimeout(() => {
      socket.destroy(
        new errors.ConnectTimeoutError(
          `Connect Timeout Error (attempted address: ${opts.hostname}:${opts.port}, timeout: ${timeout}ms)`,
        ),
      );
    }, timeout);
    timer.unref();
  };
  return guard ? guard.wrapConnector(timed) : timed;
}

/**
 * undici's hook (8.14 and later) that hands a handler the means to take its request out of the
 * queue while it waits for a connection; `request()` uses it for its signal. Absent (another
 * undici), an attempt aborted while queued is aborted when it starts instead.
 */
const kQueuedAbort: symbol | undefined = (() => {
  try {
    const symbols = createRequire(import.meta.url)('undici/lib/core/symbols.js') as Record<string, unknown>;
    return typeof symbols.kQueuedAbort === 'symbol' ? symbols.kQueuedAbort : undefined;
  } catch {
    return undefined;
  }
})();
/** The key the handler's hook getter is defined under: undici's symbol, or one nobody reads. */
const kQueuedAbortKey: symbol = kQueuedAbort ?? Symbol('afterward.queuedAbort');

/**
 * One attempt of `confirm: 'response'` on undici's dispatch API: settles with the status once the
 * response body was read (up to a bound: `keepBody` bytes kept, at most `maxResponseBytes` read
 * past that, then the socket is dropped), with an error when no status arrived, and at once on
 * the attempt's abort (an abort after the status still counts as a response: the status decides).
 *
 * It is also the request's dispatch options (`origin` to `bodyTimeout`), read by undici through
 * the Agent, Pool and Client and never copied there: one object per attempt instead of two.
 */
class ResponseHandler implements Dispatcher.DispatchHandler, Dispatcher.DispatchOptions, AbortWatcher {
  readonly origin: string;
  readonly path: string;
  readonly method: Dispatcher.HttpMethod;
  readonly headers: string[];
  readonly body: Buffer | null;
  readonly headersTimeout: number;
  // The dispatcher's total deadline bounds the body, including a receiver that trickles bytes.
  readonly bodyTimeout = 0;
  readonly #request: TransportRequest;
  readonly #attempt: TransportAttempt;
  readonly #signal: AttemptAbort | AbortSignal;
  #done: AttemptDone | undefined;
  #controller: Dispatcher.DispatchController | undefined = undefined;
  #cancelQueued: ((reason: unknown) => void) | undefined = undefined;
  // Always an Error once set (our abort reasons are AfterwardErrors).
  #reason: Error | undefined = undefined;
  #response: DeliveryResponse | undefined = undefined;
  /** Bytes of the body read so far, and the most read before the socket is dropped. */
  #read = 0;
  #limit: number;
  readonly #maxResponseBytes: number;
  #chunks: Buffer[] | undefined = undefined;
  #kept = 0;
  #onSignalAbort: (() => void) | undefined = undefined;

  constructor(
    request: TransportRequest,
    attempt: TransportAttempt,
    maxResponseBytes: number,
    done: AttemptDone,
  ) {
    this.origin = request.origin;
    this.path = request.path;
    this.method = request.method;
    this.headers = request.headers as string[];
    this.body = request.body;
    this.headersTimeout = request.timeout.response;
    this.#request = request;
    this.#attempt = attempt;
    this.#done = done;
    this.#maxResponseBytes = maxResponseBytes;
    this.#limit = maxResponseBytes;
    const signal = abortSourceOf(attempt);
    this.#signal = signal;
    if (signal instanceof AttemptAbort) {
      if (signal.isAborted()) this.attemptAborted(signal.reason);
      else signal.watch(this);
    } else if (signal.aborted) {
      this.attemptAborted(signal.reason);
    } else {
      this.#onSignalAbort = () => this.attemptAborted(signal.reason);
      signal.addEventListener('abort', this.#onSignalAbort, { once: true });
    }
  }

  /** True once settled: nothing left to do (aborted before it was dispatched). */
  get done(): boolean {
    return this.#done === undefined;
  }

  /**
   * undici's queued-abort hook (see {@link kQueuedAbort}), read only while the request waits for a
   * connection, and called without `this`: the closure is made then, not per attempt.
   */
  get [kQueuedAbortKey](): (cancel: (reason: unknown) => void) => void {
    return (cancel) => {
      if (this.#reason !== undefined) cancel(this.#reason);
      else this.#cancelQueued = cancel;
    };
  }

  attemptAborted(reason: unknown): void {
    if (this.#done === undefined) return;
    this.#reason = reason instanceof Error ? reason : new errors.RequestAbortedError();
    const response = this.#response;
    if (response !== undefined) {
      // The status has arrived and decides the outcome; a body cut short changes nothing. Any
      // body kept so far is dropped, as when the body stream was destroyed.
      this.#chunks = undefined;
      this.#finish({ kind: 'response', response });
    } else {
      this.#finish({
        kind: 'error',
        error: toAfterwardError(this.#reason, this.#request, this.#signal, false),
      });
    }
    if (this.#controller !== undefined) this.#controller.abort(this.#reason);
    else this.#cancelQueued?.(this.#reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#cancelQueued = undefined;
    if (this.#reason !== undefined) {
      controller.abort(this.#reason);
      return;
    }
    this.#controller = controller;
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusText?: string,
  ): void {
    // 1xx: informational, the final status is still to come.
    if (statusCode < 200 || this.#done === undefined) return;
    this.#response = {
      status: statusCode,
      statusText: statusText || (STATUS_CODES[statusCode] ?? ''),
      headers,
    };
    const keep = this.#request.keepBody;
    if (keep > 0) {
      this.#chunks = [];
      this.#limit = Math.max(keep, this.#maxResponseBytes);
      return;
    }
    // Read a bounded amount so a small answer frees the socket for reuse; past the bound the
    // socket is dropped rather than a huge body read (a declared length over it: at once).
    const length = this.#request.method === 'HEAD' ? undefined : headers['content-length'];
    if (typeof length === 'string' && Number(length) > this.#limit) this.#stop(controller);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#done === undefined) return;
    this.#read += chunk.length;
    const chunks = this.#chunks;
    if (chunks !== undefined) {
      const keep = this.#request.keepBody;
      if (this.#kept < keep) {
        const part = chunk.length <= keep - this.#kept ? chunk : chunk.subarray(0, keep - this.#kept);
        chunks.push(part);
        this.#kept += part.length;
      }
      // The rest is never read.
      if (this.#read >= this.#limit) this.#stop(controller);
    } else if (this.#read > this.#limit) {
      this.#stop(controller);
    }
  }

  onResponseEnd(): void {
    this.#finishResponse();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    if (this.#done === undefined) return;
    if (this.#response !== undefined) {
      // The status has arrived and decides the outcome; a body cut short changes nothing.
      this.#chunks = undefined;
      this.#finishResponse();
      return;
    }
    this.#finish({
      kind: 'error',
      error: toAfterwardError(error, this.#request, this.#signal, false),
    });
  }

  /** Enough was read: settle with what was kept, and drop the socket. */
  #stop(controller: Dispatcher.DispatchController): void {
    this.#finishResponse();
    controller.abort(new errors.ResponseExceededMaxSizeError('response body read limit reached'));
  }

  #finishResponse(): void {
    const response = this.#response;
    if (response === undefined || this.#done === undefined) return;
    const chunks = this.#chunks;
    if (chunks !== undefined) response.body = Buffer.concat(chunks, this.#kept);
    this.#finish({ kind: 'response', response });
  }

  #finish(result: TransportResult): void {
    const done = this.#done;
    if (done === undefined) return;
    this.#done = undefined;
    const signal = this.#signal;
    if (signal instanceof AttemptAbort) signal.watch(undefined);
    else if (this.#onSignalAbort !== undefined) signal.removeEventListener('abort', this.#onSignalAbort);
    done.attemptDone(this.#attempt, result);
  }
}
