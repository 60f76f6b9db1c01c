import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { monotonicNow } from '../util/clock.js';
import { internalsOf, type DispatcherInternal } from '../dispatcher/dispatcher.js';
import type { Dispatcher } from '../dispatcher/types.js';
import type { Notification } from '../notification/notification.js';
import {
  CancelledError,
  HookTimeoutError,
  InvalidArgumentError,
  isAfterwardError,
  QueueFullError,
  type AfterwardError,
} from '../util/errors.js';
import type { DeliveryHandle } from '../notification/handle.js';
import type { HookFn } from './hooks.js';
import { captureContext, type RunInContext } from '../util/context.js';
import { checkDuration, checkKeys, DEFAULTS, show } from '../options/options.js';
import { stringifyJson, type SendInit } from '../request/request.js';

/** How the client response ended: fully handed to the socket, or cut off by the client. */
export type ResponseOutcome = 'finished' | 'aborted';

/**
 * What after-response work learns about the response it followed.
 *
 * @example
 * ```ts
 * res.after((info) => metrics.timing('http', info.durationMs, { route: info.route, status: info.statusCode }));
 * ```
 */
export interface ResponseInfo<TReq = unknown, TRes = unknown> {
  outcome: ResponseOutcome;
  statusCode: number;
  /** From the middleware seeing the request to the response finishing (or aborting). */
  durationMs: number;
  method: string;
  /** The original URL of the request (path and query). */
  url: string;
  /** The route pattern, where the framework knows it (`/users/:id`). */
  route: string | undefined;
  req: TReq;
  res: TRes;
}

/**
 * Which responses parked work runs for: `'always'` (default), `'ok'` (status below 400 and not
 * aborted), `'error'` (status 400 or more, not aborted), `'aborted'`, or a predicate.
 */
export type When<TInfo = ResponseInfo> =
  'always' | 'ok' | 'error' | 'aborted' | ((info: TInfo) => boolean | PromiseLike<boolean>);

/**
 * A JSON payload, or a function of the finished response that returns one. Spelled as a union
 * rather than `unknown` so that `json: (info) => ...` gets `info` typed from context under
 * `strict` (a function type inside `unknown` is lost, and `info` would be an implicit `any`).
 *
 * @example
 * ```ts
 * const json: LazyJson<ExpressResponseInfo> = (info) => ({ status: info.statusCode });
 * ```
 */
export type LazyJson<TInfo = ResponseInfo> =
  ((info: TInfo) => unknown) | object | string | number | boolean | null | undefined;

/** `send()`'s init, plus a payload that may be computed from the finished response, and `when`. */
export interface FireAndForgetInit<TInfo = ResponseInfo> extends Omit<SendInit, 'json'> {
  /**
   * The JSON payload, or a function of the finished response that returns it or a promise of it:
   * run once, after the response ended, so it sees the final status; awaited within the
   * dispatcher's `hookTimeout`. If it throws or rejects, this notification fails with
   * `InvalidArgumentError`; nothing else is affected.
   */
  json?: LazyJson<TInfo>;
  /**
   * Which responses this notification is sent for: `'always'` (default), `'ok'` (finished, status
   * below 400), `'error'` (finished, status 400 or more), `'aborted'` (the client went away first),
   * or a predicate of the finished response. Otherwise it settles `'cancelled'`; a predicate that
   * throws counts as no match.
   */
  when?: When<TInfo>;
}

/** Options of `after()`. */
export interface AfterOptions<TInfo = ResponseInfo> {
  /**
   * Which responses the hook runs for: `'always'` (default), `'ok'` (finished, status below 400),
   * `'error'` (finished, status 400 or more), `'aborted'` (the client went away first), or a
   * predicate of the finished response; a predicate that throws counts as no match.
   */
  when?: When<TInfo>;
  /** Milliseconds before the hook's signal aborts and its slot is freed. Default: the dispatcher's `hookTimeout`. */
  timeout?: number;
}

/**
 * `res.fireAndForget(url, init)`: validate now, send once the response has finished.
 *
 * @example
 * ```ts
 * res.fireAndForget('https://hooks.example.com', { json: (info) => ({ status: info.statusCode }) });
 * ```
 */
