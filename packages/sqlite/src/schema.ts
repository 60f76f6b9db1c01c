import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { OutboxError, toOutboxError } from './errors.js';

/** Schema version kept in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 1;

// One table: the indexed columns are what claiming, leasing and the admin filter on; `json` is the
// notification as the dispatcher made it. `attempts` and `not_before` in the columns win over the
// copies inside `json`, which is written once and never rewritten (an attempt costs one small
// UPDATE, not a JSON rewrite). `bytes` is the body size, counted against `maxBytes`.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS outbox (
  key           TEXT PRIMARY KEY,
  id            TEXT NOT NULL,
  origin        TEXT NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('pending', 'dead')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  not_before    INTEGER NOT NULL,
  lease_owner   TEXT,
  lease_until   INTEGER,
  created_at    INTEGER NOT NULL,
  bytes         INTEGER NOT NULL DEFAULT 0,
  status        INTEGER,
  error_code    TEXT,
  error_message TEXT,
  failed_at     INTEGER,
  reason        TEXT CHECK (reason IS NULL OR reason IN ('failed', 'dropped')),
  json          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, not_before);
CREATE INDEX IF NOT EXISTS outbox_lease ON outbox (lease_owner) WHERE lease_owner IS NOT NULL;
-- Dead letters only (partial): pending rows, the hot path, pay for no entry in it. Lookups by webhook
-- id scan the dead letters (bounded by maxDeadLetters) instead of keeping an index of random ids,
-- which cost about a third of the insert CPU when measured.
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (failed_at) WHERE state = 'dead';

-- Pending rows and bytes of the whole file, so every process (and the afterward command) sees the
-- same bound without counting the table on the call path. Kept by triggers, except inserts: the
-- group commit adds a whole batch in one UPDATE (a trigger per row cost ~25% of the insert CPU).
CREATE TABLE IF NOT EXISTS outbox_meta (
  one   INTEGER PRIMARY KEY CHECK (one = 1),
  rows  INTEGER NOT NULL,
  bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO outbox_meta (one, rows, bytes) VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS outbox_meta_delete AFTER DELETE ON outbox WHEN OLD.state = 'pending'
BEGIN UPDATE outbox_meta SET rows = rows - 1, bytes = bytes - OLD.bytes WHERE one = 1; END;
CREATE TRIGGER IF NOT EXISTS outbox_meta_bury AFTER UPDATE OF state ON outbox
  WHEN OLD.state = 'pending' AND NEW.state = 'dead'
BEGIN UPDATE outbox_meta SET rows = rows - 1, bytes = bytes - OLD.bytes WHERE one = 1; END;
CREATE TRIGGER IF NOT EXISTS outbox_meta_replay AFTER UPDATE OF state ON outbox
  WHEN OLD.state = 'dead' AND NEW.state = 'pending'
BEGIN UPDATE outbox_meta SET rows = rows + 1, bytes = bytes + NEW.bytes WHERE one = 1; END;
`;

/** How to open an outbox file. */
export interface OpenOptions {
  /** Create the file (and schema) when missing; the `afterward` command opens existing files only. */
  create: boolean;
  /** `PRAGMA synchronous` of this connection. */
  synchronous: 'normal' | 'full';
  /** Milliseconds a write waits for another connection's lock before failing as locked. */
  busyTimeout: number;
}

/**
 * Opens (and with `create`, initialises) an outbox file, turning every failure into an
 * {@link OutboxError} at start rather than at the first acknowledged write.
 *
 * @example
 * ```ts
 * const db = openOutboxFile('/var/lib/app/outbox.db', { create: true, synchronous: 'normal', busyTimeout: 5000 });
 * ```
 */
export function openOutboxFile(path: string, options: OpenOptions): DatabaseSync {
  const file = resolve(path);
  const dir = dirname(file);
  if (!existsSync(dir)) {
    throw new OutboxError(
      'AFTERWARD_ERR_OUTBOX_NO_DIRECTORY',
      path,
      `the directory of outbox ${path} does not exist (${dir}); create it first, the outbox creates only the file`,
    );
  }
  const exists = existsSync(file);
  if (!exists && !options.create) {
    throw new OutboxError('AFTERWARD_ERR_OUTBOX_NOT_FOUND', path, `outbox ${path} does not exist`);
  }
  // SQLite silently opens a file it cannot write read-only and fails only at the first write;
  // check up front so a read-only file is a clear error at start. WAL also needs to create the
  // -wal and -shm files next to it, hence the directory.
  for (const target of exists ? [file, dir] : [dir]) {
    try {
      accessSync(target, constants.W_OK);
    } catch (cause) {
      throw new OutboxError(
        'AFTERWARD_ERR_OUTBOX_READ_ONLY',
        path,
        `outbox ${path} is read-only: ${target} is not writable by this process; the outbox needs write access to the file and its directory`,
        { cause },
      );
    }
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(file);
  } catch (error) {
    throw toOutboxError(error, path, 'opening');
  }
  try {
    db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.busyTimeout))}`);
    if (options.create) {
      // auto_vacuum takes effect only before the first table is created: a new file gets it.
      db.exec('PRAGMA auto_vacuum = INCREMENTAL');
    }
    const mode = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode?: string } | undefined;
    if (mode?.journal_mode !== 'wal') {
      throw new OutboxError(
        'AFTERWARD_ERR_OUTBOX_IO',
        path,
        `outbox ${path} cannot use WAL mode (journal_mode is ${String(mode?.journal_mode)}); is it on a network file system?`,
      );
    }
    db.exec(`PRAGMA synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    if (options.create) {
      // A write at start: a locked or read-only file fails here, before anything is acknowledged.
      db.exec('BEGIN IMMEDIATE');
      try {
        db.exec(SCHEMA);
        db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
        db.exec('COMMIT');
      } catch (error) {
        rollbackQuietly(db);
        throw error;
      }
    } else {
      const table = db
        .prepare("SELECT 1 AS ok FROM sqlite_master WHERE type = 'table' AND name = 'outbox'")
        .get();
      if (table === undefined) {
        throw new OutboxError(
          'AFTERWARD_ERR_OUTBOX_NOT_AN_OUTBOX',
          path,
          `${path} is a SQLite file but not an afterward outbox`,
        );
      }
    }
  } catch (error) {
    db.close();
    throw toOutboxError(error, path, 'initialising');
  }
  return db;
}

/**
 * Rolls back the open transaction, if any: SQLite already rolls back by itself on some errors
 * (a full disk), and then `ROLLBACK` fails with "no transaction is active".
 *
 * @example
 * ```ts
 * try { db.exec('BEGIN'); write(); db.exec('COMMIT'); } catch (e) { rollbackQuietly(db); throw e; }
 * ```
 */
export function rollbackQuietly(db: DatabaseSync): void {
  try {
    db.exec('ROLLBACK');
  } catch {
    // no transaction was open
  }
}
