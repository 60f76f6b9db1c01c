import type { NotificationJson } from '../notification/json.js';
import type { AfterwardError } from '../util/errors.js';

/**
 * What an external queue's enqueue leads to: committed, or dropped (its local buffer overflowed
 * while the queue was unreachable, or `close()` gave up on it). Never a rejection.
 *
 * @example
 * ```ts
 * const outcome: ExternalOutcome = await backend.enqueue(json).persisted;
 * ```
 */
export type ExternalOutcome = { state: 'persisted' } | { state: 'dropped'; error: AfterwardError };

/**
 * An external queue (`postgresBackend()` from `@afterward/postgres`) that owns delivery: the
 * dispatcher only hands notifications to it, and workers elsewhere deliver them. Defined here so
 * core depends on no backend.
 *
 * @example
 * ```ts
 * const dispatcher = createDispatcher({ backend: postgresBackend({ connectionString }) });
 * ```
 */
export interface ExternalBackend {
  /** Synchronous and cheap (buffered, written behind); `persisted` never rejects. */
  enqueue(notification: NotificationJson): { persisted: Promise<ExternalOutcome> };
  /** Writes what is buffered (until `timeout`), then lets go of its connections. */
  close(options?: { timeout?: number }): Promise<unknown>;
}

/** True for an object with the {@link ExternalBackend} methods. */
export function isExternalBackend(value: unknown): value is ExternalBackend {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Record<string, unknown>).enqueue === 'function' &&
    typeof (value as Record<string, unknown>).close === 'function'
  );
}
