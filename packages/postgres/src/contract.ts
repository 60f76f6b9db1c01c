/*
 * Local copies of the wave-2 contract types (/work/plan/CONTRACT.md).
 *
 * TODO(core): replace every declaration in this file with imports from `@afterward/core/backend`
 * once the core redesign (NotificationJson, createAttemptRunner, decide) is merged. The shapes here
 * are copied verbatim so the swap is an import change only.
 */
import type { AfterwardError, TransportResult } from '@afterward/core';

/** A notification as pure data: what a durable store or an external queue keeps. Never a secret. */
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
  /**
   * Flat name/value list, lower-case names; WITHOUT per-attempt headers (webhook-signature,
   * webhook-timestamp are added per attempt by the signing decorator).
   */
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

/** Pure: what to do after an attempt. `hold` = breaker open, not an attempt: try again at `until`. */
export type Decision =
  | { kind: 'delivered'; status: number }
  | { kind: 'sent' }
  | { kind: 'retry'; delay: number; error: AfterwardError }
  | { kind: 'failed'; error: AfterwardError }
  | { kind: 'hold'; until: number };

/** What one attempt did, and what to do next. */
export interface AttemptReport {
  result: TransportResult;
  /** `decide(...)` applied with `n.attempts + 1` as this attempt. */
  decision: Decision;
}

/**
 * The part of core's `AttemptRunner` a worker needs: one attempt (signing, guard, timeouts, breaker
 * admission, Retry-After) that never rejects.
 *
 * @example
 * ```ts
 * const runner: AttemptRunnerLike = createAttemptRunner({ signing: { secret } }); // from core
 * createWorker({ backend, runner });
 * ```
 */
export interface AttemptRunnerLike {
  run(n: NotificationJson, signal: AbortSignal): Promise<AttemptReport>;
  close(): Promise<void>;
}

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
