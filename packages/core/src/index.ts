// First: refuses an unsupported Node.js before undici loads (see util/node-version.ts).
import './util/node-version.js';
export { createDispatcher, isDispatcher } from './dispatcher/dispatcher.js';
export type {
  CloseResult,
  Dispatcher,
  DispatcherOptions,
  DispatcherStats,
  DrainResult,
} from './dispatcher/dispatcher.js';
export { createBatcher } from './batch/batcher.js';
export type { BatchAddOptions, Batcher, BatcherOptions, BatchFormat, BatchInit } from './batch/batcher.js';
export { createAuditLog, DEFAULT_REDACT, REDACTED } from './audit/audit.js';
export type { AuditLog, AuditLogOptions, AuditRecord, AuditSource, AuditTarget } from './audit/audit.js';
export type { AfterwardOptions } from './adapter/options.js';
export type {
  After,
  AfterOptions,
  ClientAbortPolicy,
  FireAndForget,
  FireAndForgetInit,
  LazyJson,
  ResponseInfo,
  ResponseOutcome,
  When,
} from './after-response/after-response.js';
export type {
  DeliveryHandle,
  DeliveryResponse,
  DeliveryResult,
  DeliveryState,
  FinalState,
} from './notification/handle.js';
export type { NotificationJson } from './notification/json.js';
export type {
  ConfirmMode,
  HeadersInput,
  QueryInput,
  QueryValue,
  SendInit,
  SendRequest,
} from './request/request.js';
export type { OverflowPolicy, RetryOptions, TimeoutOptions } from './options/options.js';
export type { BreakerOptions } from './policy/breaker.js';
export type { LogUrls } from './util/redact-url.js';
export type {
  CircuitEvent,
  DeliveryEvent,
  DispatcherEventName,
  DispatcherEvents,
  HookErrorEvent,
  RetryEvent,
} from './dispatcher/events.js';
export type { HookFn } from './after-response/hooks.js';
export type { Logger } from './util/logger.js';
export { createMemoryStore, MemoryStore } from './queue/memory-store.js';
export type {
  Admit,
  NotificationStore,
  PutResult,
  SettleOutcome,
  StoreHost,
  StoredRecord,
  StoreLimits,
} from './queue/store.js';
export { createUndiciTransport } from './transport/undici.js';
export type { UndiciTransportOptions } from './transport/undici.js';
export type {
  Transport,
  TransportAttempt,
  TransportRequest,
  TransportResult,
} from './transport/transport.js';
export { createSigner } from './policy/signing.js';
export type { Signer, SigningOptions } from './policy/signing.js';
export { createAddressGuard, refusedReason } from './policy/guard.js';
export type { AddressGuard, GuardOptions, GuardSetting } from './policy/guard.js';
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
  UnsupportedNodeError,
} from './util/errors.js';
export type { AfterwardErrorCode, TimeoutPhase } from './util/errors.js';