export interface FireAndForget<TInfo = ResponseInfo> {
  (url: string | URL, init?: FireAndForgetInit<TInfo>): DeliveryHandle;
  (request: FireAndForgetInit<TInfo> & { url: string | URL }): DeliveryHandle;
}

/**
 * `res.after(fn, options)`: run `fn` once the response has finished, bounded, with a timeout and a signal.
 *
 * @example
 * ```ts
 * res.after(async (info, signal) => { await db.insert(auditRow(info), { signal }); }, { when: 'ok' });
 * ```
 */
export type After<TInfo = ResponseInfo> = (fn: HookFn<TInfo>, options?: AfterOptions<TInfo>) => void;

/** What parked work does when the client disconnects before the response finished. */
export type ClientAbortPolicy = 'send' | 'cancel';

/**
 * Options of {@link createAfterResponse}. Read once, when the work is made; `describe` and
 * `requestId` are called as methods of this object.
 */
export interface AfterResponseOptions<TInfo extends ResponseInfo> {
  dispatcher: Dispatcher;
  /** Default `'send'`: an audit trail records aborted requests too. */
  onClientAbort?: ClientAbortPolicy;
  /** `performance.now()` when the request was first seen; durations count from it. Default: now. */
  startedAt?: number;
  /** Most items one response may park; more throws QueueFullError at the call. Default 1 000. */
  maxPerResponse?: number;
  /** Builds the info given to lazy payloads, `when` and hooks, once the response has ended. */
  describe: (outcome: ResponseOutcome, durationMs: number) => TInfo;
  /**
   * The id of the request (see `readRequestId`), read at the first `fireAndForget` call and kept
   * on its notifications, so a failed delivery's log line names the request. Default: none.
   */
  requestId?: () => string | undefined;
}

/** The parked work of one response. */
export interface AfterResponse<TInfo extends ResponseInfo> {
  fireAndForget: FireAndForget<TInfo>;
  after: After<TInfo>;
  /** True once the response has ended and the parked work was released. */
  readonly released: boolean;
}

type Parked<TInfo> =
  | {
      kind: 'send';
      notification: Notification;
      json: ((info: TInfo) => unknown) | undefined;
      when: When<TInfo>;
    }
  | {
      kind: 'hook';
      fn: HookFn<TInfo>;
      timeout: number;
      when: When<TInfo>;
      held: boolean;
      /** The context of the after() call, where `when` and the hook run. */
      runIn: RunInContext;
    };

const WHEN_VALUES = ['always', 'ok', 'error', 'aborted'];
// `satisfies` makes a new option in AfterOptions a compile error here until it is listed.
const AFTER_KEYS = Object.keys({ when: true, timeout: true } satisfies Record<keyof AfterOptions, true>);

/**
 * Parks notifications and hooks on a Node `ServerResponse` and releases them exactly once, when
 * the response emits `'close'`. The framework adapters are thin layers over this.
 *
 * Listening for `'finish'` alone would be wrong: it never fires when the client disconnects
 * first, and the parked work would leak. A response of a Node HTTP server emits `'close'` exactly
 * once, after `'finish'` or when its connection went away first, also a response still queued
 * behind another on a pipelined keep-alive connection (on Node 22 such a queued response emits
 * nothing, and neither did on-finished's listeners, used here before: while a response has no
 * socket of its own, its request's socket is watched as well). Work added once it has
 * emitted `'close'` is released on the next turn of the event loop.
 *
 * @example
 * ```ts
 * const work = createAfterResponse(res, { dispatcher, describe: (outcome, durationMs) => ({ ...}) });
 * work.fireAndForget('https://hooks.example.com', { json: { done: true } });
 * ```
 */
export function createAfterResponse<TInfo extends ResponseInfo>(
  res: ServerResponse,
  options: AfterResponseOptions<TInfo>,
): AfterResponse<TInfo> {
  return new ResponseWork(res, options);
}

