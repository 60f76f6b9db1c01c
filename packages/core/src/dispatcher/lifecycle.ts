import type { EventEmitter } from 'node:events';
import type { FinalState } from '../notification/handle.js';
import {
  kLiveNext,
  kLivePrev,
  type Notification,
  type NotificationLifecycle,
} from '../notification/notification.js';
import type { NotificationStore } from '../queue/store.js';
import { kLazyWarn, type LazyWarn, type Logger } from '../util/logger.js';
import type { DeliveryEvent, DispatcherEventName, DispatcherEvents } from './events.js';

/** Something besides the queue that `drain()` flushes and waits for (partial batches, hooks). */
export interface DrainParticipant {
  /** Starts sending anything held back (partial batches). */
  flush(): void;
  /** Items still held. */
  pending(): number;
}

/** Counters of final states and retries, as `stats()` reports them. */
export interface Counts {
  delivered: number;
  sent: number;
  failed: number;
  dropped: number;
  cancelled: number;
  retries: number;
}

/**
 * The side effects of a notification's state changes, in one place: the store is told, counters
 * move, events are emitted (only when someone listens), failures are logged, and `drain()`
 * waiters are woken once nothing is pending.
 */
export class Lifecycle implements NotificationLifecycle {
  readonly counts: Counts = { delivered: 0, sent: 0, failed: 0, dropped: 0, cancelled: 0, retries: 0 };
  /** Notifications not yet final, in the order tracked: a list through them (see kLivePrev). */
  #head: Notification | undefined = undefined;
  #tail: Notification | undefined = undefined;
  #live = 0;
  /** The live ones by key, made only when a store hands back a record that is not one of them. */
  #byKey: Map<string, Notification> | undefined = undefined;
  readonly #emitter: EventEmitter;
  readonly #logger: Logger;
  readonly #store: NotificationStore;
  readonly #participants: DrainParticipant[] = [];
  readonly #idleWaiters = new Set<() => void>();
  #wake: () => void = () => undefined;
  #pendingExtra: () => number = () => 0;

  constructor(emitter: EventEmitter, logger: Logger, store: NotificationStore) {
    this.#emitter = emitter;
    this.#logger = logger;
    this.#store = store;
  }

  /** What runs the scheduler after a retry was released into the store. */
  onRetry(wake: () => void): void {
    this.#wake = wake;
  }

  track(notification: Notification): void {
    const tail = this.#tail;
    notification[kLivePrev] = tail;
    notification[kLiveNext] = undefined;
    if (tail === undefined) this.#head = notification;
    else tail[kLiveNext] = notification;
    this.#tail = notification;
    this.#live++;
    this.#byKey?.set(notification.key, notification);
  }

  /** Forgets a notification that never became one (refused at the call). */
  untrack(notification: Notification): void {
    if (!this.#isLive(notification)) return;
    const prev = notification[kLivePrev];
    const next = notification[kLiveNext];
    if (prev === undefined) this.#head = next;
    else prev[kLiveNext] = next;
    if (next === undefined) this.#tail = prev;
    else next[kLivePrev] = prev;
    notification[kLivePrev] = undefined;
    notification[kLiveNext] = undefined;
    this.#live--;
    this.#byKey?.delete(notification.key);
  }

  #isLive(notification: Notification): boolean {
    return notification[kLivePrev] !== undefined || this.#head === notification;
  }

