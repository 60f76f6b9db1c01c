import { EventEmitter } from 'node:events';
import pg from 'pg';
// Named type imports: the emitted .d.ts then compiles without esModuleInterop (module commonjs).
import type { Pool } from 'pg';
import { PgBoss } from 'pg-boss';
import type { ConstructorOptions } from 'pg-boss';
import { ClosedError, DroppedError, InvalidArgumentError } from '@afterward/core';
import type { AfterwardError, Logger } from '@afterward/core';
import type { NotificationJson } from '@afterward/core/backend';
import { poolDatabase, toDb } from './db.js';
import type { PoolDatabase, SqlTarget } from './db.js';
import { approximateBytes, checkIdentifier, deadLetterDdl, toJobInsert } from './jobs.js';
import type { JobShape } from './jobs.js';
import { notificationJson } from './notification.js';
import type { NotificationInit } from './notification.js';
import { defaultLogger, rateLimited } from './log.js';

/** Options of {@link postgresBackend}. Give `connectionString` or `pool`. */
export interface PostgresBackendOptions {
  /** `postgres://user@host:5432/db`; the backend opens and closes its own pool. */
  connectionString?: string;
  /** Your own `pg` pool; the backend never ends it. */
  pool?: Pool;
  /** Connections of the pool the backend opens. Default 10. */
  poolSize?: number;
  /** PostgreSQL schema of pg-boss's tables and the dead-letter table. Default `'afterward'`. */
  schema?: string;
  /** pg-boss queue name. Default `'afterward_notifications'`. */
  queue?: string;
  /** Most notifications held in memory while not yet committed (buffer). Default 10 000. */
  maxBuffered?: number;
  /** Most bytes (approximate) held in memory while not yet committed. Default 32 MiB. */
  maxBufferedBytes?: number;
  /** Most notifications per insert statement. Default 1 000. */
  maxBatch?: number;
  /** Backoff between insert retries while PostgreSQL is unreachable. Default 100 ms doubling to 5 000 ms. */
  reconnect?: { minDelay?: number; maxDelay?: number };
  /** Seconds a claimed job may stay active beyond its total attempt timeout (lease). Default 30. */
  leaseMarginSeconds?: number;
  /** Lease expiries (a killed or stuck worker) a job survives before pg-boss fails it. Default 5. */
  maxLeaseExpiries?: number;
  /** How often pg-boss looks for expired leases, in seconds (min 1). Default 10. */
  superviseIntervalSeconds?: number;
  /** Seconds an undelivered job is kept. Default 14 days. */
  retentionSeconds?: number;
  /** Seconds a completed job is kept. Default 1 day. */
  deleteAfterSeconds?: number;
  /** Where warnings go; a pino logger fits. Default: one JSON line on stderr. */
  logger?: Logger;
}

/**
 * What an enqueue leads to. `persisted` resolves once the batch it rode in committed, or once it
 * was dropped (buffer full, or still unwritten at `close()`). It never rejects.
 */
export type PersistOutcome = { state: 'persisted' } | { state: 'dropped'; error: AfterwardError };

/** What {@link PostgresBackend.enqueue} returns. */
export interface EnqueueTicket {
  key: string;
  id: string;
  /** Shared by every notification of the same batch; never rejects. */
  persisted: Promise<PersistOutcome>;
}

/** Payload of the backend's `'dropped'` event. */
export interface DroppedEvent {
  key: string;
  id: string;
  origin: string;
  reason: 'buffer-full' | 'closed';
  error: DroppedError;
}

/** Events of a {@link PostgresBackend}. */
export interface PostgresBackendEvents {
  /** A notification that will never be written: the buffer overflowed, or close() gave up. */
  dropped: [DroppedEvent];
  /** An insert failed; notifications wait in the buffer and are retried with backoff. */
  unavailable: [{ error: unknown; buffered: number }];
  /** Inserts succeed again after an outage. */
  recovered: [{ buffered: number; downMs: number }];
}