/**
 * The parked work of one response. The adapter kit calls {@link ResponseWork.send} and
 * {@link ResponseWork.hook} as methods; `fireAndForget` and `after`, which a caller may take off
 * the object, are made on first read, so work made by the kit makes no closure for them.
 *
 * @example
 * ```ts
 * const work = new ResponseWork(res, { dispatcher, describe });
 * work.send('https://hooks.example.com', { json: { done: true } });
 * ```
 */
export class ResponseWork<TInfo extends ResponseInfo> implements AfterResponse<TInfo> {
  readonly #res: ServerResponse;
  readonly #internal: DispatcherInternal;
  readonly #options: AfterResponseOptions<TInfo>;
  readonly #startedAt: number;
  readonly #max: number;
  readonly #onAbort: ClientAbortPolicy;
  #parked: Array<Parked<TInfo>> | undefined;
  #info: TInfo | undefined;
  /** Read at the first fireAndForget call; `unread` until then. */
  #requestId: string | undefined | typeof unread = unread;
  #fireAndForget: FireAndForget<TInfo> | undefined = undefined;
  #after: After<TInfo> | undefined = undefined;

  constructor(res: ServerResponse, options: AfterResponseOptions<TInfo>) {
    this.#res = res;
    this.#internal = internalsOf(options.dispatcher);
    this.#options = options;
    this.#startedAt = options.startedAt ?? monotonicNow();
    this.#max = options.maxPerResponse ?? DEFAULTS.adapter.maxPerResponse;
    this.#onAbort = options.onClientAbort ?? 'send';
  }

  get released(): boolean {
    return this.#info !== undefined;
  }

