export { OutboxDb } from './db.js';
export type {
  BuryInfo,
  EnqueueResult,
  HousekeepingReport,
  OutboxDbOptions,
  OutboxDbStats,
  PendingPage,
} from './db.js';
export { openSqliteAdmin } from './admin.js';
export type { SqliteAdminOptions } from './admin.js';
export { OutboxError, toOutboxError } from './errors.js';
export type { OutboxErrorCode } from './errors.js';
export { redactMessage } from './redact.js';
export type { DeadLetter, DeadLetterFilter, OutboxAdmin } from '@afterward/core/backend';
export type { NotificationJson } from '@afterward/core/backend';
export { sqliteOutbox, SqliteOutbox } from './outbox.js';
export type { SqliteOutboxOptions } from './outbox.js';
