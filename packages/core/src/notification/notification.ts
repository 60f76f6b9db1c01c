import { CancelledError, HttpStatusError, type AfterwardError } from '../util/errors.js';
import {
  bodyLength,
  encodeBody,
  idHeaderBytes,
  withIdHeaders,
  type NormalizedRequest,
} from '../request/request.js';
import type { AsyncResource } from 'node:async_hooks';
import type { SettleOutcome, StoredRecord } from '../queue/store.js';
import { kStoreSlot } from '../queue/memory-store.js';
import {
  type DeliveryHandle,
  type DeliveryResponse,
  type DeliveryResult,
  type DeliveryState,
  type FinalState,
} from './handle.js';
import { toNotificationJson, type NotificationJson } from './json.js';
import { DEFAULTS, type RetryOptions } from '../options/options.js';
import { newId } from '../util/id.js';

/**
 * Where a notification reports its state changes: the dispatcher's lifecycle (counters, events,
 * logs, the store, idle waiters), or a batcher for the items it carries. A notification never
 * reaches past this interface, so the stages that move it never call back into each other.
 */
export interface NotificationLifecycle {
  /** The notification reached a final state (once). */
  settled(notification: Notification): void;
  /** An attempt failed and another is due after `delayMs`. */
  retried(notification: Notification, delayMs: number): void;
  /**
   * `cancel()` was called on a notification that is not final: take it out of wherever it waits.
   * False refuses the cancellation (a batch item whose batch already left).
   */
  cancelling(notification: Notification): boolean;
}

/** Told of every state change of a notification that another one mirrors (a batch and its items). */
export type NotificationObserver = (notification: Notification) => void;

/** The abort switch of the attempt in flight, as far as a notification needs to know it. */
export interface AttemptSwitch {
  abort(reason: unknown): void;
}

const RESOLVED: Promise<void> = Promise.resolve();

/** The length of the UUID a notification makes as its id (see {@link Notification.id}). */
const UUID_LENGTH = 36;

/**
 * An error a notification makes only when read (see {@link Notification.error}): the error of
 * one dropped from a full queue is read by nobody most of the time, and was 104 bytes of garbage
 * per overflowing send (issue 15 row 5).
 */
export class LazyError {
  readonly make: () => AfterwardError;
  constructor(make: () => AfterwardError) {
    this.make = make;
  }
}

/**
 * The neighbours of a notification in its dispatcher's list of live ones (the `Lifecycle`): a list
 * through the notifications rather than a Map by key, whose entry was about 40 bytes per queued
 * notification, and whose table a full queue (one delete and one insert per send) rebuilt every
 * few thousand sends, half a megabyte each time, in large-object space.
 */
export const kLivePrev = Symbol('afterward.livePrev');
export const kLiveNext = Symbol('afterward.liveNext');

/** The notifications watching each caller's AbortSignal, and the one listener that cancels them. */
const WATCHERS = new WeakMap<AbortSignal, { all: Set<Notification>; onAbort: () => void }>();

/** What a batch item has instead of a request (it travels inside its batch's request). */
interface ItemInfo {
  id: string;
  url: string;
  method: string;
}

/**
 * What few notifications need: kept apart so that each queued notification carries one field for
 * all of it (most are never awaited, watched, observed, answered or failed).
 */
interface Rare {
  item: ItemInfo | undefined;
  requestId: string | undefined;
  detach: (() => void) | undefined;
  observers: NotificationObserver[] | undefined;
  persisted: Promise<void> | undefined;
  done: Promise<DeliveryResult> | undefined;
  resolve: ((result: DeliveryResult) => void) | undefined;
}

function rare(): Rare {
  return {
    item: undefined,
    requestId: undefined,
    detach: undefined,
    observers: undefined,
    persisted: undefined,
    done: undefined,
    resolve: undefined,
  };
}

/**
 * Epoch milliseconds are kept as an offset from this, so they stay small integers (V8 keeps a
 * field that ever held a fraction or a number past 2^31 as a 16-byte box per object).
 */
const EPOCH = Date.now();

/**
 * `ms - EPOCH` in whole milliseconds (rounded up), as a small integer. Rounded last: a difference
 * of two large numbers made by the interpreter is a heap number even when whole (so is a delay
 * with jitter), and one such value stored made the field a 16-byte box in every notification
 * after (V8's double field representation; found on `#due` after the first retries).
 */
function offset(ms: number): number {
  const due = Math.ceil(ms - EPOCH);
  // -0 is not a small integer either.
  return due === 0 ? 0 : due;
}

