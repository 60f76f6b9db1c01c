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
  /**
   * Resolves with `{ state, attempts, response, error }` once the notification reached a final
   * state (`delivered`, `sent`, `failed`, `dropped`, `cancelled`). **Never rejects**: a failure is
   * `state: 'failed'` with a typed `error`, so an un-awaited handle can never cause an unhandled
   * rejection.
   */
  readonly done: Promise<DeliveryResult>;
  /**
   * Resolves once the notification is committed to its store: at once with the in-memory store,
   * after the write with a durable one. Never rejects (a notification that never reached the
   * store resolves too, once it settled).
   */
  readonly persisted: Promise<void>;
  /** Cancels at any state: unqueues, or destroys the socket mid-request. False if already final. */
  cancel(reason?: unknown): boolean;
}

/** The final states. */
export const FINAL: ReadonlySet<DeliveryState> = new Set([
  'delivered',
  'sent',
  'failed',
  'cancelled',
  'dropped',
]);

/** True for the final states. */
export function isFinal(state: DeliveryState): state is FinalState {
  return FINAL.has(state);
}