/** Counters of a {@link PostgresBackend}. */
export interface PostgresBackendStats {
  /** Enqueued, not yet committed nor dropped. */
  buffered: number;
  bufferedBytes: number;
  persisted: number;
  dropped: number;
  /** Insert statements committed. */
  batches: number;
  /** Insert statements that failed (and were retried). */
  insertFailures: number;
  /** 1 while inserts are failing. */
  unavailable: number;
}

/** What {@link PostgresBackend.close} resolves with. */
export interface BackendCloseResult {
  /** True when everything enqueued was committed before the deadline. */
  flushed: boolean;
  dropped: number;
}

/**
 * pg-boss and the SQL adapter, started; for workers and the admin. Internal (`stripInternal`): the
 * public declarations stay free of pg-boss's types, whose own `.d.ts` does not compile under every
 * TypeScript setup the README lists.
 *
 * @internal
 */
export interface BackendConnection {
  boss: PgBoss;
  db: PoolDatabase;
  pool: Pool;
  /** How this backend shapes jobs (lease, retention); re-schedules keep it. */
  shape: JobShape;
}

/**
 * The fleet backend: the app side enqueues (batched per event-loop turn into one pg-boss insert),
 * workers (`createWorker`) deliver. Pass it to `createDispatcher({ backend })`, or use it directly.
 *
 * @example
 * ```ts
 * const backend = postgresBackend({ connectionString: process.env.DATABASE_URL });
 * const { persisted } = backend.enqueue(notificationJson('https://hooks.example.com/x', { json: { a: 1 } }));
 * await persisted; // { state: 'persisted' }
 * ```
 */
export interface PostgresBackend {
  readonly schema: string;
  readonly queue: string;
  /**
   * Synchronous and cheap: buffers the notification; the buffer of this event-loop turn is written
   * in one insert. Never throws for an outage: when the buffer is full the notification is dropped
   * (counted, evented, logged) and its `persisted` says so. Throws `ClosedError` after `close()`.
   */
  enqueue(n: NotificationJson): EnqueueTicket;
  /**
   * Inserts a notification inside the caller's own transaction: it commits or rolls back with the
   * business write. `target` is a `pg` client inside `BEGIN`, or a pg-boss adapter
   * (`fromKnex(trx)`, `fromKysely(trx)`, `fromDrizzle(tx, sql)`, `fromPrisma(tx)` from `pg-boss`).
   * Resolves with the notification's webhook id; rejects if the statement fails (so the caller's
   * transaction fails too).
   */
  add(target: SqlTarget, url: string | URL, init?: NotificationInit): Promise<string>;
  /** Like {@link PostgresBackend.add}, for a notification already in its stored form. */
  addNotification(target: SqlTarget, n: NotificationJson): Promise<string>;
  /** Installs pg-boss's schema, the queue and the dead-letter table (idempotent); lazy otherwise. */
  start(): Promise<void>;
  /** Resolves when everything enqueued so far is committed or dropped. */
  flush(): Promise<void>;
  stats(): PostgresBackendStats;
  on<TEvent extends keyof PostgresBackendEvents>(
    event: TEvent,
    listener: (...args: PostgresBackendEvents[TEvent]) => void,
  ): this;
  off<TEvent extends keyof PostgresBackendEvents>(
    event: TEvent,
    listener: (...args: PostgresBackendEvents[TEvent]) => void,
  ): this;
  /**
   * Stops accepting, writes what is buffered (retrying until `timeout`, default 10 000 ms), drops
   * the rest (evented and logged), stops pg-boss, and ends the pool it opened.
   */
  close(options?: { timeout?: number }): Promise<BackendCloseResult>;
}

interface Batch {
  items: NotificationJson[];
  bytes: number;
  persisted: Promise<PersistOutcome>;
  settle: (outcome: PersistOutcome) => void;
}

