import type { NotificationJson } from '@afterward/core/backend';
import type { DeadLetter, DeadLetterFilter, OutboxAdmin } from '@afterward/core/backend';
import { connectionOf, postgresBackend } from './backend.js';
import type { PostgresBackend, PostgresBackendOptions } from './backend.js';
import { withTransaction } from './db.js';
import type { Row } from './db.js';
import { toJobInsert } from './jobs.js';

/** Options of {@link postgresAdmin}: a backend to share, or what to open one with. */
export type PostgresAdminOptions =
  | { backend: PostgresBackend }
  | Pick<PostgresBackendOptions, 'connectionString' | 'pool' | 'schema' | 'queue' | 'logger'>;

/**
 * Dead letters and counts of a PostgreSQL fleet, for `afterward dead ...` and `afterward stats`.
 *
 * @example
 * ```ts
 * const admin = postgresAdmin({ connectionString: 'postgres://postgres@127.0.0.1/app' });
 * for (const d of await admin.listDead({ origin: 'https://hooks.example.com' })) process.stdout.write(`${d.id} ${d.errorCode ?? ''}\n`);
 * await admin.replayDead(id);
 * await admin.close();
 * ```
 */
export function postgresAdmin(options: PostgresAdminOptions): OutboxAdmin {
  const owned = !('backend' in options);
  const backend = 'backend' in options ? options.backend : postgresBackend(options);
  const table = `${backend.schema}.afterward_dead`;

  const where = (filter: DeadLetterFilter, values: unknown[]): string => {
    const clauses: string[] = [];
    const add = (sql: string, value: unknown): void => {
      values.push(value);
      clauses.push(sql.replace('?', `$${values.length}`));
    };
    if (filter.origin !== undefined) add('origin = ?', filter.origin);
    if (filter.status !== undefined) add('status = ?', filter.status);
    if (filter.errorCode !== undefined) add('error_code = ?', filter.errorCode);
    if (filter.since !== undefined) add('failed_at >= to_timestamp(? / 1000.0)', filter.since);
    if (filter.until !== undefined) add('failed_at < to_timestamp(? / 1000.0)', filter.until);
    return clauses.length === 0 ? '' : `WHERE ${clauses.join(' AND ')}`;
  };

  return {
    async listDead(filter) {
      const { db } = await connectionOf(backend);
      const values: unknown[] = [];
      const clause = where(filter, values);
      values.push(filter.limit ?? 100);
      const { rows } = await db.executeSql(
        `SELECT ${COLUMNS} FROM ${table} ${clause} ORDER BY failed_at DESC, key LIMIT $${values.length}`,
        values,
      );
      return rows.map(toDeadLetter);
    },

    async showDead(idOrKey) {
      const { db } = await connectionOf(backend);
      const { rows } = await db.executeSql(
        `SELECT ${COLUMNS} FROM ${table} WHERE key = $1 OR id = $1 ORDER BY failed_at DESC LIMIT 1`,
        [idOrKey],
      );
      return rows[0] === undefined ? undefined : toDeadLetter(rows[0]);
    },

    async replayDead(idOrKey) {
      const { db, boss, shape } = await connectionOf(backend);
      return withTransaction(db, async (tx) => {
        // The delete is the claim: a second replay (or a concurrent one) finds nothing and is a no-op.
        const { rows } = await tx.executeSql(
          `DELETE FROM ${table} WHERE key = (
             SELECT key FROM ${table} WHERE key = $1 OR id = $1 ORDER BY failed_at DESC LIMIT 1 FOR UPDATE
           ) RETURNING notification`,
          [idOrKey],
        );
        const row = rows[0];
        if (row === undefined) return false;
        const n = row.notification as NotificationJson;
        await boss.insert(
          backend.queue,
          [toJobInsert({ ...n, attempts: 0, notBefore: Date.now() }, shape, true)],
          {
            db: tx,
          },
        );
        return true;
      });
    },

    async purgeDead(filter) {
      const { db } = await connectionOf(backend);
      const values: unknown[] = [];
      const clause = where(filter, values);
      const { rows } = await db.executeSql(
        `WITH gone AS (DELETE FROM ${table} ${clause} RETURNING 1) SELECT count(*)::int AS n FROM gone`,
        values,
      );
      return Number(rows[0]?.n ?? 0);
    },

    async stats() {
      const { db, boss } = await connectionOf(backend);
      const queue = await boss.getQueue(backend.queue);
      const out = { pending: 0, deferred: 0, leased: 0, completed: 0, expired: 0, dead: 0, buffered: 0 };
      if (queue !== null) {
        const { rows } = await db.executeSql(
          `SELECT state::text AS state, (start_after > now()) AS deferred, count(*)::int AS n
             FROM ${backend.schema}.${queue.table} WHERE name = $1 GROUP BY 1, 2`,
          [backend.queue],
        );
        for (const r of rows) {
          const n = Number(r.n);
          if (r.state === 'created' || r.state === 'retry') {
            if (r.deferred === true) out.deferred += n;
            else out.pending += n;
          } else if (r.state === 'active') out.leased += n;
          else if (r.state === 'completed') out.completed += n;
          // pg-boss failed it: its lease expired more often than maxLeaseExpiries.
          else if (r.state === 'failed') out.expired += n;
        }
      }
      const { rows } = await db.executeSql(`SELECT count(*)::int AS n FROM ${table}`);
      out.dead = Number(rows[0]?.n ?? 0);
      const buffer = backend.stats();
      out.buffered = buffer.buffered;
      return { ...out };
    },

    async close() {
      if (owned) await backend.close({ timeout: 1_000 });
    },
  };
}

const COLUMNS = `key, id, origin, method, status, error_code, error_message, attempts,
  (extract(epoch FROM created_at) * 1000)::float8 AS created_at,
  (extract(epoch FROM failed_at) * 1000)::float8 AS failed_at, reason, notification`;

function toDeadLetter(row: Row): DeadLetter {
  const notification = row.notification as NotificationJson;
  return {
    key: String(row.key),
    id: String(row.id),
    url: notification.url,
    origin: String(row.origin),
    method: String(row.method),
    status: row.status === null ? null : Number(row.status),
    errorCode: (row.error_code as string | null) ?? null,
    errorMessage: (row.error_message as string | null) ?? null,
    attempts: Number(row.attempts),
    createdAt: Math.round(Number(row.created_at)),
    failedAt: Math.round(Number(row.failed_at)),
    reason: row.reason === 'dropped' ? 'dropped' : 'failed',
    notification,
  };
}
