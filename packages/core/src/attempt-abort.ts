import { EventEmitter } from 'node:events';
import type { TransportAttempt } from './transport.js';

/**
 * The abort switch of one attempt, handed to the transport as its {@link TransportAttempt}.
 *
 * Why not an AbortController per attempt: on Node 20 making its signal and listening on it costs
 * several microseconds and weighs on the garbage collector; the dispatcher benchmark measured it
 * as the largest single cost per notification. undici accepts an EventEmitter with `aborted` and
 * `reason` as a signal, so the built-in transport listens here, and a real AbortSignal is made only
 * for a transport that reads `signal`.
 *
 * @example
 * ```ts
 * const attempt = new AttemptAbort(1);
 * await agent.request({ ...options, signal: abortSourceOf(attempt) });
 * ```
 */
export class AttemptAbort extends EventEmitter implements TransportAttempt {
  aborted = false;
  reason: unknown = undefined;
  readonly attempt: number;
  #controller: AbortController | undefined;

  constructor(attempt: number) {
    super();
    this.attempt = attempt;
  }

  /** A standard AbortSignal that follows this switch, made on first use. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.reason);
    }
    return this.#controller.signal;
  }

  /** Aborts once; later calls do nothing. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.#controller?.abort(reason);
    this.emit('abort');
  }
}

/** What to give undici as `signal`: the cheap switch when the dispatcher made the attempt, else its signal. */
export function abortSourceOf(attempt: TransportAttempt): AttemptAbort | AbortSignal {
  return attempt instanceof AttemptAbort ? attempt : attempt.signal;
}
