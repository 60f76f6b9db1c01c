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

/**
 * A write to rows already inserted, applied by a group commit after its inserts, in the same
 * transaction (so on the same thread as the commits, in their order):
 * - `[0, key, attempts]`: an attempt started;
 * - `[1, key, notBefore, attempts, leaseOwner, leaseUntil]`: back to wait for a retry;
 * - `[2, key]`: delivered (or cancelled): deleted;
 * - `[3, key, status, errorCode, errorMessage, attempts, failedAt, reason]`: a dead letter;
 * - `[4, owner, leaseUntil]`: every lease of `owner` renewed.
 */
export type BatchOp =
  | [0, string, number]
  | [1, string, number, number, string | null, number | null]
  | [2, string]
  | [3, string, number | null, string | null, string | null, number | null, number, 'failed' | 'dropped']
  | [4, string, number];

/** SQL of each {@link BatchOp}, by its kind; the same statements as OutboxDb's own methods. */
export const OP_SQL = [
  'UPDATE outbox SET attempts = ? WHERE key = ?',
  "UPDATE outbox SET not_before = ?, attempts = ?, lease_owner = ?, lease_until = ? WHERE key = ? AND state = 'pending'",
  'DELETE FROM outbox WHERE key = ?',
  `UPDATE outbox SET state = 'dead', lease_owner = NULL, lease_until = NULL, status = ?, error_code = ?,
     error_message = ?, attempts = coalesce(?, attempts), failed_at = ?, reason = ?
   WHERE key = ? AND state = 'pending'`,
  "UPDATE outbox SET lease_until = ? WHERE lease_owner = ? AND state = 'pending'",
] as const;

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
  readonly #ops: StatementSync[];

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#insert = db.prepare(INSERT);
    this.#counts = db.prepare('SELECT rows, bytes FROM outbox_meta WHERE one = 1');
    this.#add = db.prepare('UPDATE outbox_meta SET rows = rows + ?, bytes = bytes + ? WHERE one = 1');
    this.#ops = OP_SQL.map((sql) => db.prepare(sql));
  }

  /**
   * Inserts every row, applies the writes queued meanwhile, and commits; throws (after rolling
   * back) if anything fails.
   */
  write(rows: readonly BatchRow[], ops: readonly BatchOp[] = []): FileCounts {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      let bytes = 0;
      for (const row of rows) {
        this.#insert.run(...row);
        bytes += row[6];
      }
      if (rows.length > 0) this.#add.run(rows.length, bytes);
      for (const op of ops) this.#apply(op);
      const counts = this.#counts.get() as unknown as FileCounts;
      this.#db.exec('COMMIT');
      return { rows: counts.rows, bytes: counts.bytes };
    } catch (error) {
      rollbackQuietly(this.#db);
      throw error;
    }
  }

  #apply(op: BatchOp): void {
    switch (op[0]) {
      case 0:
        this.#ops[0]!.run(op[2], op[1]);
        break;
      case 1:
        this.#ops[1]!.run(op[2], op[3], op[4], op[5], op[1]);
        break;
      case 2:
        this.#ops[2]!.run(op[1]);
        break;
      case 3:
        this.#ops[3]!.run(op[2], op[3], op[4], op[5], op[6], op[7], op[1]);
        break;
      case 4:
        this.#ops[4]!.run(op[2], op[1]);
        break;
    }
  }
}
