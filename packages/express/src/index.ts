export { afterward } from './afterward.js';
export type { AfterwardMiddleware } from './afterward.js';
export { auditLog, DEFAULT_REDACT, type AuditLogMiddleware, type ExpressAuditLogOptions } from './audit.js';
export type { ExpressResponseInfo } from './types.js';
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
