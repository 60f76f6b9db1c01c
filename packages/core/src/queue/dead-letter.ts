/**
 * Dead letters as every durable backend keeps them (SQLite, PostgreSQL), and the admin surface the
 * `afterward` command drives: one definition, so a backend cannot drift from the CLI.
 */
import type { NotificationJson } from '../notification/json.js';

/**
 * A notification that failed for good, as an outbox keeps it for an operator.
 *
 * @example
 * ```ts
 * for (const d of await admin.listDead({ origin: 'https://hooks.example.com' })) process.stdout.write(`${d.id} ${d.errorCode ?? ''}\n`);
 * ```
 */
export interface DeadLetter {
  key: string;
  id: string;
  url: string;
  origin: string;
  method: string;
  /** Last HTTP status, if any. */
  status: number | null;
  /** AfterwardError code, e.g. 'AFTERWARD_ERR_HTTP_STATUS'. */
  errorCode: string | null;
  /** Redacted: never path/query/userinfo of the URL. */
  errorMessage: string | null;
  attempts: number;
  createdAt: number;
  failedAt: number;
  reason: 'failed' | 'dropped';
  notification: NotificationJson;
}

/**
 * Which dead letters an admin call applies to; every field narrows, none means all.
 *
 * @example
 * ```ts
 * await admin.purgeDead({ until: Date.now() - 7 * 86_400_000 });
 * ```
 */
export interface DeadLetterFilter {
  origin?: string;
  status?: number;
  errorCode?: string;
  /** Failed at or after (epoch ms). */
  since?: number;
  /** Failed at or before (epoch ms). */
  until?: number;
  limit?: number;
}

/**
 * What `afterward dead ...` and `afterward stats` drive; one per backend (SQLite, PostgreSQL).
 *
 * @example
 * ```ts
 * const admin: OutboxAdmin = openSqliteAdmin('/var/lib/app/outbox.db'); // from @afterward/sqlite
 * await admin.replayDead('01J...'); await admin.close();
 * ```
 */
export interface OutboxAdmin {
  listDead(filter: DeadLetterFilter): Promise<DeadLetter[]>;
  showDead(idOrKey: string): Promise<DeadLetter | undefined>;
  /**
   * Puts the dead letter back as due now, attempts reset to 0, SAME webhook id; idempotent:
   * replaying an id that is already pending/replayed is a no-op that returns false.
   */
  replayDead(idOrKey: string): Promise<boolean>;
  purgeDead(filter: DeadLetterFilter): Promise<number>;
  /** Rows pending, leased, dead, file bytes (sqlite) ... */
  stats(): Promise<Record<string, number>>;
  close(): Promise<void>;
}
