export { postgresBackend } from './backend.js';
export type {
  BackendCloseResult,
  DroppedEvent,
  EnqueueTicket,
  PersistOutcome,
  PostgresBackend,
  PostgresBackendEvents,
  PostgresBackendOptions,
  PostgresBackendStats,
} from './backend.js';
export { createWorker } from './worker.js';
export type { Worker, WorkerCloseResult, WorkerEvent, WorkerOptions, WorkerStats } from './worker.js';
export { postgresAdmin } from './admin.js';
export type { PostgresAdminOptions } from './admin.js';
export { notificationJson } from './notification.js';
export type { NotificationInit } from './notification.js';
export type { SqlExecutor, SqlTarget } from './db.js';
export type { DeadLetter, DeadLetterFilter, OutboxAdmin } from '@afterward/core/backend';
export type { AttemptReport, AttemptRunner, Decision, NotificationJson } from '@afterward/core/backend';
