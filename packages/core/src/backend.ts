// @afterward/core/backend: for authors of stores, queues, workers and the CLI.
// First: refuses an unsupported Node.js before undici loads (see util/node-version.ts).
import './util/node-version.js';
export { createAttemptRunner } from './attempt/runner.js';
export type { AttemptReport, AttemptRunner, AttemptRunnerOptions } from './attempt/runner.js';
export { decide } from './policy/decide.js';
export type { DecideContext, Decision, RetryPolicy } from './policy/decide.js';
export { fromNotificationJson, newKey, storageKey, toNotificationJson } from './notification/json.js';
export type { NotificationJson, NotificationRequest, NotificationSource } from './notification/json.js';
export { createMemoryStore, MemoryStore } from './queue/memory-store.js';
export type { ExternalBackend, ExternalOutcome } from './queue/external.js';
export type { DeadLetter, DeadLetterFilter, OutboxAdmin } from './queue/dead-letter.js';
export type {
  Admit,
  NotificationStore,
  PutResult,
  SettleOutcome,
  StoreHost,
  StoredRecord,
  StoreLimits,
} from './queue/store.js';
export type {
  Transport,
  TransportAttempt,
  TransportRequest,
  TransportResult,
} from './transport/transport.js';
