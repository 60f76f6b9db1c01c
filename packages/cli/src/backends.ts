import { postgresAdmin } from '@afterward/postgres';
import { openSqliteAdmin } from '@afterward/sqlite';
import type { OutboxAdmin } from '@afterward/sqlite';

/** One storage backend the command can drive: a flag (`--sqlite FILE`) and how to open it. */
export interface Backend {
  /** What the flag's value is, for the help text. */
  valueName: string;
  /** The environment variable read when the flag is absent. */
  env: string;
  /** Opens the admin; `env` is the command's environment (e.g. `AFTERWARD_BUSY_TIMEOUT`). */
  open(target: string, env: Record<string, string | undefined>): OutboxAdmin | Promise<OutboxAdmin>;
}

/**
 * The backends by flag name: every command works through {@link OutboxAdmin} only.
 *
 * @example
 * ```ts
 * const admin = await backends.sqlite!.open('./outbox.db');
 * ```
 */
export const backends: Record<string, Backend> = {
  sqlite: {
    valueName: 'FILE',
    env: 'AFTERWARD_SQLITE',
    open: (file, env) => {
      // How long a write waits for the application's lock; the default suits a live app.
      const ms = Number(env.AFTERWARD_BUSY_TIMEOUT);
      return openSqliteAdmin(
        file,
        Number.isFinite(ms) && ms >= 0 && env.AFTERWARD_BUSY_TIMEOUT !== '' ? { busyTimeout: ms } : {},
      );
    },
  },
  postgres: {
    valueName: 'URL',
    env: 'AFTERWARD_POSTGRES',
    open: (url, env) =>
      postgresAdmin({
        connectionString: url,
        ...(env.AFTERWARD_POSTGRES_SCHEMA ? { schema: env.AFTERWARD_POSTGRES_SCHEMA } : {}),
      }),
  },
};
