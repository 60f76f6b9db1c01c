import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { Job } from 'pg-boss';
import { InvalidArgumentError, isAfterwardError } from '@afterward/core';
import type { Logger } from '@afterward/core';
import { createAttemptRunner } from '@afterward/core/backend';
import type {
  AttemptReport,
  AttemptRunner,
  AttemptRunnerOptions,
  Decision,
  NotificationJson,
} from '@afterward/core/backend';
import { connectionOf } from './backend.js';
import type { BackendConnection, PostgresBackend } from './backend.js';
import { withTransaction } from './db.js';
import type { PoolDatabase } from './db.js';
import { notifyChannel, toJobInsert } from './jobs.js';
import { defaultLogger, rateLimited } from './log.js';

/**
 * Options of {@link createWorker}: the backend, the dispatcher options that shape one attempt
 * (`signing`, `guard`, `timeout`, `retry`, `breaker`, `headers`, `userAgent`, `transport`,
 * `maxResponseBytes`, `logger`; the same as `createDispatcher`'s), and the worker's own limits.
 */
export interface WorkerOptions extends AttemptRunnerOptions {
  backend: PostgresBackend;
  /**
   * Makes one attempt. Default: `createAttemptRunner(options)` from `@afterward/core/backend`, built
   * from this object's attempt options and closed by `close()`. A runner given here is not closed.
   */
  runner?: AttemptRunner;
  /** Attempts in flight in this worker. Default 32. */
  concurrency?: number;
  /**
   * Attempts in flight to one origin across ALL workers on this queue (pg-boss `groupConcurrency`,
   * one group per origin). Default 16.
   */
  concurrencyPerOrigin?: number;
  /** Backstop poll while idle, in ms; new jobs wake the worker at once through LISTEN/NOTIFY. Default 1 000. */
  pollInterval?: number;
  logger?: Logger;
}

/** Counters of a {@link Worker}. */
export interface WorkerStats {
  inFlight: number;
  delivered: number;
  sent: number;
  retried: number;
  held: number;
  failed: number;
  /** Handed back to the queue by `close()`. */
  returned: number;
  /** Settles that could not be written (the lease expiry brings those jobs back). */
  settleErrors: number;
  fetches: number;
}

/** Payload of the worker's delivery events. */
export interface WorkerEvent {
  key: string;
  id: string;
  origin: string;
  attempts: number;
  decision: Decision;
}

/** What {@link Worker.close} resolves with. */
export interface WorkerCloseResult {
  /** True when every attempt in flight finished before the deadline. */
  drained: boolean;
  /** Attempts aborted at the deadline and put back in the queue (due now). */
  returned: number;
}

/** A delivery worker of a fleet. */
export interface Worker {
  /** Resolves once the worker has connected and made its first fetch. */
  ready(): Promise<void>;
  stats(): WorkerStats;
  on(event: 'delivered' | 'sent' | 'retry' | 'held' | 'failed', listener: (e: WorkerEvent) => void): this;
  /**
   * Stops fetching, lets attempts in flight finish until `timeout` (default 10 000 ms), then aborts
   * the rest and returns them to the queue. Closes the runner it built; not the backend, nor a
   * runner passed in.
   */
  close(options?: { timeout?: number }): Promise<WorkerCloseResult>;
}

interface Running {
  job: Job<NotificationJson>;
  abort: AbortController;
  returning: boolean;
  done: Promise<void>;
}

/**
 * Starts a worker that delivers the backend's queue: it claims jobs (pg-boss `fetch`, one origin
 * never above `concurrencyPerOrigin` across the fleet), runs one attempt each with `runner`, and
 * applies the decision: complete, re-schedule with the same webhook id, dead-letter, or hold.
 *
 * Runs its own fetch loop rather than pg-boss `work()`: `work()` waits a polling interval (>= 0.5 s)
 * after each batch, which drains a backlog at ~2 jobs/s per slot. This loop refills a slot the
 * moment it frees, and sleeps only when a fetch came back short.
 *
 * @example
 * ```ts
 * const backend = postgresBackend({ connectionString: process.env.DATABASE_URL });
 * const worker = createWorker({ backend, signing: { secret: process.env.WEBHOOK_SECRET! } });
 * process.once('SIGTERM', async () => { await worker.close({ timeout: 10_000 }); await backend.close(); });
 * ```
 */