  /** The live notification with this key (a record a store handed back), if any. */
  find(key: string): Notification | undefined {
    if (this.#byKey === undefined) {
      const byKey = new Map<string, Notification>();
      for (let n = this.#head; n !== undefined; n = n[kLiveNext]) byKey.set(n.key, n);
      this.#byKey = byKey;
    }
    return this.#byKey.get(key);
  }

  /** The notifications not yet final, in the order tracked (a copy). */
  all(): Notification[] {
    const all: Notification[] = [];
    for (let n = this.#head; n !== undefined; n = n[kLiveNext]) all.push(n);
    return all;
  }

  cancelling(notification: Notification): boolean {
    if (!this.#isLive(notification)) return false;
    if (!notification.inFlight) this.#store.remove(notification);
    return true;
  }

  retried(notification: Notification, delayMs: number): void {
    this.#store.release(notification);
    this.counts.retries++;
    const error = notification.error;
    if (error !== undefined && this.#emitter.listenerCount('retry') > 0) {
      this.emit('retry', {
        handle: notification,
        id: notification.id,
        url: notification.url,
        attempt: notification.attempts,
        delayMs,
        error,
      });
    }
    this.#wake();
  }

  settled(notification: Notification): void {
    const state = notification.state as FinalState;
    this.untrack(notification);
    // A record whose attempt is still running (cancelled mid-request) stays leased, counted
    // against the bounds, until the attempt returns and frees the slot: see {@link release}.
    if (!notification.inFlight) this.#store.settle(notification, notification);
    this.counts[state]++;
    // Built only when someone listens: this runs once per notification.
    if (this.#emitter.listenerCount(state) > 0) {
      const event: DeliveryEvent = {
        handle: notification,
        id: notification.id,
        url: notification.url,
        method: notification.method,
        state,
        attempts: notification.attempts,
        response: notification.response,
        error: notification.error,
      };
      this.emit(state, event);
    }
    if (state === 'failed' || state === 'dropped') {
      const msg = state === 'failed' ? 'afterward: notification failed' : 'afterward: notification dropped';
      const logger = this.#logger as Logger & { [kLazyWarn]?: LazyWarn };
      // Built only if written (see LazyWarn): a full queue drops one notification per send().
      if (logger[kLazyWarn] !== undefined) logger[kLazyWarn](msg, failureLine, notification);
      else logger.warn(failureLine(notification), msg);
    }
    this.checkIdle();
  }

  /** The attempt of a notification settled meanwhile (a cancel) has returned: the store may forget it now. */
  release(notification: Notification): void {
    this.#store.settle(notification, notification);
  }

  addParticipant(participant: DrainParticipant): () => void {
    this.#participants.push(participant);
    return () => this.checkIdle();
  }

  /** Forgets a participant (a closed batcher): `drain()` no longer flushes or counts it. */
  removeParticipant(participant: DrainParticipant): void {
    const index = this.#participants.indexOf(participant);
    if (index !== -1) this.#participants.splice(index, 1);
    this.checkIdle();
  }

  flushParticipants(): void {
    for (const participant of this.#participants) participant.flush();
  }

  pending(extra: number): number {
    let held = extra;
    for (const participant of this.#participants) held += participant.pending();
    return this.#live + held;
  }

  /** Resolves `waiter` once nothing is pending; returns a function that stops waiting. */
  whenIdle(waiter: () => void): () => void {
    this.#idleWaiters.add(waiter);
    return () => this.#idleWaiters.delete(waiter);
  }

  /** What else counts as pending (hooks), read on every idle check. */
  countAlso(pending: () => number): void {
    this.#pendingExtra = pending;
  }

  idle(): boolean {
    return this.pending(this.#pendingExtra()) === 0;
  }

  checkIdle(): void {
    if (this.#idleWaiters.size === 0 || !this.idle()) return;
    for (const waiter of [...this.#idleWaiters]) waiter();
  }

  emit<TEvent extends DispatcherEventName>(event: TEvent, payload: DispatcherEvents[TEvent]): void {
    if (this.#emitter.listenerCount(event) === 0) return;
    const report = (error: unknown): void => {
      this.#logger.error({ err: error, event }, 'afterward: an event listener threw');
    };
    // Called one by one rather than through emit(): a listener that throws must not break delivery
    // or skip the listeners after it, and an async one that rejects must not become an unhandled
    // rejection. rawListeners keeps once() wrappers, so they still remove themselves.
    for (const listener of this.#emitter.rawListeners(event) as Array<(payload: unknown) => unknown>) {
      try {
        const result = listener.call(this.#emitter, payload);
        if (result instanceof Promise) result.catch(report);
      } catch (error) {
        report(error);
      }
    }
  }
}

/** The log line of a failed or dropped notification: one object, without a spread. */
function failureLine(notification: Notification): object {
  const { id, url, attempts, requestId, error: err } = notification;
  return requestId === undefined ? { id, url, attempts, err } : { id, url, attempts, requestId, err };
}