/**
 * Creates the PostgreSQL fleet backend (on pg-boss).
 *
 * @example
 * ```ts
 * import { postgresBackend } from '@afterward/postgres';
 * const backend = postgresBackend({ connectionString: 'postgres://postgres@127.0.0.1/app' });
 * await backend.start();
 * ```
 */
export function postgresBackend(options: PostgresBackendOptions): PostgresBackend {
  return new PgBackend(options);
}

/**
 * The started connection of a backend made by {@link postgresBackend} (starts it if needed).
 *
 * @internal
 */
export function connectionOf(backend: PostgresBackend): Promise<BackendConnection> {
  if (!(backend instanceof PgBackend)) {
    throw new InvalidArgumentError('backend: expected a backend made by postgresBackend()');
  }
  return backend.connect();
}

class PgBackend extends EventEmitter implements PostgresBackend {
  readonly schema: string;
  readonly queue: string;
  readonly #pool: Pool;
  readonly #ownsPool: boolean;
  readonly #db: PoolDatabase;
  readonly #shape: JobShape;
  readonly #logger: Logger;
  readonly #maxBuffered: number;
  readonly #maxBufferedBytes: number;
  readonly #maxBatch: number;
  readonly #minDelay: number;
  readonly #maxDelay: number;
  readonly #superviseIntervalSeconds: number;
  readonly #warnDrop: (count: number) => void;

  #boss: PgBoss | undefined;
  #starting: Promise<BackendConnection> | undefined;
  #batches: Batch[] = [];
  #open: Batch | undefined;
  #buffered = 0;
  #bufferedBytes = 0;
  #flushing: Promise<void> | undefined;
  #kick = false;
  #closing = false;
  #closeDeadline = Infinity;
  #downSince = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #wakeRetry: (() => void) | undefined;
  #counters = { persisted: 0, dropped: 0, batches: 0, insertFailures: 0 };

