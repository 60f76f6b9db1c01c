import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { rollbackQuietly } from './schema.js';

/**
 * One row of a group commit, as plain values so it crosses to the commit worker cheaply:
 * key, id, origin, attempts, not_before, created_at, bytes, json, lease_owner, lease_until.
 */
export type BatchRow = [
  string,
  string,
  string,
  number,
  number,
  number,
  number,
  string,
  string | null,
  number | null,
];

/** The file's pending rows and bytes after a commit (kept by triggers, see schema.ts). */
export interface FileCounts {
  rows: number;
  bytes: number;
}

const INSERT =
  "INSERT INTO outbox (key, id, origin, state, attempts, not_before, created_at, bytes, json, lease_owner, lease_until) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)";

/**
 * Writes batches in one transaction each, on whichever connection it is given: the main thread's
 * (synchronous 'normal') or the commit worker's (synchronous 'full').
 *
 * @example
 * ```ts
 * const writer = new BatchWriter(db); const counts = writer.write(rows);
 * ```
 */
export class BatchWriter {
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #counts: StatementSync;
  readonly #add: StatementSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#insert = db.prepare(INSERT);
    this.#counts = db.prepare('SELECT rows, bytes FROM outbox_meta WHERE one = 1');
    this.#add = db.prepare('UPDATE outbox_meta SET rows = rows + ?, bytes = bytes + ? WHERE one = 1');
  }

  /** Inserts every row and commits; throws (after rolling back) if any row fails. */
  write(rows: readonly BatchRow[]): FileCounts {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      let bytes = 0;
      for (const row of rows) {
        this.#insert.run(...row);
        bytes += row[6];
      }
      this.#add.run(rows.length, bytes);
      const counts = this.#counts.get() as unknown as FileCounts;
      this.#db.exec('COMMIT');
      return { rows: counts.rows, bytes: counts.bytes };
    } catch (error) {
      rollbackQuietly(this.#db);
      throw error;
    }
  }
}