/**
 * One notification from the call to its final state: the handle the caller holds, the record the
 * store keeps, and the carrier the scheduler moves. It is the only writer of its own state; each
 * transition is one method (`release`, `begin`, `retry`, `settle`, `cancel`), and the side effects
 * of a transition belong to its {@link NotificationLifecycle}.
 *
 * A queued notification lives for as long as the queue ahead of it, so it survives young
 * collections: it is kept small (17 fields, 160 bytes, and nothing else of its own: the parts it
 * shares with other sends sit in one {@link Shape}, its id is made when first read, and what few
 * notifications need sits in one object made on demand), which is most of what an outage with a
 * full queue costs (issue 15 row 5: +105..141 MB peak RSS at 21 fields plus an id, a key string,
 * and the memory store's entry and Map; +15..23 MB at 17).
 *
 * @example
 * ```ts
 * const n = new Notification(key, request, lifecycle);
 * n.release(undefined); // 'queued'
 * n.begin(abort);       // 'sending', attempts 1
 * n.settle('delivered', undefined, response);
 * ```
 */
export class Notification implements DeliveryHandle, StoredRecord, SettleOutcome {
  [kLivePrev]: Notification | undefined = undefined;
  [kLiveNext]: Notification | undefined = undefined;
  /** The memory store's bookkeeping (see {@link kStoreSlot}), declared so the shape stays fixed. */
  [kStoreSlot] = 0;
  /** The async context of the call that made it: its attempts run there (undefined: revived). */
  context: AsyncResource | undefined = undefined;
  /** {@link key}: a local one as its number (no string per notification), else the string. */
  readonly #key: number | string;
  /** {@link id}: undefined until first read (see there). */
  #id: string | undefined;
  /** What it has in common with the sends before it (see {@link Shape}). */
  readonly #shape: Shape;
  #body: Buffer | string | null;
  #bytes: number;
  #state: DeliveryState = 'pending';
  #attempts = 0;
  /** `notBefore - EPOCH`, see {@link EPOCH}; 0 for a `notBefore` of 0 (due at once). */
  #due = 0;
  /** `createdAt - EPOCH`. */
  readonly #created: number;
  // No private methods: they would cost every instance a brand field.
  #rare: Rare | undefined = undefined;
  // Set on every attempted notification: fields of their own, not in the rare part.
  #abort: AttemptSwitch | undefined = undefined;
  #response: DeliveryResponse | undefined = undefined;
  #error: AfterwardError | LazyError | undefined = undefined;