  get fireAndForget(): FireAndForget<TInfo> {
    return (this.#fireAndForget ??= ((target: unknown, init?: unknown) =>
      this.send(target, init)) as FireAndForget<TInfo>);
  }

  get after(): After<TInfo> {
    return (this.#after ??= (fn, options) => this.hook(fn, options));
  }

  /** `fireAndForget(url, init)` or `fireAndForget({ url, ...init })`, as a method. */
  send(target: unknown, init?: unknown): DeliveryHandle {
    let url: unknown = target;
    let options = init as FireAndForgetInit<TInfo> | undefined;
    if (typeof target === 'object' && target !== null && !(target instanceof URL)) {
      if (init !== undefined)
        throw new InvalidArgumentError('fireAndForget({ url, ...init }) takes no second argument');
      const { url: inner, ...rest } = target as FireAndForgetInit<TInfo> & { url: unknown };
      url = inner;
      options = rest;
    }
    const when = options?.when ?? 'always';
    checkWhen(when);
    this.#checkRoom();
    const json = options?.json;
    const lazy = typeof json === 'function' ? (json as (info: TInfo) => unknown) : undefined;
    // Passed as is (no copy on the hot path): the dispatcher accepts `when` and a json function
    // for parked work, validating the rest now.
    const notification = this.#internal.prepare(url, options, true);
    if (this.#options.requestId !== undefined) {
      if (this.#requestId === unread) this.#requestId = this.#options.requestId();
      notification.requestId = this.#requestId;
    }
    this.#park({ kind: 'send', notification, json: lazy, when });
    return notification;
  }

  /** `after(fn, options)`, as a method. */
  hook(fn: HookFn<TInfo>, options: AfterOptions<TInfo> = {}): void {
    if (typeof fn !== 'function') throw new InvalidArgumentError(`after() needs a function, got ${show(fn)}`);
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError(`after() options must be an object, got ${show(options)}`);
    }
    checkKeys('after() options', options as Record<string, unknown>, AFTER_KEYS);
    const when = options.when ?? 'always';
    checkWhen(when);
    const timeout =
      options.timeout === undefined
        ? this.#internal.hooks.defaultTimeout
        : checkDuration('after() timeout', options.timeout, 1, true);
    this.#checkRoom();
    this.#park({ kind: 'hook', fn, timeout, when, held: false, runIn: captureContext() });
  }

  /** Throws before anything is created, so a refused call leaves nothing behind. */
  #checkRoom(): void {
    if (this.#info === undefined && this.#parked !== undefined && this.#parked.length >= this.#max) {
      throw new QueueFullError(`one response may park at most ${this.#max} items`);
    }
  }

  #park(item: Parked<TInfo>): void {
    if (this.#info !== undefined) {
      // The response already ended (work added from a 'finish' listener, say): release at once.
      this.#release(item, this.#info);
      return;
    }
    if (!this.#internal.park(item.kind === 'send' ? item.notification : undefined)) return;
    if (this.#parked === undefined) {
      this.#parked = [];
      // Attached on first use, so requests that park nothing cost nothing. One listener on the
      // response, none on its socket: on-finished's four and its wrapper cost four times as much.
      // `on`, not `once` (no wrapper per response): 'close' comes once, and #releaseAll runs once.
      if (this.#res.closed) setImmediate(this.#releaseAll);
      else {
        this.#res.on('close', this.#releaseAll);
        // A response queued behind another on a pipelined connection has no socket yet, and
        // Node 22 never emits its 'close' when the client goes away: watch the request's socket
        // too (only then, so the common path stays at one listener).
        if (this.#res.socket === null) this.#watchQueuedSocket();
      }
    }
    if (item.kind === 'hook') {
      item.held = true;
      this.#internal.hooks.hold();
    }
    this.#parked.push(item);
  }

  #queuedSocket: Socket | undefined;

  #watchQueuedSocket(): void {
    // `req` is absent on a ServerResponse made by hand (tests, adapters for other servers).
    const socket = (this.#res.req as ServerResponse['req'] | undefined)?.socket;
    if (socket === undefined || socket === null) return;
    if (socket.destroyed) {
      setImmediate(this.#releaseAll);
      return;
    }
    this.#queuedSocket = socket;
    socket.on('close', this.#releaseAll);
  }

  readonly #releaseAll = (): void => {
    if (this.#info !== undefined) return;
    if (this.#queuedSocket !== undefined) {
      this.#queuedSocket.off('close', this.#releaseAll);
      this.#queuedSocket = undefined;
    }
    const outcome: ResponseOutcome = this.#res.writableFinished ? 'finished' : 'aborted';
    let info: TInfo;
    try {
      info = this.#options.describe(outcome, monotonicNow() - this.#startedAt);
    } catch (error) {
      this.#internal.logger.error({ err: error }, 'afterward: describing the response failed');
      info = {
        outcome,
        statusCode: this.#res.statusCode,
        durationMs: 0,
        method: '',
        url: '',
        route: undefined,
      } as TInfo;
    }
    this.#info = info;
    const parked = this.#parked ?? [];
    this.#parked = undefined;
    for (const item of parked) {
      this.#internal.unpark(item.kind === 'send' ? item.notification.bytes : 0);
      this.#release(item, info);
    }
  };

  #release(item: Parked<TInfo>, info: TInfo): void {
    // Nothing runs after close(): not the hook, its `when`, nor a lazy payload (counted as cancelled there).
    if (this.#stopped(item)) {
      if (item.kind === 'hook' && item.held) this.#internal.hooks.unhold();
      return;
    }
    // The common notification (a payload given as is, sent whatever the response): no code of the
    // app's runs here, so no context to enter and no `when` to ask; submit() starts its attempt in
    // the context of the call anyway.
    if (
      item.kind === 'send' &&
      item.json === undefined &&
      item.when === 'always' &&
      (info.outcome === 'finished' || this.#onAbort === 'send')
    ) {
      this.#internal.submit(item.notification, true);
      return;
    }
    // In the context of the call that parked it: `when`, the lazy payload and the hook see the
    // request's AsyncLocalStorage stores, not those of whatever ended the response.
    const step = (): void => {
      const timeout = item.kind === 'hook' ? item.timeout : this.#internal.hooks.defaultTimeout;
      const skip = skipReason(item.when, info, this.#onAbort, timeout);
      if (isThenable(skip)) {
        void skip.then((reason) => this.#proceed(item, info, reason));
      } else {
        this.#proceed(item, info, skip);
      }
    };
    if (item.kind === 'hook') item.runIn(step);
    else if (item.notification.context !== undefined) item.notification.context.runInAsyncScope(step);
    else step();
  }

  #stopped(item: Parked<TInfo>): boolean {
    return item.kind === 'hook' ? this.#internal.hooks.closed : item.notification.settled;
  }

  #proceed(item: Parked<TInfo>, info: TInfo, skip: string | undefined): void {
    if (item.kind === 'hook') {
      if (skip === undefined && !this.#stopped(item))
        this.#internal.hooks.run(item.fn, info, item.timeout, item.runIn);
      if (item.held) this.#internal.hooks.unhold();
      return;
    }
    const { notification } = item;
    if (notification.settled) return;
    if (skip !== undefined) {
      notification.settle('cancelled', new CancelledError(skip));
      return;
    }
    if (item.json === undefined) {
      this.#internal.submit(notification, true);
      return;
    }
    let payload: unknown;
    try {
      payload = item.json(info);
    } catch (error) {
      notification.settle('failed', jsonError(error, 'threw'));
      return;
    }
    if (!isThenable(payload)) {
      this.#submitWith(notification, payload);
      return;
    }
    // An async payload is awaited within the hook timeout; the notification stays pending (and
    // `drain()` waits for it) meanwhile.
    void within(payload, this.#internal.hooks.defaultTimeout).then(
      (value) => this.#submitWith(notification, value),
      (error: unknown) => {
        if (!notification.settled) notification.settle('failed', jsonError(error, 'rejected'));
      },
    );
  }

  #submitWith(notification: Notification, payload: unknown): void {
    if (notification.settled) return;
    try {
      notification.setBody(stringifyJson(payload));
    } catch (error) {
      notification.settle('failed', jsonError(error, 'threw'));
      return;
    }
    this.#internal.submit(notification, true);
  }
}

const unread = Symbol('unread');

function jsonError(error: unknown, verb: string): AfterwardError {
  return isAfterwardError(error)
    ? error
    : new InvalidArgumentError(`the json function ${verb}: ${(error as Error)?.message ?? String(error)}`, {
        cause: error,
      });
}

/** True for a promise or any thenable. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** Settles like `value`, or rejects with HookTimeoutError after `ms`. */
export function within<T>(value: PromiseLike<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new HookTimeoutError(ms)), ms);
    timer.unref();
    Promise.resolve(value)
      .finally(() => clearTimeout(timer))
      .then(resolve, reject);
  });
}

