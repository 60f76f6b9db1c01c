export { afterward } from './afterward.js';
export type { AfterwardMiddleware } from './afterward.js';
export { auditLog, DEFAULT_REDACT, type AuditLogMiddleware, type KoaAuditLogOptions } from './audit.js';
export type { KoaResponseInfo } from './types.js';
export {
  createDispatcher,
  InvalidArgumentError,
  isAfterwardError,
  NotInstalledError,
  QueueFullError,
  type AfterOptions,
  type AfterwardOptions,
  type DeliveryHandle,
  type Dispatcher,
  type FireAndForgetInit,
  type LazyJson,
  type When,
} from '@afterward/core';