  /**
   * A notification with a request; batch items pass `undefined` and the id, URL and method instead.
   * A number as `key` is a local key (see {@link nextLocalKey}).
   */
  constructor(
    key: number | string,
    request: NormalizedRequest | undefined,
    lifecycle: NotificationLifecycle,
    item?: ItemInfo,
    createdAt = Date.now(),
  ) {
    this.#key = key;
    this.#created = offset(createdAt);
    // The request is taken apart, and the parts that most sends have in common are shared: a
    // request object per queued notification was 128 bytes more.
    if (request === undefined) {
      this.#id = item?.id ?? String(key);
      this.#shape = shape(lifecycle, undefined, item?.method ?? 'POST', NO_HEADERS, NO_SETTINGS);
      this.#body = null;
      this.#bytes = 0;
      (this.#rare ??= rare()).item = item;
    } else {
      this.#id = request.id === '' ? undefined : request.id;
      this.#shape = shape(lifecycle, target(request), request.method, request.headers, settings(request));
      this.#body = request.body;
      this.#bytes = requestBytes(request);
    }
  }

  /**
   * Unique within this process (see {@link StoredRecord.key}). A local key is kept as its number
   * and made a string on each read: only durable stores and `json()` read it.
   */
  get key(): string {
    const key = this.#key;
    return typeof key === 'number' ? String(key) : key;
  }

  /**
   * The webhook id: the caller's, or a random UUID made on first read (the transport's, a log
   * line's, the caller's). A UUID is random whenever it is drawn, so no one can tell it was not
   * drawn at the call; a notification dropped from a full queue unread never needs one, and a
   * queued one does not hold its 56 bytes while it waits (issue 15 row 5).
   */
  get id(): string {
    return (this.#id ??= newId());
  }

  get method(): string {
    return this.#shape.method;
  }

  get url(): string {
    return this.#shape.target?.url.href ?? this.#rare?.item?.url ?? '';
  }
  get createdAt(): number {
    return this.#created + EPOCH;
  }
  /**
   * The id of the HTTP request that parked it, set once at the call (`res.fireAndForget`), so the
   * log line of a failed or dropped delivery names the request that caused it.
   */
  get requestId(): string | undefined {
    return this.#rare?.requestId;
  }
  set requestId(requestId: string | undefined) {
    if (requestId !== undefined || this.#rare !== undefined) (this.#rare ??= rare()).requestId = requestId;
  }
  get state(): DeliveryState {
    return this.#state;
  }
  /** Whether the state is final: a comparison of internalised strings, no field of its own. */
  get settled(): boolean {
    const state = this.#state;
    return state !== 'pending' && state !== 'queued' && state !== 'sending' && state !== 'retrying';
  }
  get attempts(): number {
    return this.#attempts;
  }
  get response(): DeliveryResponse | undefined {
    return this.#response;
  }
  get error(): AfterwardError | undefined {
    const error = this.#error;
    return error instanceof LazyError ? (this.#error = error.make()) : error;
  }
  get notBefore(): number {
    return this.#due === 0 ? 0 : this.#due + EPOCH;
  }
  get persisted(): Promise<void> {
    return this.#rare?.persisted ?? RESOLVED;
  }
  /** The validated request; only batch items have none. */
  get request(): NormalizedRequest {
    const { target, settings, headers } = this.#shape;
    return assemble(this, target as Target, settings, headers, this.#body);
  }
  /** The retry policy of its request. */
  get retryOptions(): RetryOptions {
    return this.#shape.settings.retry;
  }
  get origin(): string {
    return this.#shape.target?.origin ?? '';
  }
  get bytes(): number {
    return this.#bytes;
  }
  get bodyBytes(): number {
    return bodyLength(this.#body);
  }
  /** The last HTTP status, for the store's {@link SettleOutcome} (no object per settle). */
  get status(): number | null {
    const error = this.#error;
    return this.#response?.status ?? (error instanceof HttpStatusError ? error.status : null);
  }
  get errorCode(): string | null {
    return this.error?.code ?? null;
  }
  get errorMessage(): string | null {
    return this.error?.message ?? null;
  }

  /** True while an attempt is running (it may already be settled, by a cancel). */
  get inFlight(): boolean {
    return this.#abort !== undefined;
  }

  get done(): Promise<DeliveryResult> {
    const more = (this.#rare ??= rare());
    if (more.done === undefined) {
      more.done = this.settled
        ? Promise.resolve(result(this))
        : new Promise<DeliveryResult>((resolve) => {
            more.resolve = resolve;
          });
    }
    return more.done;
  }

  json(): NotificationJson {
    const json = toNotificationJson(this);
    // Stored as sent: with the id headers its request's shared list leaves out.
    json.headers = withIdHeaders(json.headers, json.id);
    return json;
  }

  /** Cancels at any state: unqueues, or aborts the attempt in flight. False if already final. */
  cancel(reason?: unknown): boolean {
    if (this.settled || !this.#shape.lifecycle.cancelling(this)) return false;
    const error = new CancelledError(reason);
    this.#abort?.abort(error);
    this.settle('cancelled', error);
    return true;
  }

  /** Ties the notification to a caller's AbortSignal until it settles. */
  watch(signal: AbortSignal): void {
    let watchers = WATCHERS.get(signal);
    if (watchers === undefined) {
      // One listener per signal, whatever the number of sends it cancels: a listener per send
      // made Node warn (MaxListenersExceededWarning) past 10 sends sharing one signal.
      const all = new Set<Notification>();
      const onAbort = (): void => {
        WATCHERS.delete(signal);
        for (const notification of all) notification.cancel(signal.reason);
      };
      watchers = { all, onAbort };
      WATCHERS.set(signal, watchers);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    const { all, onAbort } = watchers;
    all.add(this);
    (this.#rare ??= rare()).detach = () => {
      all.delete(this);
      if (all.size === 0 && WATCHERS.get(signal)?.all === all) {
        WATCHERS.delete(signal);
        signal.removeEventListener('abort', onAbort);
      }
    };
  }

  /**
   * Replaces the body while still pending (a lazy payload computed after the response): a string
   * is kept as given until the first attempt, like the body of any other send.
   */
  setBody(body: Buffer | string): void {
    if (this.#state !== 'pending' || this.#shape.target === undefined) return;
    this.#bytes += bodyLength(body) - bodyLength(this.#body);
    this.#body = body;
  }

  /**
   * The request as a transport takes it: a string body is encoded, and the id headers added, on
   * the first attempt, and kept so for the retries (see {@link NormalizedRequest}).
   */
  get wireRequest(): NormalizedRequest & { body: Buffer | null } {
    const body = encodeBody(this.#body);
    this.#body = body;
    const { target, settings } = this.#shape;
    const headers = withIdHeaders(this.#shape.headers, this.id);
    return assemble(this, target as Target, settings, headers, body) as NormalizedRequest & {
      body: Buffer | null;
    };
  }

  /** pending → queued: accepted by the store. */
  release(persisted: Promise<void> | undefined): void {
    if (this.settled) return;
    if (persisted !== undefined) (this.#rare ??= rare()).persisted = persisted;
    this.#state = 'queued';
    notify(this, this.#rare);
  }

  /** pending → queued, for a notification a durable store recovered with its counters. */
  resume(attempts: number, notBefore: number): void {
    if (this.#state !== 'pending') return;
    this.#attempts = attempts;
    this.#due = notBefore === 0 ? 0 : offset(notBefore);
    this.#state = 'queued';
  }

  /** Lets go of the caller's signal of a notification refused at the call (never a handle). */
  forget(): void {
    const more = this.#rare;
    if (more === undefined) return;
    more.detach?.();
    more.detach = undefined;
  }

  /** queued/retrying → sending: an attempt starts. */
  begin(abort: AttemptSwitch): void {
    this.#state = 'sending';
    this.#attempts++;
    this.#abort = abort;
    notify(this, this.#rare);
  }

  /** The attempt in flight returned (whatever the state). */
  end(): void {
    this.#abort = undefined;
  }

  /** sending → retrying: the attempt failed, another is due at `now + delayMs`. */
  retry(error: AfterwardError, response: DeliveryResponse | undefined, delayMs: number, now: number): void {
    if (this.settled) return;
    this.#state = 'retrying';
    this.#error = error;
    if (response !== undefined) this.#response = response;
    this.#due = offset(now + delayMs);
    notify(this, this.#rare);
    this.#shape.lifecycle.retried(this, delayMs);
  }

  /** Moves to a final state once; later calls are ignored and return false. */
  settle(state: FinalState, error?: AfterwardError | LazyError, response?: DeliveryResponse): boolean {
    if (this.settled) return false;
    this.#state = state;
    if (response !== undefined) this.#response = response;
    // A delivered notification carries no error, even after failed attempts.
    if (state === 'delivered') this.#error = undefined;
    else if (error !== undefined) this.#error = error;
    const more = this.#rare;
    if (more !== undefined) {
      more.detach?.();
      more.detach = undefined;
      more.observers = undefined;
      more.resolve?.(result(this));
      more.resolve = undefined;
    }
    this.#shape.lifecycle.settled(this);
    return true;
  }

  /**
   * Mirrors `carrier` (the batch request this item travels in): from now on this notification
   * reads the carrier's state while it is not final, with `baseAttempts` added to its attempts.
   */
  follow(carrier: Notification, baseAttempts: number): void {
    const mirror = (): void => {
      if (this.settled || carrier.settled) return;
      this.#state = carrier.state;
      this.#attempts = baseAttempts + carrier.attempts;
      if (carrier.error !== undefined) this.#error = carrier.error;
    };
    ((carrier.#rare ??= rare()).observers ??= []).push(mirror);
    mirror();
  }

  /** Takes the final outcome of the carrier that delivered (or failed) this item. */
  settleAs(outcome: DeliveryResult, attempts: number): void {
    if (this.settled) return;
    this.#attempts = attempts;
    this.#response = outcome.response;
    this.#error = outcome.error;
    this.settle(outcome.state);
  }
}

/** A request's target as a queued notification keeps it. */
interface Target {
  readonly url: URL;
  readonly origin: string;
  readonly path: string;
}

/** A request's settings besides its target, headers and body. */
type Settings = Pick<NormalizedRequest, 'confirm' | 'keepBody' | 'timeout' | 'retry' | 'sign'>;

/**
 * What a notification has in common with the sends before it: the lifecycle it reports to, its
 * target, method, header list and settings, in one object shared while they stay the same (most
 * sends go to a few URLs with the same settings). One field per notification rather than five:
 * every queued notification survives young collections while the queue is full, and each field
 * is 8 bytes of it.
 */
interface Shape {
  readonly lifecycle: NotificationLifecycle;
  /** Where it goes; batch items have none. */
  readonly target: Target | undefined;
  readonly method: string;
  /** Shared with other requests (see {@link NormalizedRequest.headers}). */
  readonly headers: string[];
  readonly settings: Settings;
}

const NO_HEADERS: string[] = [];
const NO_SETTINGS: Settings = {
  confirm: 'response',
  keepBody: 0,
  timeout: DEFAULTS.timeout,
  retry: DEFAULTS.retry,
  sign: false,
};
let lastSettings: Settings = NO_SETTINGS;

/**
 * The shapes and targets made last, a few of each: sends that alternate between a few URLs, or
 * between send() and a batcher's add(), find theirs here rather than making one per call (which
 * each queued notification would then hold).
 */
const RECENT = 4;
const shapes: Array<Shape | undefined> = new Array<Shape | undefined>(RECENT).fill(undefined);
let nextShape = 0;
const targets: Array<Target | undefined> = new Array<Target | undefined>(RECENT).fill(undefined);
let nextTarget = 0;

/** The shape with these parts: one made recently when the same. */
function shape(
  lifecycle: NotificationLifecycle,
  target: Target | undefined,
  method: string,
  headers: string[],
  settings: Settings,
): Shape {
  for (let i = 0; i < RECENT; i++) {
    const made = shapes[i];
    if (
      made !== undefined &&
      made.lifecycle === lifecycle &&
      made.target === target &&
      made.method === method &&
      made.headers === headers &&
      made.settings === settings
    ) {
      return made;
    }
  }
  const made: Shape = { lifecycle, target, method, headers, settings };
  shapes[nextShape] = made;
  nextShape = (nextShape + 1) % RECENT;
  return made;
}

/**
 * Forgets the recent shapes that report to `lifecycle` (a dispatcher or batcher that closed), so
 * that module state does not keep it reachable.
 */
export function forgetShapes(lifecycle: NotificationLifecycle): void {
  for (let i = 0; i < RECENT; i++) if (shapes[i]?.lifecycle === lifecycle) shapes[i] = undefined;
}

/** The request's target: one made recently when the same (most sends go to a few URLs). */
function target(request: NormalizedRequest): Target {
  for (let i = 0; i < RECENT; i++) {
    const made = targets[i];
    if (
      made !== undefined &&
      made.url === request.url &&
      made.path === request.path &&
      made.origin === request.origin
    ) {
      return made;
    }
  }
  const made: Target = { url: request.url, origin: request.origin, path: request.path };
  targets[nextTarget] = made;
  nextTarget = (nextTarget + 1) % RECENT;
  return made;
}

/** The request's settings: the last ones made when the same (most sends take the defaults). */
function settings(request: NormalizedRequest): Settings {
  const last = lastSettings;
  if (
    last.confirm === request.confirm &&
    last.keepBody === request.keepBody &&
    last.timeout === request.timeout &&
    last.retry === request.retry &&
    last.sign === request.sign
  ) {
    return last;
  }
  lastSettings = {
    confirm: request.confirm,
    keepBody: request.keepBody,
    timeout: request.timeout,
    retry: request.retry,
    sign: request.sign,
  };
  return lastSettings;
}

/** A notification's request, put together again from its parts. */
function assemble(
  notification: Notification,
  target: Target,
  settings: Settings,
  headers: string[],
  body: Buffer | string | null,
): NormalizedRequest {
  return {
    id: notification.id,
    url: target.url,
    origin: target.origin,
    path: target.path,
    method: notification.method,
    headers,
    body,
    confirm: settings.confirm,
    keepBody: settings.keepBody,
    timeout: settings.timeout,
    retry: settings.retry,
    sign: settings.sign,
    signal: undefined,
  };
}

function notify(notification: Notification, more: Rare | undefined): void {
  const observers = more?.observers;
  if (observers !== undefined) for (const observer of observers) observer(notification);
}

function result(notification: Notification): DeliveryResult {
  return {
    id: notification.id,
    state: notification.state as FinalState,
    attempts: notification.attempts,
    response: notification.response,
    error: notification.error,
  };
}

/**
 * What a request holds, counted against `maxQueuedBytes`: its URL and request-line path, header
 * names and values, and body (a character counted as a byte). Bodies alone let 10,000 notifications
 * with 20 kB of query and headers each hold 589 MB under a 32 MiB bound.
 */
function requestBytes(request: NormalizedRequest): number {
  const headers = request.headers;
  let bytes =
    request.url.href.length +
    request.path.length +
    bodyLength(request.body) +
    idHeaderBytes(headers, request.id === '' ? UUID_LENGTH : request.id.length);
  for (let i = 0; i < headers.length; i++) bytes += (headers[i] as string).length;
  return bytes;
}