  constructor(options: PostgresBackendOptions) {
    super();
    if ((options.connectionString === undefined) === (options.pool === undefined)) {
      throw new InvalidArgumentError('postgresBackend needs exactly one of connectionString or pool');
    }
    this.schema = checkIdentifier('schema', options.schema ?? 'afterward');
    this.queue = checkIdentifier('queue', options.queue ?? 'afterward_notifications');
    this.#ownsPool = options.pool === undefined;
    this.#pool =
      options.pool ??
      new pg.Pool({
        connectionString: options.connectionString,
        max: options.poolSize ?? 10,
        connectionTimeoutMillis: 5_000,
      });
    this.#logger = options.logger ?? defaultLogger;
    // An idle client whose server went away emits 'error' on the pool; unheard, it crashes the app.
    this.#pool.on('error', (error) =>
      this.#logger.warn({ err: error }, 'afterward: idle PostgreSQL connection lost'),
    );
    this.#db = poolDatabase(this.#pool);
    this.#shape = {
      leaseMarginSeconds: options.leaseMarginSeconds ?? 30,
      maxLeaseExpiries: options.maxLeaseExpiries ?? 5,
      retentionSeconds: options.retentionSeconds ?? 14 * 24 * 3600,
      deleteAfterSeconds: options.deleteAfterSeconds ?? 24 * 3600,
    };
    this.#maxBuffered = options.maxBuffered ?? 10_000;
    this.#maxBufferedBytes = options.maxBufferedBytes ?? 32 * 1024 * 1024;
    this.#maxBatch = options.maxBatch ?? 1_000;
    this.#minDelay = options.reconnect?.minDelay ?? 100;
    this.#maxDelay = options.reconnect?.maxDelay ?? 5_000;
    this.#superviseIntervalSeconds = options.superviseIntervalSeconds ?? 10;
    this.#warnDrop = rateLimited(1_000, (count) =>
      this.#logger.warn({ dropped: count }, 'afterward: PostgreSQL buffer full, notifications dropped'),
    );
  }

  enqueue(n: NotificationJson): EnqueueTicket {
    if (this.#closing) throw new ClosedError('the PostgreSQL backend is closed');
    const bytes = approximateBytes(n);
    if (this.#buffered + 1 > this.#maxBuffered || this.#bufferedBytes + bytes > this.#maxBufferedBytes) {
      return { key: n.key, id: n.id, persisted: Promise.resolve(this.#drop(n, 'buffer-full')) };
    }
    let batch = this.#open;
    // A turn that enqueues more than maxBatch fills several batches (one insert statement each).
    if (batch === undefined || batch.items.length >= this.#maxBatch) {
      let settle!: (outcome: PersistOutcome) => void;
      const persisted = new Promise<PersistOutcome>((resolve) => (settle = resolve));
      batch = { items: [], bytes: 0, persisted, settle };
      this.#open = batch;
      this.#batches.push(batch);
      if (!this.#kick) {
        this.#kick = true;
        setImmediate(() => {
          this.#kick = false;
          this.#open = undefined;
          this.#startFlush();
        });
      }
    }
    batch.items.push(n);
    batch.bytes += bytes;
    this.#buffered += 1;
    this.#bufferedBytes += bytes;
    return { key: n.key, id: n.id, persisted: batch.persisted };
  }

  async add(target: SqlTarget, url: string | URL, init?: NotificationInit): Promise<string> {
    return this.addNotification(target, notificationJson(url, init));
  }

  async addNotification(target: SqlTarget, n: NotificationJson): Promise<string> {
    const { boss } = await this.connect();
    await boss.insert(this.queue, [toJobInsert(n, this.#shape)], { db: toDb(target) });
    return n.id;
  }

  async start(): Promise<void> {
    await this.connect();
  }

  connect(): Promise<BackendConnection> {
    this.#starting ??= this.#start().catch((error: unknown) => {
      this.#starting = undefined;
      throw error;
    });
    return this.#starting;
  }

  async #start(): Promise<BackendConnection> {
    const config: ConstructorOptions = {
      db: this.#db,
      schema: this.schema,
      schedule: false,
      superviseIntervalSeconds: this.#superviseIntervalSeconds,
      monitorIntervalSeconds: this.#superviseIntervalSeconds,
      registerInstance: false,
    };
    const boss = new PgBoss(config);
    boss.on('error', (error: unknown) => this.#logger.warn({ err: error }, 'afterward: pg-boss error'));
    try {
      await boss.start();
      if ((await boss.getQueue(this.queue)) === null) {
        await boss.createQueue(this.queue, {
          notify: true,
          retryLimit: this.#shape.maxLeaseExpiries,
          retryDelay: 0,
        });
      }
      await this.#db.executeSql(deadLetterDdl(this.schema));
    } catch (error) {
      await boss.stop({ graceful: false, close: false }).catch(() => undefined);
      throw error;
    }
    this.#boss = boss;
    return { boss, db: this.#db, pool: this.#pool, shape: this.#shape };
  }

  flush(): Promise<void> {
    const last = this.#batches.at(-1);
    return last === undefined ? Promise.resolve() : last.persisted.then(() => undefined);
  }

  stats(): PostgresBackendStats {
    return {
      buffered: this.#buffered,
      bufferedBytes: this.#bufferedBytes,
      ...this.#counters,
      unavailable: this.#downSince > 0 ? 1 : 0,
    };
  }

  async close(options: { timeout?: number } = {}): Promise<BackendCloseResult> {
    const timeout = options.timeout ?? 10_000;
    const dropsBefore = this.#counters.dropped;
    if (!this.#closing) {
      this.#closing = true;
      this.#closeDeadline = Date.now() + timeout;
      this.#open = undefined;
      this.#startFlush();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.#wakeRetry?.();
          resolve();
        }, timeout);
      });
      await Promise.race([this.#flushing, deadline]);
      clearTimeout(timer);
      // An insert still hanging at the deadline: what it carries is reported dropped (it may yet commit).
      if (this.#buffered > 0) this.#dropAll();
      await this.#boss?.stop({ graceful: true, close: false, timeout: 2_000 }).catch(() => undefined);
      if (this.#ownsPool) await this.#pool.end().catch(() => undefined);
    }
    return {
      flushed: this.#buffered === 0 && this.#counters.dropped === dropsBefore,
      dropped: this.#counters.dropped - dropsBefore,
    };
  }

  #drop(n: NotificationJson, reason: DroppedEvent['reason']): PersistOutcome {
    const error = new DroppedError(
      reason === 'closed'
        ? 'not written to PostgreSQL before close() gave up'
        : 'the PostgreSQL backend buffer is full (PostgreSQL unreachable or too slow)',
    );
    this.#counters.dropped += 1;
    this.#warnDrop(1);
    if (this.listenerCount('dropped') > 0) {
      this.emit('dropped', { key: n.key, id: n.id, origin: n.origin, reason, error } satisfies DroppedEvent);
    }
    return { state: 'dropped', error };
  }

  #startFlush(): void {
    if (this.#flushing !== undefined) return;
    this.#flushing = this.#flushLoop().finally(() => {
      this.#flushing = undefined;
      // Enqueued while the last insert was in flight and after the loop looked: go again.
      if (this.#batches.length > 0 && this.#open === undefined) this.#startFlush();
    });
  }

  async #flushLoop(): Promise<void> {
    let delay = this.#minDelay;
    while (this.#batches.length > 0) {
      // The batch of the current turn is still filling: it goes out from its own setImmediate.
      if (this.#batches[0] === this.#open) return;
      const taken: Batch[] = [];
      let count = 0;
      for (const batch of this.#batches) {
        if (batch === this.#open || (count > 0 && count + batch.items.length > this.#maxBatch)) break;
        taken.push(batch);
        count += batch.items.length;
      }
      try {
        const { boss } = await this.connect();
        const jobs = [];
        for (const batch of taken) for (const n of batch.items) jobs.push(toJobInsert(n, this.#shape));
        await boss.insert(this.queue, jobs);
        // close() gave up on these while the insert was in flight, and reported them dropped.
        if (this.#batches[0] !== taken[0]) return;
        this.#batches.splice(0, taken.length);
        for (const batch of taken) {
          this.#buffered -= batch.items.length;
          this.#bufferedBytes -= batch.bytes;
          this.#counters.persisted += batch.items.length;
          batch.settle({ state: 'persisted' });
        }
        this.#counters.batches += 1;
        delay = this.#minDelay;
        if (this.#downSince > 0) {
          const downMs = Date.now() - this.#downSince;
          this.#downSince = 0;
          this.#logger.warn({ buffered: this.#buffered, downMs }, 'afterward: PostgreSQL reachable again');
          this.emit('recovered', { buffered: this.#buffered, downMs });
        }
      } catch (error) {
        this.#counters.insertFailures += 1;
        if (this.#downSince === 0) {
          this.#downSince = Date.now();
          this.#logger.warn(
            { err: error, buffered: this.#buffered },
            'afterward: PostgreSQL unreachable, notifications wait in the local buffer',
          );
          this.emit('unavailable', { error, buffered: this.#buffered });
        }
        if (this.#closing && Date.now() + delay > this.#closeDeadline) {
          this.#dropAll();
          return;
        }
        await new Promise<void>((resolve) => {
          this.#wakeRetry = resolve;
          this.#retryTimer = setTimeout(resolve, delay);
        });
        clearTimeout(this.#retryTimer);
        this.#wakeRetry = undefined;
        if (this.#closing && Date.now() >= this.#closeDeadline) {
          this.#dropAll();
          return;
        }
        delay = Math.min(delay * 2, this.#maxDelay);
      }
    }
  }

  #dropAll(): void {
    const batches = this.#batches.splice(0);
    for (const batch of batches) {
      for (const n of batch.items) this.#drop(n, 'closed');
      batch.settle({
        state: 'dropped',
        error: new DroppedError('not written to PostgreSQL before close() gave up'),
      });
    }
    this.#buffered = 0;
    this.#bufferedBytes = 0;
  }
}