/** Throws InvalidArgumentError unless `when` is one of the names or a function. */
export function checkWhen(when: unknown): void {
  if (typeof when !== 'function' && !WHEN_VALUES.includes(when as string)) {
    throw new InvalidArgumentError(
      `when must be 'always', 'ok', 'error', 'aborted' or a function, got ${show(when)}`,
    );
  }
}

/** Why parked work does not run for this response, or undefined when it does. */
export function skipReason<TInfo extends ResponseInfo>(
  when: When<TInfo>,
  info: TInfo,
  onAbort: ClientAbortPolicy,
  timeout: number = DEFAULTS.hookTimeout,
): string | undefined | Promise<string | undefined> {
  if (info.outcome === 'aborted' && onAbort === 'cancel')
    return 'the client disconnected before the response finished';
  let matches: boolean;
  switch (when) {
    case 'always':
      matches = true;
      break;
    case 'ok':
      matches = info.outcome === 'finished' && info.statusCode < 400;
      break;
    case 'error':
      matches = info.outcome === 'finished' && info.statusCode >= 400;
      break;
    case 'aborted':
      matches = info.outcome === 'aborted';
      break;
    default:
      try {
        const result: unknown = when(info);
        // An async predicate is awaited within the timeout; rejecting or late, it skips.
        if (isThenable(result)) {
          return within(result, timeout).then(
            (value) => (value === true ? undefined : 'when: predicate did not match'),
            (error: unknown) => `the when predicate threw: ${(error as Error)?.message ?? String(error)}`,
          );
        }
        matches = result === true;
      } catch (error) {
        return `the when predicate threw: ${(error as Error)?.message ?? String(error)}`;
      }
  }
  return matches ? undefined : `when: ${typeof when === 'function' ? 'predicate' : when} did not match`;
}
