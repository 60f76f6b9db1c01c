import type { IncomingHttpHeaders } from 'node:http';
import type { AfterwardError } from '../util/errors.js';

/** Where a notification is in its life. The last five are final. */
export type DeliveryState =
  'pending' | 'queued' | 'sending' | 'retrying' | 'delivered' | 'sent' | 'failed' | 'cancelled' | 'dropped';

/** The final states: once in one, a handle never changes again. */
export type FinalState = Extract<DeliveryState, 'delivered' | 'sent' | 'failed' | 'cancelled' | 'dropped'>;

/** What the receiver answered. The body is kept only with `keepBody`. */
export interface DeliveryResponse {
  status: number;
  statusText: string;
  headers: IncomingHttpHeaders;
  body?: Buffer;
}

/** What `handle.done` resolves with. */
export interface DeliveryResult {
  id: string;
  state: FinalState;
  attempts: number;
  response: DeliveryResponse | undefined;
  error: AfterwardError | undefined;
}

/**
 * One notification, from the call to its final state. Poll it (`state`, `settled`) or await it
 * (`done`, which never rejects).
 *
 * @example
 * ```ts
 * const handle = res.fireAndForget('https://hooks.example.com', { json: { ok: true } });
 * const { state, error } = await handle.done;
 * ```
 */
export interface DeliveryHandle {
  /** Stable across retries; sent as `webhook-id` and `idempotency-key`. */
  readonly id: string;
  readonly url: string;
  readonly method: string;
  readonly state: DeliveryState;
  /** True once in a final state. */
  readonly settled: boolean;
  /** Attempts made so far. */
  readonly attempts: number;
  readonly response: DeliveryResponse | undefined;
  /** The last error, typed. */
  readonly error: AfterwardError | undefined;
  readonly done: Promise<DeliveryResult>;
  /** Cancels at any state: unqueues, or destroys the socket mid-request. False if already final. */
  cancel(reason?: unknown): boolean;
}

const FINAL: ReadonlySet<DeliveryState> = new Set(['delivered', 'sent', 'failed', 'cancelled', 'dropped']);

/** True for the final states. */
export function isFinal(state: DeliveryState): state is FinalState {
  return FINAL.has(state);
}

/**
 * The dispatcher's side of a handle: the same object, with the setters the scheduler uses.
 * Users see it through the read-only {@link DeliveryHandle} interface.
 */
export class Delivery implements DeliveryHandle {
  readonly id: string;
  readonly url: string;
  readonly method: string;
  state: DeliveryState;
  attempts = 0;
  response: DeliveryResponse | undefined = undefined;
  error: AfterwardError | undefined = undefined;
  /** Whatever the owner needs to find its own record again on cancel (the dispatcher's job). */
  readonly owner: unknown;
  readonly #onCancel: (delivery: Delivery, reason: unknown) => boolean;
  // Made on first read of `done`: most fire-and-forget handles are never awaited, and a promise
  // plus its resolver per notification is measurable garbage on the hot path.
  #done: Promise<DeliveryResult> | undefined;
  #resolve: ((result: DeliveryResult) => void) | undefined;

  constructor(
    id: string,
    url: string,
    method: string,
    state: DeliveryState,
    onCancel: (delivery: Delivery, reason: unknown) => boolean,
    owner?: unknown,
  ) {
    this.id = id;
    this.url = url;
    this.method = method;
    this.state = state;
    this.#onCancel = onCancel;
    this.owner = owner;
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

  get settled(): boolean {
    return FINAL.has(this.state);
  }

  cancel(reason?: unknown): boolean {
    if (this.settled) return false;
    return this.#onCancel(this, reason);
  }

  /** Moves to a final state once; later calls are ignored and return false. */
  settle(state: FinalState, error?: AfterwardError): boolean {
    if (this.settled) return false;
    this.state = state;
    if (error !== undefined) this.error = error;
    this.#resolve?.(this.#result());
    this.#resolve = undefined;
    return true;
  }

  #result(): DeliveryResult {
    return {
      id: this.id,
      state: this.state as FinalState,
      attempts: this.attempts,
      response: this.response,
      error: this.error,
    };
  }
}
