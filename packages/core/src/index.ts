export { createDispatcher, isDispatcher } from './dispatcher.js';
export type {
  CloseResult,
  Dispatcher,
  DispatcherOptions,
  DispatcherStats,
  DrainResult,
} from './dispatcher.js';
export { createBatcher } from './batch.js';
export type { BatchAddOptions, Batcher, BatcherOptions, BatchFormat, BatchInit } from './batch.js';
export { createAuditLog, DEFAULT_REDACT, REDACTED } from './audit.js';
export type { AuditLog, AuditLogOptions, AuditRecord, AuditTarget } from './audit.js';
export { createAfterResponse } from './after-response.js';
export { resolveAfterwardOptions } from './adapter-options.js';
export type { AfterwardOptions, ResolvedAfterwardOptions } from './adapter-options.js';
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
export type { BreakerOptions } from './breaker.js';
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
