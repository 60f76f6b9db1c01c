import type { AfterwardError } from '../util/errors.js';
import type { DeliveryHandle, DeliveryResult } from '../notification/handle.js';

/** Payload of the `delivered`, `sent`, `failed`, `dropped` and `cancelled` events. */
export interface DeliveryEvent extends DeliveryResult {
  handle: DeliveryHandle;
  url: string;
  method: string;
}

/** Payload of the `retry` event: an attempt failed and another is scheduled. */
export interface RetryEvent {
  handle: DeliveryHandle;
  id: string;
  url: string;
  /** The attempt that failed (1 for the first). */
  attempt: number;
  /** Wait before the next attempt. */
  delayMs: number;
  error: AfterwardError;
}

/** Payload of the `hook-error` event: an `after()` hook threw, rejected or timed out. */
export interface HookErrorEvent {
  error: AfterwardError;
  /** What the hook was given, for context (the ResponseInfo for after-response hooks). */
  info: unknown;
}

/** Payload of the `circuit-open` and `circuit-close` events. */
export interface CircuitEvent {
  origin: string;
  /** Failure rate over the window that opened the circuit (0 to 1). */
  failureRate: number;
}

/** Every event a dispatcher emits, with its payload. */
export interface DispatcherEvents {
  delivered: DeliveryEvent;
  sent: DeliveryEvent;
  failed: DeliveryEvent;
  dropped: DeliveryEvent;
  cancelled: DeliveryEvent;
  retry: RetryEvent;
  'hook-error': HookErrorEvent;
  'circuit-open': CircuitEvent;
  'circuit-close': CircuitEvent;
}

/** The name of a dispatcher event. */
export type DispatcherEventName = keyof DispatcherEvents;
