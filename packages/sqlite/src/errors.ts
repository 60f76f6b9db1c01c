import { AfterwardError, type AfterwardErrorCode } from '@afterward/core';

/** Stable codes of {@link OutboxError}. */
export type OutboxErrorCode =
  /** The directory of the outbox file does not exist (the file is created, never its directory). */
  | 'AFTERWARD_ERR_OUTBOX_NO_DIRECTORY'
  /** The file does not exist and the caller asked not to create it (the `afterward` command). */
  | 'AFTERWARD_ERR_OUTBOX_NOT_FOUND'
  /** The file or its directory cannot be written. */
  | 'AFTERWARD_ERR_OUTBOX_READ_ONLY'
  /** The disk (or the file system's quota) is full: the write was rolled back. */
  | 'AFTERWARD_ERR_OUTBOX_DISK_FULL'
  /** Another connection held the write lock for longer than `busyTimeout`. */
  | 'AFTERWARD_ERR_OUTBOX_LOCKED'
  /** The file is not a SQLite database, or not an afterward outbox. */
  | 'AFTERWARD_ERR_OUTBOX_NOT_AN_OUTBOX'
  /**
   * A dead letter's code (never thrown): its last attempt started and never finished, because the
   * process stopped during it each time (a payload that crashes the process), so it was not sent again.
   */
  | 'AFTERWARD_ERR_OUTBOX_INTERRUPTED'
  /** Any other SQLite failure; `cause` has the driver's error. */
  | 'AFTERWARD_ERR_OUTBOX_IO';

/**
 * Why an outbox file cannot be opened or written. The message names the path and says what to do;
 * `cause` keeps the driver's error (`errcode` is SQLite's result code).
 *
 * @example
 * ```ts
 * try { new OutboxDb({ path: '/no/such/dir/outbox.db' }); }
 * catch (e) { if (e instanceof OutboxError && e.outboxCode === 'AFTERWARD_ERR_OUTBOX_NO_DIRECTORY') mkdirp(); }
 * ```
 */
export class OutboxError extends AfterwardError {
  /** The outbox code (the same string as `code`, typed; core's code union gains these codes). */
  readonly outboxCode: OutboxErrorCode;
  readonly path: string;

  constructor(code: OutboxErrorCode, path: string, message: string, options?: { cause?: unknown }) {
    // Core's code union does not list the outbox codes yet (the core redesign adds them); the
    // runtime value is what callers match on.
    super(code as unknown as AfterwardErrorCode, message, options);
    this.path = path;
    this.outboxCode = code;
  }
}

// SQLite primary result codes (https://www.sqlite.org/rescode.html); extended codes keep these in
// their low byte.
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;

/**
 * Turns a `node:sqlite` error into an {@link OutboxError} with a code an operator can act on.
 *
 * @example
 * ```ts
 * try { db.exec(sql); } catch (e) { throw toOutboxError(e, path, 'writing a batch'); }
 * ```
 */
export function toOutboxError(error: unknown, path: string, doing: string): OutboxError {
  if (error instanceof OutboxError) return error;
  const errcode = (error as { errcode?: unknown } | null)?.errcode;
  const primary = typeof errcode === 'number' ? errcode & 0xff : undefined;
  const detail = error instanceof Error ? error.message : String(error);
  switch (primary) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return new OutboxError(
        'AFTERWARD_ERR_OUTBOX_LOCKED',
        path,
        `outbox ${path} is locked by another connection (${doing}): ${detail}; another process holds a write transaction for longer than busyTimeout`,
        { cause: error },
      );
    case SQLITE_READONLY:
      return new OutboxError(
        'AFTERWARD_ERR_OUTBOX_READ_ONLY',
        path,
        `outbox ${path} is read-only (${doing}): ${detail}; the process needs write access to the file and its directory`,
        { cause: error },
      );
    case SQLITE_FULL:
      return new OutboxError(
        'AFTERWARD_ERR_OUTBOX_DISK_FULL',
        path,
        `outbox ${path}: disk full (${doing}): ${detail}`,
        {
          cause: error,
        },
      );
    case SQLITE_NOTADB:
      return new OutboxError(
        'AFTERWARD_ERR_OUTBOX_NOT_AN_OUTBOX',
        path,
        `${path} is not a SQLite database (${doing}): ${detail}`,
        { cause: error },
      );
    case SQLITE_CANTOPEN:
      return new OutboxError(
        'AFTERWARD_ERR_OUTBOX_IO',
        path,
        `cannot open outbox ${path} (${doing}): ${detail}`,
        {
          cause: error,
        },
      );
    case SQLITE_IOERR:
    case undefined:
    default:
      return new OutboxError('AFTERWARD_ERR_OUTBOX_IO', path, `outbox ${path}: ${doing} failed: ${detail}`, {
        cause: error,
      });
  }
}
