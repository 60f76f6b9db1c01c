/*
 * The dead-letter admin contract shared with @afterward/sqlite and driven by @afterward/cli.
 * The notification's stored form and the attempt runner come from `@afterward/core/backend`.
 */
import type { NotificationJson } from '@afterward/core/backend';

/** One dead letter, as the CLI shows it. */
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

/** Which dead letters a list or purge is about. */
export interface DeadLetterFilter {
  origin?: string;
  status?: number;
  errorCode?: string;
  since?: number;
  until?: number;
  limit?: number;
}

/** What `afterward dead ...` and `afterward stats` drive. */
export interface OutboxAdmin {
  listDead(filter: DeadLetterFilter): Promise<DeadLetter[]>;
  showDead(idOrKey: string): Promise<DeadLetter | undefined>;
  /**
   * Puts the dead letter back as due now, attempts reset to 0, SAME webhook id; idempotent:
   * replaying an id that is already pending/replayed is a no-op that returns false.
   */
  replayDead(idOrKey: string): Promise<boolean>;
  purgeDead(filter: DeadLetterFilter): Promise<number>;
  stats(): Promise<Record<string, number>>;
  close(): Promise<void>;
}
