export { createDispatcher, isDispatcher } from './dispatcher.js';
export type {
  CloseResult,
  Dispatcher,
  DispatcherOptions,
  DispatcherStats,
  DrainResult,
} from './dispatcher.js';
export { createAfterResponse } from './after-response.js';
export type {
  After,
  AfterOptions,
  AfterResponse,
  AfterResponseOptions,
  ClientAbortPolicy,
  FireAndForget,
  FireAndForgetInit,
  ResponseInfo,
  ResponseOutcome,
  When,
} from './after-response.js';
export type {
  DeliveryHandle,
  DeliveryResponse,
  DeliveryResult,
  DeliveryState,
  FinalState,
} from './handle.js';
export type { ConfirmMode, HeadersInput, QueryInput, QueryValue, SendInit, SendRequest } from './request.js';
export type { OverflowPolicy, RetryOptions, TimeoutOptions } from './options.js';
export type {
  CircuitEvent,
  DeliveryEvent,
  DispatcherEventName,
  DispatcherEvents,
  HookErrorEvent,
  RetryEvent,
} from './events.js';
export type { HookFn } from './hooks.js';
export type { Logger } from './logger.js';
export { createMemoryStore, MemoryStore } from './store.js';
export type { Admit, NotificationStore, PutResult, StoreLimits, StoredRecord } from './store.js';
export { createUndiciTransport } from './transport.js';
export type {
  Transport,
  TransportAttempt,
  TransportRequest,
  TransportResult,
  UndiciTransportOptions,
} from './transport.js';
export { createSigner } from './signing.js';
export type { Signer, SigningOptions } from './signing.js';
export { createAddressGuard, refusedReason } from './guard.js';
export type { AddressGuard, GuardOptions, GuardSetting } from './guard.js';
export {
  AfterwardError,
  BlockedAddressError,
  CancelledError,
  CircuitOpenError,
  ClosedError,
  DroppedError,
  HookError,
  HookTimeoutError,
  HttpStatusError,
  InvalidArgumentError,
  isAfterwardError,
  NetworkError,
  NotInstalledError,
  QueueFullError,
  TimeoutError,
} from './errors.js';
export type { AfterwardErrorCode, TimeoutPhase } from './errors.js';