export function createWorker(options: WorkerOptions): Worker {
  return new PgWorker(options);
}

const ATTEMPT_KEYS = [
  'timeout',
  'retry',
  'userAgent',
  'headers',
  'logger',
  'signing',
  'guard',
  'breaker',
  'transport',
  'maxResponseBytes',
] as const satisfies readonly (keyof AttemptRunnerOptions)[];

function attemptOptions(options: WorkerOptions): AttemptRunnerOptions {
  const picked: Record<string, unknown> = {};
  for (const key of ATTEMPT_KEYS) if (options[key] !== undefined) picked[key] = options[key];
  return picked;
}

class PgWorker extends EventEmitter implements Worker {
  readonly #backend: PostgresBackend;
  readonly #runner: AttemptRunner;
  readonly #ownsRunner: boolean;
  readonly #concurrency: number;
  readonly #perOrigin: number;
  readonly #pollInterval: number;
  readonly #logger: Logger;
  readonly #warnFetch: (count: number) => void;
  readonly #running = new Set<Running>();
  readonly #stats: WorkerStats = {
    inFlight: 0,
    delivered: 0,
    sent: 0,
    retried: 0,
    held: 0,
    failed: 0,
    returned: 0,
    settleErrors: 0,
    fetches: 0,
  };
  readonly #loop: Promise<void>;
  readonly #completions: {
    job: Job<NotificationJson>;
    resolve: () => void;
    reject: (error: unknown) => void;
  }[] = [];
  #conn: BackendConnection | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  #woken = false;
  #listener: pg.PoolClient | undefined;
  #ready: { promise: Promise<void>; resolve: () => void };

  constructor(options: WorkerOptions) {
    super();
    this.#backend = options.backend;
    this.#ownsRunner = options.runner === undefined;
    this.#runner = options.runner ?? createAttemptRunner(attemptOptions(options));
    this.#concurrency = positive('concurrency', options.concurrency ?? 32);
    this.#perOrigin = positive('concurrencyPerOrigin', options.concurrencyPerOrigin ?? 16);
    this.#pollInterval = positive('pollInterval', options.pollInterval ?? 1_000);
    this.#logger = options.logger ?? defaultLogger;
    this.#warnFetch = rateLimited(5_000, (count) =>
      this.#logger.warn({ failures: count }, 'afterward worker: fetch from PostgreSQL failed, retrying'),
    );
    let resolve!: () => void;
    this.#ready = { promise: new Promise<void>((r) => (resolve = r)), resolve };
    this.#loop = this.#run();
  }

  ready(): Promise<void> {
    return this.#ready.promise;
  }

  stats(): WorkerStats {
    return { ...this.#stats, inFlight: this.#running.size };
  }

  async close(options: { timeout?: number } = {}): Promise<WorkerCloseResult> {
    const timeout = options.timeout ?? 10_000;
    this.#stopping = true;
    this.#poke();
    await this.#loop;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>(
      (resolve) => (timer = setTimeout(() => resolve('timeout'), timeout)),
    );
    const all = Promise.all([...this.#running].map((r) => r.done)).then(() => 'drained' as const);
    const drained = (await Promise.race([all, deadline])) === 'drained';
    clearTimeout(timer);
    let returned = 0;
    if (!drained) {
      const left = [...this.#running];
      for (const r of left) {
        r.returning = true;
        r.abort.abort(new Error('worker shutting down'));
      }
      returned = left.length;
      await Promise.all(left.map((r) => r.done));
    }
    this.#closeListener();
    if (this.#ownsRunner) await this.#runner.close().catch(() => undefined);
    return { drained, returned };
  }

  #poke(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /** Sleeps until a slot frees, a NOTIFY arrives, `ms` passes, or close() begins. */
  async #sleep(ms: number): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.#wake = undefined;
    this.#woken = false;
  }

  async #run(): Promise<void> {
    let backoff = 100;
    while (!this.#stopping) {
      if (this.#concurrency - this.#running.size <= 0) {
        await this.#sleep(this.#pollInterval);
        continue;
      }
      let jobs: Job<NotificationJson>[];
      let free: number;
      try {
        this.#conn ??= await connectionOf(this.#backend);
        if (this.#listener === undefined) await this.#listen(this.#conn);
        // Let the completions of this turn land first: one fetch for several freed slots.
        await new Promise<void>((resolve) => setImmediate(resolve));
        // Woken before the fetch: the fetch sees what the wake was about.
        this.#woken = false;
        free = this.#concurrency - this.#running.size;
        jobs = await this.#fetch(this.#conn, free);
        this.#stats.fetches += 1;
        backoff = 100;
        this.#ready.resolve();
      } catch (error) {
        this.#warnFetch(1);
        this.#logger.debug?.({ err: error }, 'afterward worker: fetch failed');
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, 5_000);
        continue;
      }
      for (const job of jobs) this.#start(job);
      // A full fetch means more may be due: fetch again at once. A short one: wait for a wake.
      if (jobs.length < free) await this.#sleep(this.#pollInterval);
    }
  }

  /**
   * pg-boss's group filter counts active jobs in the fetch's snapshot, so two workers fetching at
   * the same moment can both claim the last slot of one origin. One advisory lock per queue, held
   * for the fetch only, serialises the claims: each fetch sees the ones committed before it.
   */
  async #fetch(conn: BackendConnection, limit: number): Promise<Job<NotificationJson>[]> {
    return withTransaction(conn.db, async (tx) => {
      await tx.executeSql('SELECT pg_advisory_xact_lock(hashtext($1))', [
        `afterward:${this.#backend.schema}.${this.#backend.queue}`,
      ]);
      return conn.boss.fetch<NotificationJson>(this.#backend.queue, {
        batchSize: limit,
        groupConcurrency: this.#perOrigin,
        db: tx,
      });
    });
  }

  async #listen(conn: BackendConnection): Promise<void> {
    const client = await conn.pool.connect();
    this.#listener = client;
    const lost = (): void => {
      if (this.#listener !== client) return;
      this.#listener = undefined;
      client.release(true);
      this.#poke();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (message) => {
      if (message.payload === this.#backend.queue) this.#poke();
    });
    await client.query(`LISTEN ${notifyChannel(this.#backend.schema)}`);
  }

  #closeListener(): void {
    const client = this.#listener;
    this.#listener = undefined;
    client?.release(true);
  }

  #start(job: Job<NotificationJson>): void {
    const running: Running = { job, abort: new AbortController(), returning: false, done: Promise.resolve() };
    this.#running.add(running);
    running.done = this.#attempt(running).finally(() => {
      this.#running.delete(running);
      this.#poke();
    });
  }

  async #attempt(running: Running): Promise<void> {
    const { job } = running;
    // Each re-claim after a lease expiry means an attempt started and was never recorded: count it.
    const n: NotificationJson = { ...job.data, attempts: job.data.attempts + job.retryCount };
    let report: AttemptReport | undefined;
    try {
      report = await this.#runner.run(n, running.abort.signal);
    } catch (error) {
      this.#logger.error({ err: error }, 'afterward worker: the attempt runner rejected (it must not)');
    }
    const decision: Decision | undefined = report?.decision;
    const conn = this.#conn;
    if (conn === undefined) return;
    try {
      if (decision?.kind === 'delivered' || decision?.kind === 'sent') {
        await this.#complete(conn, job);
        this.#count(decision.kind === 'delivered' ? 'delivered' : 'sent', n, decision);
      } else if (running.returning || decision === undefined) {
        // Shut down mid-attempt (or a runner bug): back in the queue, due now; the attempt started.
        await this.#reschedule(conn, running, { ...n, attempts: n.attempts + 1, notBefore: Date.now() });
        this.#stats.returned += 1;
      } else if (decision.kind === 'retry') {
        await this.#reschedule(conn, running, {
          ...n,
          attempts: n.attempts + 1,
          notBefore: Date.now() + decision.delay,
        });
        this.#count('retry', n, decision);
      } else if (decision.kind === 'hold') {
        // Breaker open: not an attempt, so the count stays.
        await this.#reschedule(conn, running, { ...n, notBefore: decision.until });
        this.#count('held', n, decision);
      } else {
        await this.#deadLetter(conn, running, { ...n, attempts: n.attempts + 1 }, report, decision);
        this.#count('failed', n, decision);
      }
    } catch (error) {
      this.#stats.settleErrors += 1;
      this.#logger.warn(
        { err: error, id: n.id, origin: n.origin },
        'afterward worker: could not record the outcome; the job comes back when its lease expires',
      );
    }
  }

  #count(
    event: 'delivered' | 'sent' | 'retry' | 'held' | 'failed',
    n: NotificationJson,
    decision: Decision,
  ): void {
    this.#stats[event === 'retry' ? 'retried' : event] += 1;
    if (this.listenerCount(event) > 0) {
      this.emit(event, {
        key: n.key,
        id: n.id,
        origin: n.origin,
        attempts: n.attempts + 1,
        decision,
      } satisfies WorkerEvent);
    }
  }

  /**
   * pg-boss has no per-failure delay, so a retry completes the claimed job and inserts its successor
   * (same webhook id and storage key, new job id, `startAfter`) in one transaction. The complete is
   * fenced to the claimed attempt: if the lease lapsed and another worker holds the job, nothing is
   * written here.
   */
  async #reschedule(conn: BackendConnection, running: Running, next: NotificationJson): Promise<void> {
    await withTransaction(conn.db, async (tx) => {
      if (!(await this.#settle(conn, tx, running))) return;
      await conn.boss.insert(this.#backend.queue, [toJobInsert(next, conn.shape, true)], { db: tx });
    });
    // pg-boss sends no NOTIFY for a job due later: wake this worker when it is due rather than at
    // the next poll (other workers still find it by polling).
    const wait = next.notBefore - Date.now();
    if (wait > 0 && wait < this.#pollInterval) setTimeout(() => this.#poke(), wait + 5).unref();
  }

  async #deadLetter(
    conn: BackendConnection,
    running: Running,
    n: NotificationJson,
    report: AttemptReport | undefined,
    decision: Extract<Decision, { kind: 'failed' }>,
  ): Promise<void> {
    const error = decision.error;
    const status =
      report?.result.kind === 'response'
        ? report.result.response.status
        : typeof (error as { status?: unknown }).status === 'number'
          ? (error as unknown as { status: number }).status
          : null;
    await withTransaction(conn.db, async (tx) => {
      if (!(await this.#settle(conn, tx, running))) return;
      await tx.executeSql(
        `INSERT INTO ${this.#backend.schema}.afterward_dead
           (key, id, origin, method, status, error_code, error_message, attempts, created_at, failed_at, reason, notification)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9 / 1000.0), now(), 'failed', $10)
         ON CONFLICT (key) DO UPDATE SET status = EXCLUDED.status, error_code = EXCLUDED.error_code,
           error_message = EXCLUDED.error_message, attempts = EXCLUDED.attempts, failed_at = now(),
           reason = 'failed', notification = EXCLUDED.notification`,
        [
          n.key,
          n.id,
          n.origin,
          n.method,
          status,
          isAfterwardError(error) ? error.code : null,
          redact(error.message, n),
          n.attempts,
          n.createdAt,
          JSON.stringify(n),
        ],
      );
    });
  }

  /**
   * Completions of one event-loop turn go out as one statement: a completion per job was the
   * largest cost per delivery (measured: ~590 µs CPU per delivery before, see bench/postgres.mjs).
   */
  #complete(conn: BackendConnection, job: Job<NotificationJson>): Promise<void> {
    let settle!: { resolve: () => void; reject: (error: unknown) => void };
    const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    this.#completions.push({ job, ...settle });
    if (this.#completions.length === 1) {
      setImmediate(() => {
        const batch = this.#completions.splice(0);
        conn.boss
          .complete(
            this.#backend.queue,
            batch.map((c) => ({ id: c.job.id, retryCount: c.job.retryCount })),
          )
          .then(
            () => batch.forEach((c) => c.resolve()),
            (error: unknown) => batch.forEach((c) => c.reject(error)),
          );
      });
    }
    return done;
  }

  async #settle(conn: BackendConnection, tx: PoolDatabase, running: Running): Promise<boolean> {
    const result = await conn.boss.complete(
      this.#backend.queue,
      { id: running.job.id, retryCount: running.job.retryCount },
      null,
      { db: tx },
    );
    return (result as { affected?: number }).affected === 1;
  }
}

/** Keeps scheme and host of any URL in an error message; drops userinfo, path and query. */
export function redact(message: string, n: NotificationJson): string {
  return message
    .split(n.url)
    .join(n.origin)
    .replace(/\b(https?:\/\/)(?:[^\s/@]*@)?([^\s/?#]+)[^\s]*/gi, '$1$2');
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new InvalidArgumentError(`${name} must be a positive number`);
  return value;
}
