import type { DeadLetter, DeadLetterFilter, OutboxAdmin } from '@afterward/core/backend';
import { OutboxDb } from './db.js';

/** Options of {@link openSqliteAdmin}. */
export interface SqliteAdminOptions {
  /** Milliseconds a write waits for the application's lock before failing as locked. Default 5,000. */
  busyTimeout?: number;
}

/**
 * The {@link OutboxAdmin} of an existing outbox file: what the `afterward` command drives. Opens
 * the file without creating it (a missing file is `AFTERWARD_ERR_OUTBOX_NOT_FOUND`); a running
 * application sees replayed rows at its next poll, without a restart.
 *
 * @example
 * ```ts
 * const admin = openSqliteAdmin('/var/lib/app/outbox.db');
 * try { for (const d of await admin.listDead({})) process.stdout.write(`${d.id}\n`); } finally { await admin.close(); }
 * ```
 */
export function openSqliteAdmin(path: string, options: SqliteAdminOptions = {}): OutboxAdmin {
  const db = new OutboxDb({
    path,
    create: false,
    ...(options.busyTimeout === undefined ? {} : { busyTimeout: options.busyTimeout }),
  });
  return {
    listDead: (filter: DeadLetterFilter): Promise<DeadLetter[]> => call(() => db.listDead(filter)),
    showDead: (idOrKey: string): Promise<DeadLetter | undefined> => call(() => db.showDead(idOrKey)),
    replayDead: (idOrKey: string): Promise<boolean> => call(() => db.replayDead(idOrKey)),
    purgeDead: (filter: DeadLetterFilter): Promise<number> => call(() => db.purgeDead(filter)),
    stats: (): Promise<Record<string, number>> =>
      call(() => {
        const { pending, leased, dead, fileBytes } = db.stats();
        return { pending, leased, dead, fileBytes };
      }),
    close: (): Promise<void> => db.close(),
  };
}

// node:sqlite is synchronous; the admin contract is async (PostgreSQL's is): a throw becomes a
// rejection, never a synchronous throw from a promise-returning function.
function call<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(fn()));
}
