// Named type imports: the emitted .d.ts then compiles without esModuleInterop (module commonjs).
import type { ClientBase, Pool, QueryResult } from 'pg';

/**
 * A database adapter as pg-boss takes it (pg-boss's `Db`, restated here so that the public
 * declarations do not import pg-boss's): `fromKnex(trx)`, `fromKysely(trx)`, ... from `pg-boss` fit.
 */
export interface SqlExecutor {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** A pg-boss database adapter that can also open a transaction on one pinned connection. */
export interface PoolDatabase extends SqlExecutor {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: Row[]; rowCount?: number | null }>;
  beginTransaction(): Promise<{ db: PoolDatabase; commit(): Promise<void>; rollback(): Promise<void> }>;
}

/** A row as `pg` returns it. */
export type Row = Record<string, unknown>;

/**
 * Where `add()` writes: the caller's own `pg` client (inside `BEGIN` ... `COMMIT`), or any pg-boss
 * database adapter (`fromKnex(trx)`, `fromKysely(trx)`, `fromDrizzle(tx, sql)`, `fromPrisma(tx)`).
 */
export type SqlTarget = Pick<ClientBase, 'query'> | SqlExecutor;

function isDb(target: SqlTarget): target is SqlExecutor {
  return typeof (target as SqlExecutor).executeSql === 'function';
}

/** Runs pg-boss statements on the caller's connection, so they commit with the caller's work. */
export function toDb(target: SqlTarget): SqlExecutor {
  if (isDb(target)) return target;
  return {
    executeSql: async (text, values) => {
      return unwrap(await target.query(text, values));
    },
  };
}

/**
 * The adapter pg-boss and this package share: statements on the pool, transactions on one pinned
 * client. A failed statement inside a transaction drops the client instead of returning it, so the
 * next user never gets an aborted transaction.
 */
export function poolDatabase(pool: Pool): PoolDatabase {
  const db: PoolDatabase = {
    executeSql: async (text, values) => {
      return unwrap(await pool.query(text, values));
    },
    beginTransaction: async () => {
      const client = await pool.connect();
      let done = false;
      let broken = false;
      const onError = (): void => {
        broken = true;
      };
      client.on('error', onError);
      const release = (): void => {
        if (done) return;
        done = true;
        client.removeListener('error', onError);
        client.release(broken);
      };
      try {
        await client.query('BEGIN');
      } catch (error) {
        broken = true;
        release();
        throw error;
      }
      const tx: PoolDatabase = {
        executeSql: async (text, values) => {
          try {
            return unwrap(await client.query(text, values));
          } catch (error) {
            broken = broken || isConnectionError(error);
            throw error;
          }
        },
        beginTransaction: () => Promise.reject(new Error('nested transactions are not supported')),
      };
      return {
        db: tx,
        commit: async () => {
          try {
            await client.query('COMMIT');
          } catch (error) {
            broken = true;
            throw error;
          } finally {
            release();
          }
        },
        rollback: async () => {
          if (done) return;
          try {
            await client.query('ROLLBACK');
          } catch {
            broken = true;
          } finally {
            release();
          }
        },
      };
    },
  };
  return db;
}

/** Runs `fn` in a transaction on one pinned connection; commits on success, rolls back on throw. */
export async function withTransaction<T>(db: PoolDatabase, fn: (tx: PoolDatabase) => Promise<T>): Promise<T> {
  const tx = await db.beginTransaction();
  let value: T;
  try {
    value = await fn(tx.db);
  } catch (error) {
    await tx.rollback();
    throw error;
  }
  await tx.commit();
  return value;
}

/**
 * A multi-statement query (pg-boss sends some) answers with one result per statement; pg-boss's own
 * adapter flattens their rows the same way.
 */
function unwrap(result: QueryResult | QueryResult[]): { rows: Row[]; rowCount: number | null } {
  if (Array.isArray(result)) {
    return {
      rows: result.flatMap((r) => (r.rows ?? []) as Row[]),
      rowCount: result.at(-1)?.rowCount ?? null,
    };
  }
  return { rows: result.rows as Row[], rowCount: result.rowCount };
}

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // SQLSTATE class 08 is a connection exception; node errors (ECONNRESET...) have no SQLSTATE.
  return typeof code !== 'string' || code.startsWith('08') || code.startsWith('E');
}
