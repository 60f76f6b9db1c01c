import { CancelledError, HttpStatusError, type AfterwardError } from '../util/errors.js';
import type { NormalizedRequest } from '../request/request.js';
import type { AsyncResource } from 'node:async_hooks';
import type { SettleOutcome, StoredRecord } from '../queue/store.js';
import {
  FINAL,
  type DeliveryHandle,
  type DeliveryResponse,
  type DeliveryResult,
  type DeliveryState,
  type FinalState,
} from './handle.js';
import { toNotificationJson, type NotificationJson } from './json.js';

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

/** The notifications watching each caller's AbortSignal, and the one listener that cancels them. */
const WATCHERS = new WeakMap<AbortSignal, { all: Set<Notification>; onAbort: () => void }>();

/**
 * One notification from the call to its final state: the handle the caller holds, the record the
 * store keeps, and the carrier the scheduler moves. It is the only writer of its own state; each
 * transition is one method (`release`, `begin`, `retry`, `settle`, `cancel`), and the side effects
 * of a transition belong to its {@link NotificationLifecycle}.
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
  readonly key: string;
  readonly id: string;
  readonly url: string;
  readonly method: string;
  readonly createdAt: number;
  /** The async context of the call that made it: its attempts run there (undefined: revived). */
  context: AsyncResource | undefined = undefined;
  /**
   * The id of the HTTP request that parked it, set once at the call (`res.fireAndForget`), so the
   * log line of a failed or dropped delivery names the request that caused it.
   */
  requestId: string | undefined = undefined;
  #request: NormalizedRequest | undefined;
  #bytes: number;
  #state: DeliveryState = 'pending';
  /** Whether {@link #state} is final: read several times per notification, set only by settle(). */
  #settled = false;
  #attempts = 0;
  #response: DeliveryResponse | undefined = undefined;
  #error: AfterwardError | undefined = undefined;
  #notBefore = 0;
  #abort: AttemptSwitch | undefined = undefined;
  #detach: (() => void) | undefined = undefined;
  #observers: NotificationObserver[] | undefined = undefined;
  #persisted: Promise<void> | undefined = undefined;
  readonly #lifecycle: NotificationLifecycle;
  // Made on first read of `done`: most fire-and-forget handles are never awaited, and a promise
  // plus its resolver per notification is measurable garbage on the hot path.
  #done: Promise<DeliveryResult> | undefined = undefined;
  #resolve: ((result: DeliveryResult) => void) | undefined = undefined;

  /** A notification with a request; batch items pass `undefined` and the id, URL and method instead. */
  constructor(
    key: string,
    request: NormalizedRequest | undefined,
    lifecycle: NotificationLifecycle,
    item?: { id: string; url: string; method: string },
    createdAt = Date.now(),
  ) {
    this.key = key;
    this.#request = request;
    this.#bytes = request === undefined ? 0 : requestBytes(request);
    this.#lifecycle = lifecycle;
    this.id = request?.id ?? item?.id ?? key;
    this.url = request?.url.href ?? item?.url ?? '';
    this.method = request?.method ?? item?.method ?? 'POST';
    this.createdAt = createdAt;
  }

  get state(): DeliveryState {
    return this.#state;
  }
  get settled(): boolean {
    return this.#settled;
  }
  get attempts(): number {
    return this.#attempts;
  }
  get response(): DeliveryResponse | undefined {
    return this.#response;
  }
  get error(): AfterwardError | undefined {
    return this.#error;
  }
  get notBefore(): number {
    return this.#notBefore;
  }
  get persisted(): Promise<void> {
    return this.#persisted ?? RESOLVED;
  }
  /** The validated request; only batch items have none. */
  get request(): NormalizedRequest {
    return this.#request as NormalizedRequest;
  }
  get origin(): string {
    return this.#request?.origin ?? '';
  }
  get bytes(): number {
    return this.#bytes;
  }
  get bodyBytes(): number {
    return this.#request?.body?.length ?? 0;
  }
  /** The last HTTP status, for the store's {@link SettleOutcome} (no object per settle). */
  get status(): number | null {
    return this.#response?.status ?? (this.#error instanceof HttpStatusError ? this.#error.status : null);
  }
  get errorCode(): string | null {
    return this.#error?.code ?? null;
  }
  get errorMessage(): string | null {
    return this.#error?.message ?? null;
  }

  /** True while an attempt is running (it may already be settled, by a cancel). */
  get inFlight(): boolean {
    return this.#abort !== undefined;
  }

  get done(): Promise<DeliveryResult> {
    if (this.#done === undefined) {
      this.#done = this.settled
        ? Promise.resolve(this.#result())
        : new Promise<DeliveryResult>((resolve) => {
            this.#resolve = resolve;
          });
    }
    return this.#done;
  }

  json(): NotificationJson {
    return toNotificationJson(this);
  }

  /** Cancels at any state: unqueues, or aborts the attempt in flight. False if already final. */
  cancel(reason?: unknown): boolean {
    if (this.settled || !this.#lifecycle.cancelling(this)) return false;
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
    this.#detach = () => {
      all.delete(this);
      if (all.size === 0 && WATCHERS.get(signal)?.all === all) {
        WATCHERS.delete(signal);
        signal.removeEventListener('abort', onAbort);
      }
    };
  }

  /** Replaces the body while still pending (a lazy payload computed after the response). */
  setBody(body: Buffer): void {
    if (this.#state !== 'pending' || this.#request === undefined) return;
    this.#bytes += body.length - (this.#request.body?.length ?? 0);
    this.#request = { ...this.#request, body };
  }

  /** pending → queued: accepted by the store. */
  release(persisted: Promise<void> | undefined): void {
    if (this.settled) return;
    this.#persisted = persisted;
    this.#state = 'queued';
    this.#notify();
  }

  /** pending → queued, for a notification a durable store recovered with its counters. */
  resume(attempts: number, notBefore: number): void {
    if (this.#state !== 'pending') return;
    this.#attempts = attempts;
    this.#notBefore = notBefore;
    this.#state = 'queued';
  }

  /** Lets go of the caller's signal of a notification refused at the call (never a handle). */
  forget(): void {
    this.#detach?.();
    this.#detach = undefined;
  }

  /** queued/retrying → sending: an attempt starts. */
  begin(abort: AttemptSwitch): void {
    this.#state = 'sending';
    this.#attempts++;
    this.#abort = abort;
    this.#notify();
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
    this.#notBefore = now + delayMs;
    this.#notify();
    this.#lifecycle.retried(this, delayMs);
  }

  /** Moves to a final state once; later calls are ignored and return false. */
  settle(state: FinalState, error?: AfterwardError, response?: DeliveryResponse): boolean {
    if (this.#settled) return false;
    this.#settled = FINAL.has(state);
    this.#state = state;
    if (response !== undefined) this.#response = response;
    // A delivered notification carries no error, even after failed attempts.
    if (state === 'delivered') this.#error = undefined;
    else if (error !== undefined) this.#error = error;
    this.#detach?.();
    this.#detach = undefined;
    this.#observers = undefined;
    this.#resolve?.(this.#result());
    this.#resolve = undefined;
    this.#lifecycle.settled(this);
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
    (carrier.#observers ??= []).push(mirror);
    mirror();
  }

  /** Takes the final outcome of the carrier that delivered (or failed) this item. */
  settleAs(result: DeliveryResult, attempts: number): void {
    if (this.settled) return;
    this.#attempts = attempts;
    this.#response = result.response;
    this.#error = result.error;
    this.settle(result.state);
  }

  #notify(): void {
    const observers = this.#observers;
    if (observers !== undefined) for (const observer of observers) observer(this);
  }

  #result(): DeliveryResult {
    return {
      id: this.id,
      state: this.#state as FinalState,
      attempts: this.#attempts,
      response: this.#response,
      error: this.#error,
    };
  }
}

/**
 * What a request holds, counted against `maxQueuedBytes`: its URL and request-line path, header
 * names and values, and body (a character counted as a byte). Bodies alone let 10,000 notifications
 * with 20 kB of query and headers each hold 589 MB under a 32 MiB bound.
 */
function requestBytes(request: NormalizedRequest): number {
  let bytes = request.url.href.length + request.path.length + (request.body?.length ?? 0);
  const headers = request.headers;
  for (let i = 0; i < headers.length; i++) bytes += (headers[i] as string).length;
  return bytes;
}
