/**
 * Local stand-ins for the shapes in the wave-2 contract (`/work/plan/CONTRACT.md`).
 *
 * TODO(core-redesign): replace every type here by the import from `@afterward/core/backend` once
 * that subpath export lands; the shapes are copied exactly so the switch is an import change.
 */

/**
 * A notification as pure data: what a durable store or an external queue keeps. Never a secret.
 *
 * @example
 * ```ts
 * const n: NotificationJson = { v: 1, key, id, url, origin: new URL(url).origin, method: 'POST', ... };
 * ```
 */
export interface NotificationJson {
  v: 1;
  /** Storage key, unique across processes and restarts (a UUIDv7-ish or random UUID string). */
  key: string;
  /** The stable webhook id (`webhook-id` / `idempotency-key`); same on every retry and replay. */
  id: string;
  /** href, full (path and query): stored, never logged. */
  url: string;
  /** URL origin, e.g. 'https://hooks.example.com'. */
  origin: string;
  method: string;
  /** Flat name/value list, lower-case names, without per-attempt headers. */
  headers: string[];
  /** base64 of the body bytes, or null. */
  body: string | null;
  confirm: 'response' | 'sent';
  keepBody: number;
  timeout: { connect: number; response: number; total: number };
  /** `attempts: 1` means no retry. */
  retry: { attempts: number; minDelay: number; maxDelay: number; factor: number; maxRetryAfter: number };
  /** Whether the attempt runner signs it (when the runner has a secret). */
  sign: boolean;
  /** Attempts already started (an attempt is recorded when it starts). */
  attempts: number;
  /** Epoch ms before which it is not due (backoff). */
  notBefore: number;
  /** Epoch ms of the call. */
  createdAt: number;
}

/**
 * A notification that failed for good, as an outbox keeps it for an operator.
 *
 * @example
 * ```ts
 * for (const d of await admin.listDead({ origin: 'https://hooks.example.com' })) console.log(d.id, d.errorCode);
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
 * const admin = openSqliteAdmin('/var/lib/app/outbox.db');
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
