import type { TransportAttempt } from './transport.js';

/**
 * The abort switch of one attempt, handed to the transport as its {@link TransportAttempt}.
 *
 * Why not an AbortController per attempt: on Node 20 making its signal and listening on it costs
 * several microseconds and weighs on the garbage collector; the dispatcher benchmark measured it
 * as the largest single cost per notification. undici accepts an emitter-like object with `reason`
 * as a signal, so the built-in transport listens here, and a real AbortSignal is made only
 * for a transport that reads `signal`.
 *
 * @example
 * ```ts
 * const attempt = new AttemptAbort(1);
 * await agent.request({ ...options, signal: abortSourceOf(attempt) });
 * ```
 */
export class AttemptAbort implements TransportAttempt {
  // No public `aborted`: undici 8 takes any object with `aborted` for a native AbortSignal (and
  // rejects it); without one it listens through once/removeListener, and reads `reason`.
  #aborted = false;
  reason: unknown = undefined;
  readonly attempt: number;
  #controller: AbortController | undefined;
  // One or two listeners at most (undici's request, a transport's own); a plain array beats an
  // EventEmitter here, which costs an init per attempt on the hot path.
  #listeners: Array<() => void> | undefined;
  // The built-in transport's handler of this attempt: an object, not a closure per attempt.
  #watcher: AbortWatcher | undefined = undefined;

  constructor(attempt: number) {
    this.attempt = attempt;
  }

  /** A standard AbortSignal that follows this switch, made on first use. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.reason);
    }
    return this.#controller.signal;
  }

  /** EventEmitter-style subscription, the shape undici accepts for a signal. */
  on(_event: 'abort', listener: () => void): this {
    (this.#listeners ??= []).push(listener);
    return this;
  }

  /** Same as {@link on}: the switch fires once. */
  once(event: 'abort', listener: () => void): this {
    return this.on(event, listener);
  }

  removeListener(_event: 'abort', listener: () => void): this {
    const listeners = this.#listeners;
    if (listeners !== undefined) {
      const index = listeners.indexOf(listener);
      if (index !== -1) listeners.splice(index, 1);
    }
    return this;
  }

  /** Whether {@link abort} was called. */
  isAborted(): boolean {
    return this.#aborted;
  }

  /** Sets the one watcher told of the abort (the built-in transport's handler); undefined unsets it. */
  watch(watcher: AbortWatcher | undefined): void {
    this.#watcher = watcher;
  }

  /** Aborts once; later calls do nothing. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.reason = reason;
    this.#controller?.abort(reason);
    const watcher = this.#watcher;
    this.#watcher = undefined;
    watcher?.attemptAborted(reason);
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners !== undefined) for (const listener of listeners) listener();
  }
}

/** Told when an {@link AttemptAbort} fires (see {@link AttemptAbort.watch}). */
export interface AbortWatcher {
  attemptAborted(reason: unknown): void;
}

/** What to give undici as `signal`: the cheap switch when the dispatcher made the attempt, else its signal. */
export function abortSourceOf(attempt: TransportAttempt): AttemptAbort | AbortSignal {
  return attempt instanceof AttemptAbort ? attempt : attempt.signal;
}
