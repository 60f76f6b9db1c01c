import { statSync } from 'node:fs';
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { ClosedError, InvalidArgumentError } from '@afterward/core';
import { BatchWriter, type BatchOp, type BatchRow, type FileCounts } from './commit.js';
import type { WorkerData, WorkerReply, WorkerRequest } from './commit-worker.js';
import type { NotificationJson } from '@afterward/core/backend';
import type { DeadLetter, DeadLetterFilter } from '@afterward/core/backend';
import { OutboxError, toOutboxError } from './errors.js';
import { redactMessage } from './redact.js';
import { openOutboxFile, rollbackQuietly } from './schema.js';

/** Options of {@link OutboxDb}. */
export interface OutboxDbOptions {
  /** The SQLite file; its directory must exist. Several processes may share one file. */
  path: string;
  /**
   * `'normal'` (default): a commit survives a killed process, not a power loss or an OS crash (the
   * last commits before it may be lost, the file stays consistent). `'full'`: a commit is fsynced
   * before `persisted` resolves; the commits run on a worker thread so the fsync never stalls the
   * event loop.
   */
  synchronous?: 'normal' | 'full';
  /**
   * Where group commits run. `'worker'` (default): on the outbox's worker thread, one commit in
   * flight, the rows enqueued meanwhile forming the next group; no enqueue write ever runs on the
   * event loop. `'main'`: on the calling thread, cheaper per row, but a `write()` the kernel blocks
   * (a busy disk, dirty-page throttling) stalls the loop: measured on a shared ext4 disk, commit p99
   * 6.9 ms and max 72 ms (0.4 ms on tmpfs); at 5,000 rows/s it added 25 ms to the loop's p99, the
   * worker 0 ms, at the same acknowledgement latency (~0.3 ms p50).
   */
  writer?: 'main' | 'worker';
  /** Milliseconds a write waits for another process's lock before failing as locked. Default 5,000. */
  busyTimeout?: number;
  /** Open an existing file only (the `afterward` command); default `true` creates it. */
  create?: boolean;
  /** Most pending rows in the file (all processes together); beyond it `enqueue` refuses. Default 100,000. */
  maxRows?: number;
  /** Most body bytes of pending rows in the file; beyond it `enqueue` refuses. Default 256 MiB. */
  maxBytes?: number;
  /** How long dead letters are kept (ms). Default 30 days. */
  deadLetterTtl?: number;
  /** Most dead letters kept; the oldest go first. Default 10,000. */
  maxDeadLetters?: number;
}

/**
 * A notification whose serialisable form is made at the group commit instead of at the call: the
 * body size the bounds need is known at once, the JSON (base64 of the body) is not.
 */
export interface LazyNotification {
  /** Body bytes, as counted against `maxBytes`. */
  readonly bodyBytes: number;
  /** Called once, at the commit: the notification as it is then (attempts made meanwhile included). */
  json(): NotificationJson;
}

/** What {@link OutboxDb.enqueue} did with a notification. */
export type EnqueueResult =
  | {
      accepted: true;
      /** Resolves when the group commit holding this row is durable; rejects with an {@link OutboxError}. */
      persisted: Promise<void>;
    }
  | { accepted: false; reason: 'full' };

/** How a notification failed for good, for {@link OutboxDb.bury}. */
export interface BuryInfo {
  reason: 'failed' | 'dropped';
  /** Last HTTP status, if any. */
  status?: number | null;
  /** The `AfterwardError` code. */
  errorCode?: string | null;
  /** The error message; URLs in it are reduced to their origin before it is stored. */
  errorMessage?: string | null;
  /** Attempts made; default: the attempts already recorded. */
  attempts?: number;
  /** Epoch ms; default now. */
  failedAt?: number;
}

/**
 * A write to a row already enqueued, for {@link OutboxDb.queue}: applied by the next group commit,
 * after its inserts, in the same transaction and on the same thread (the worker by default).
 */
export type QueuedWrite =
  | { kind: 'attempt'; key: string; attempts: number }
  | {
      kind: 'reschedule';
      key: string;
      notBefore: number;
      attempts: number;
      lease?: { owner: string; until: number } | undefined;
    }
  | { kind: 'complete'; key: string }
  | { kind: 'bury'; key: string; info: BuryInfo }
  | { kind: 'renew'; owner: string; until: number };

/** A page of pending rows, for recovery in bounded memory. */
export interface PendingPage {
  rows: NotificationJson[];
  /** Pass as `after` for the next page; undefined on the last page. */
  next: string | undefined;
}

/** What {@link OutboxDb.housekeep} removed. */
export interface HousekeepingReport {
  deadExpired: number;
  deadOverCount: number;
  /** Pages given back to the file system by the incremental vacuum. */
  vacuumedPages: number;
}

/** Counts of {@link OutboxDb.stats}. */
export interface OutboxDbStats {
  /** Pending rows nobody holds a live lease on (waiting, due or in backoff). */
  pending: number;
  /** Pending rows under a live lease (in flight somewhere). */
  leased: number;
  dead: number;
  /** Size of the database file plus its WAL. */
  fileBytes: number;
  /** `enqueue` calls this instance refused for the bounds. */
  refused: number;
  /**
   * Rows this instance accepted whose group commit failed (a full disk, a file gone read-only):
   * their `persisted` rejected with an {@link OutboxError}, so they were never acknowledged.
   */
  failed: number;
  /** Group commits this instance made. */
  commits: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The caller may never look at `persisted`: a failed commit must not become an unhandled
  // rejection (awaiting callers still see it).
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

interface PendingRow {
  key: string;
  attempts: number;
  not_before: number;
  json: string;
}

interface DeadRow extends PendingRow {
  status: number | null;
  error_code: string | null;
  error_message: string | null;
  created_at: number;
  failed_at: number;
  reason: 'failed' | 'dropped';
}

const DEAD_COLUMNS =
  'key, attempts, not_before, json, status, error_code, error_message, created_at, failed_at, reason';
const DAY = 86_400_000;

function toNotification(row: PendingRow): NotificationJson {
  const n = JSON.parse(row.json) as NotificationJson;
  // The columns are the truth: `json` is written once at enqueue.
  n.attempts = row.attempts;
  n.notBefore = row.not_before;
  return n;
}

function toDeadLetter(row: DeadRow): DeadLetter {
  const n = toNotification(row);
  return {
    key: n.key,
    id: n.id,
    url: n.url,
    origin: n.origin,
    method: n.method,
    status: row.status,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    attempts: row.attempts,
    createdAt: row.created_at,
    failedAt: row.failed_at,
    reason: row.reason,
    notification: n,
  };
}

function bodyBytes(body: string | null): number {
  if (body === null) return 0;
  const padding = body.endsWith('==') ? 2 : body.endsWith('=') ? 1 : 0;
  return Math.floor((body.length * 3) / 4) - padding;
}

/** The rows of a group commit, each serialised now (the JSON is never made on the call path). */
function toRows(
  batch: ReadonlyArray<NotificationJson | LazyNotification>,
  leases: ReadonlyArray<{ owner: string; until: number } | undefined>,
): BatchRow[] {
  const rows: BatchRow[] = new Array<BatchRow>(batch.length);
  for (let i = 0; i < batch.length; i++) {
    const entry = batch[i]!;
    const lazy = 'bodyBytes' in entry;
    const n = lazy ? entry.json() : entry;
    const lease = leases[i];
    rows[i] = [
      n.key,
      n.id,
      n.origin,
      n.attempts,
      n.notBefore,
      n.createdAt,
      lazy ? entry.bodyBytes : bodyBytes(n.body),
      JSON.stringify(n),
      lease?.owner ?? null,
      lease?.until ?? null,
    ];
  }
  return rows;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new InvalidArgumentError(`${name} must be a number >= 0, got ${String(value)}`);
  }
  return value;
}

/**
 * The durable outbox on one SQLite file: group-committed enqueue, leased claims shared by several
 * processes, attempt bookkeeping, dead letters and housekeeping. Synchronous (node:sqlite is), except
 * `persisted`, which resolves at the group commit.
 *
 * @example
 * ```ts
 * const db = new OutboxDb({ path: './outbox.db' });
 * const r = db.enqueue(notification); if (r.accepted) await r.persisted;
 * for (const n of db.claim(owner, Date.now(), 32, 30_000)) { db.recordAttempt(n.key, n.attempts + 1); ... db.complete(n.key); }
 * ```
 */
export class OutboxDb {
  readonly path: string;
  readonly synchronous: 'normal' | 'full';
  readonly #db: DatabaseSync;
  readonly #maxRows: number;
  readonly #maxBytes: number;
  readonly #deadTtl: number;
  readonly #maxDead: number;
  readonly #busyTimeout: number;
  readonly #stmts: Record<string, StatementSync> = {};

  // The group commit being filled during this turn of the event loop.
  #batch: Array<NotificationJson | LazyNotification> = [];
  #batchLeases: Array<{ owner: string; until: number } | undefined> = [];
  #batchBytes = 0;
  #batchDone: Deferred | undefined;
  // Writes to enqueued rows, applied by the same group commit after its inserts; `null` for a write
  // a later completion or burial of its row made moot.
  #batchOps: Array<BatchOp | null> = [];
  #batchOpsByKey = new Map<string, number[]>();
  // Rows and bytes written but not yet in `#file` (commits in flight on the worker).
  #inflightRows = 0;
  #inflightBytes = 0;
  #file: FileCounts = { rows: 0, bytes: 0 };
  #refused = 0;
  #failed = 0;
  #commits = 0;
  #inTransaction = false;
  #countsStale = false;
  #closed = false;
  #failure: OutboxError | undefined;

  // writer 'main': commits on this thread; 'worker': one commit in flight at a time, the rows
  // enqueued meanwhile forming the next one (classic group commit: the batch grows with the
  // commit's time instead of queueing one commit per turn behind it).
  #writer: BatchWriter | undefined;
  #worker: Worker | undefined;
  #seq = 0;
  #commit: { seq: number; done: Deferred; rows: number; bytes: number } | undefined;
  #checkpoint: number | undefined;
  #vacuum: { seq: number; resolve: (reply: WorkerReply) => void } | undefined;

  constructor(options: OutboxDbOptions) {
    if (typeof options?.path !== 'string' || options.path === '') {
      throw new InvalidArgumentError('path must be a non-empty string');
    }
    const synchronous = options.synchronous ?? 'normal';
    if (synchronous !== 'normal' && synchronous !== 'full') {
      throw new InvalidArgumentError(`synchronous must be 'normal' or 'full', got ${String(synchronous)}`);
    }
    const writer = options.writer ?? 'worker';
    if (writer !== 'main' && writer !== 'worker') {
      throw new InvalidArgumentError(`writer must be 'main' or 'worker', got ${String(writer)}`);
    }
    this.path = options.path;
    this.synchronous = synchronous;
    this.#busyTimeout = positive('busyTimeout', options.busyTimeout, 5_000);
    this.#maxRows = positive('maxRows', options.maxRows, 100_000);
    this.#maxBytes = positive('maxBytes', options.maxBytes, 256 * 1024 * 1024);
    this.#deadTtl = positive('deadLetterTtl', options.deadLetterTtl, 30 * DAY);
    this.#maxDead = positive('maxDeadLetters', options.maxDeadLetters, 10_000);
    // With 'full', this connection's own writes (claims, attempts, completions) stay at NORMAL: a
    // power loss may undo the last of them, which only means a row is delivered again. The group
    // commit, the acknowledgement, is fsynced by the worker's connection.
    this.#db = openOutboxFile(options.path, {
      create: options.create ?? true,
      synchronous: 'normal',
      busyTimeout: this.#busyTimeout,
    });
    try {
      this.#file = this.#readCounts();
    } catch (error) {
      this.#db.close();
      throw toOutboxError(error, this.path, 'reading the counts');
    }
    // Checkpoints run on the worker (see commit-worker.ts), never inside a commit on this thread.
    this.#db.exec('PRAGMA wal_autocheckpoint = 0');
    // The worker starts at the first commit or checkpoint: a short-lived admin never pays for it.
    // With 'full' and a main-thread writer, this connection fsyncs its commits.
    if (writer === 'main') {
      if (synchronous === 'full') this.#db.exec('PRAGMA synchronous = FULL');
      this.#writer = new BatchWriter(this.#db);
    }
  }

  #stmt(sql: string): StatementSync {
    let stmt = this.#stmts[sql];
    if (stmt === undefined) {
      stmt = this.#db.prepare(sql);
      this.#stmts[sql] = stmt;
    }
    return stmt;
  }

  #readCounts(): FileCounts {
    const row = this.#stmt('SELECT rows, bytes FROM outbox_meta WHERE one = 1').get() as
      FileCounts | undefined;
    return row === undefined ? { rows: 0, bytes: 0 } : { rows: row.rows, bytes: row.bytes };
  }

  #run(doing: string, sql: string, ...params: SQLInputValue[]): number {
    this.#assertOpen();
    try {
      return Number(this.#stmt(sql).run(...params).changes);
    } catch (error) {
      throw toOutboxError(error, this.path, doing);
    }
  }

  /** Runs a write that changes pending rows, then refreshes the file's counts for the bounds. */
  #write(doing: string, sql: string, ...params: SQLInputValue[]): number {
    const changes = this.#run(doing, sql, ...params);
    // In a transaction, read once at its commit (these writes only lower the counts meanwhile).
    if (changes > 0) {
      if (this.#inTransaction) this.#countsStale = true;
      else this.#file = this.#readCounts();
    }
    return changes;
  }

  #all<T>(doing: string, sql: string, ...params: SQLInputValue[]): T[] {
    this.#assertOpen();
    try {
      return this.#stmt(sql).all(...params) as unknown as T[];
    } catch (error) {
      throw toOutboxError(error, this.path, doing);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError(`the outbox ${this.path} is closed`);
  }

  /**
   * Adds a notification to this turn's group commit. Synchronous and cheap: no I/O, no JSON; the
   * bounds are checked here, so a refused notification is never acknowledged, and an acknowledged
   * row is never deleted to make room.
   *
   * @example
   * ```ts
   * const r = db.enqueue(n);
   * if (!r.accepted) throw new QueueFullError('outbox full');
   * r.persisted.then(() => log('durable'));
   * ```
   */
  enqueue(n: NotificationJson | LazyNotification, lease?: { owner: string; until: number }): EnqueueResult {
    this.#assertOpen();
    if (this.#failure !== undefined) throw this.#failure;
    const bytes = 'bodyBytes' in n ? n.bodyBytes : bodyBytes(n.body);
    const rows = this.#file.rows + this.#inflightRows + this.#batch.length;
    if (
      rows + 1 > this.#maxRows ||
      this.#file.bytes + this.#inflightBytes + this.#batchBytes + bytes > this.#maxBytes
    ) {
      this.#refused++;
      return { accepted: false, reason: 'full' };
    }
    const done = this.#batchDone ?? this.#schedule();
    // The JSON is made at the commit, off the call path.
    this.#batch.push(n);
    this.#batchLeases.push(lease);
    this.#batchBytes += bytes;
    return { accepted: true, persisted: done.promise };
  }

  #schedule(): Deferred {
    const done = deferred();
    this.#batchDone = done;
    // With the worker, the batch is handed over once the current job's synchronous code is done (a
    // microtask: much cheaper on the call than a setImmediate, measured 7 µs of a cold first send);
    // while a commit is in flight, what follows joins the next batch anyway. Commits on this thread
    // wait for the end of the turn, so that a turn's sends share one transaction.
    if (this.#writer === undefined) queueMicrotask(this.#flush);
    else setImmediate(this.#flush);
    return done;
  }

  /**
   * Queues a write to an enqueued row (an attempt started, a retry's backoff, a delivery, a dead
   * letter) for this turn's group commit: applied after its inserts, in the same transaction, on
   * the commit's thread, so the event loop never waits for the file's lock. An attempt or backoff
   * queued before the row's completion or burial in the same batch is dropped as moot. Ignored once
   * closed or failed: the row stays on disk and is delivered again (at-least-once).
   *
   * @example
   * ```ts
   * db.queue({ kind: 'attempt', key: n.key, attempts: n.attempts + 1 });
   * db.queue({ kind: 'complete', key: n.key });
   * ```
   */
  queue(write: QueuedWrite): void {
    if (this.#closed || this.#failure !== undefined) return;
    let op: BatchOp;
    let final = false;
    switch (write.kind) {
      case 'attempt':
        op = [0, write.key, write.attempts];
        break;
      case 'reschedule':
        op = [
          1,
          write.key,
          write.notBefore,
          write.attempts,
          write.lease?.owner ?? null,
          write.lease?.until ?? null,
        ];
        break;
      case 'complete':
        op = [2, write.key];
        final = true;
        break;
      case 'renew':
        this.#batchOps.push([4, write.owner, write.until]);
        if (this.#batchDone === undefined) this.#schedule();
        return;
      case 'bury': {
        const { info } = write;
        op = [
          3,
          write.key,
          info.status ?? null,
          info.errorCode ?? null,
          info.errorMessage == null ? null : redactMessage(info.errorMessage),
          info.attempts ?? null,
          info.failedAt ?? Date.now(),
          info.reason,
        ];
        final = true;
        break;
      }
    }
    const ops = this.#batchOps;
    const earlier = this.#batchOpsByKey.get(write.key);
    if (final) {
      if (earlier !== undefined) {
        for (const index of earlier) ops[index] = null;
        this.#batchOpsByKey.delete(write.key);
      }
    } else if (earlier === undefined) this.#batchOpsByKey.set(write.key, [ops.length]);
    else earlier.push(ops.length);
    ops.push(op);
    if (this.#batchDone === undefined) this.#schedule();
  }

  /** Resolves once every row enqueued and every write queued so far is committed (or failed). */
  async idle(): Promise<void> {
    for (;;) {
      this.#flush();
      const pending = this.#commit?.done.promise ?? this.#batchDone?.promise;
      if (pending === undefined) return;
      await pending.catch(() => undefined);
    }
  }

  /** Rows accepted in this turn and not committed yet, plus commits in flight on the worker. */
  get unpersisted(): number {
    return this.#batch.length + this.#inflightRows;
  }

  readonly #flush = (): void => {
    const done = this.#batchDone;
    // With a commit in flight on the worker, its reply sends this batch.
    if (done === undefined || this.#commit !== undefined) return;
    const batch = this.#batch;
    const leases = this.#batchLeases;
    const bytes = this.#batchBytes;
    const ops = this.#batchOps.filter((op) => op !== null);
    this.#batch = [];
    this.#batchLeases = [];
    this.#batchBytes = 0;
    this.#batchDone = undefined;
    this.#batchOps = [];
    this.#batchOpsByKey.clear();
    let rows: BatchRow[];
    try {
      rows = toRows(batch, leases);
    } catch (error) {
      this.#failed += batch.length;
      done.reject(toOutboxError(error, this.path, 'serialising a batch'));
      return;
    }
    if (this.#writer !== undefined) {
      try {
        this.#file = this.#writer.write(rows, ops);
        this.#commits++;
        done.resolve();
      } catch (error) {
        this.#failed += rows.length;
        done.reject(toOutboxError(error, this.path, 'committing a batch'));
      }
      this.#maybeCheckpoint();
      return;
    }
    if (this.#failure !== undefined) {
      this.#failed += rows.length;
      done.reject(this.#failure);
      return;
    }
    const seq = ++this.#seq;
    this.#commit = { seq, done, rows: rows.length, bytes };
    this.#inflightRows += rows.length;
    this.#inflightBytes += bytes;
    // Referenced while a commit is in flight: an acknowledged-to-be batch keeps the process alive,
    // an idle outbox never does.
    const worker = (this.#worker ??= this.#startWorker());
    worker.ref();
    const request: WorkerRequest = { type: 'commit', seq, rows, ops };
    worker.postMessage(request);
  };

  // 'normal': asks the worker to checkpoint once the WAL passes 4 MiB (SQLite's own default point).
  #maybeCheckpoint(): void {
    if (this.#checkpoint !== undefined || this.#failure !== undefined) return;
    if (fileSize(`${this.path}-wal`) < 4 * 1024 * 1024) return;
    this.#checkpoint = ++this.#seq;
    const request: WorkerRequest = { type: 'checkpoint', seq: this.#checkpoint };
    (this.#worker ??= this.#startWorker()).postMessage(request);
  }

  #startWorker(): Worker {
    const data: WorkerData = {
      path: this.path,
      busyTimeout: this.#busyTimeout,
      synchronous: this.synchronous,
    };
    const worker = new Worker(new URL('./commit-worker.js', import.meta.url), { workerData: data });
    worker.unref();
    worker.on('message', (reply: WorkerReply) => {
      if (reply.seq === this.#vacuum?.seq) {
        const { resolve } = this.#vacuum;
        this.#vacuum = undefined;
        if (this.#commit === undefined) worker.unref();
        resolve(reply);
        return;
      }
      if (reply.seq === this.#checkpoint) {
        // A failed checkpoint is retried at the next commit; the WAL only grows meanwhile.
        this.#checkpoint = undefined;
        return;
      }
      const commit = this.#commit;
      if (commit === undefined || commit.seq !== reply.seq) return;
      this.#commit = undefined;
      this.#inflightRows -= commit.rows;
      this.#inflightBytes -= commit.bytes;
      if (this.#vacuum === undefined) worker.unref();
      if (reply.ok) {
        this.#file = { rows: reply.rows, bytes: reply.bytes };
        this.#commits++;
        commit.done.resolve();
      } else {
        this.#failed += commit.rows;
        commit.done.reject(
          toOutboxError({ errcode: reply.errcode, message: reply.message }, this.path, 'committing a batch'),
        );
      }
      // What was enqueued during that commit goes now, as one batch.
      this.#flush();
      if (this.#commit === undefined) this.#drained?.();
    });
    worker.on('error', (error) => {
      this.#failWorker(toOutboxError(error, this.path, 'running the outbox worker'));
    });
    worker.on('exit', () => {
      if (!this.#closed)
        this.#failWorker(new OutboxError('AFTERWARD_ERR_OUTBOX_IO', this.path, 'the outbox worker exited'));
    });
    return worker;
  }

  #drained: (() => void) | undefined;

  #failWorker(error: OutboxError): void {
    this.#failure ??= error;
    const commit = this.#commit;
    this.#commit = undefined;
    this.#inflightRows = 0;
    this.#inflightBytes = 0;
    this.#failed += (commit?.rows ?? 0) + this.#batch.length;
    commit?.done.reject(error);
    this.#vacuum?.resolve({ seq: this.#vacuum.seq, ok: false, errcode: undefined, message: error.message });
    this.#vacuum = undefined;
    this.#batchDone?.reject(error);
    this.#batch = [];
    this.#batchLeases = [];
    this.#batchBytes = 0;
    this.#batchDone = undefined;
    this.#batchOps = [];
    this.#batchOpsByKey.clear();
    this.#drained?.();
  }

  /**
   * Runs several of this instance's writes (claims, attempts, reschedules, completions, burials) in
   * one transaction: one WAL append instead of one per call, for an attempt runner that settles a
   * turn's worth of results at once. All of them or none (a throw rolls back and is rethrown).
   *
   * @example
   * ```ts
   * db.inTransaction(() => { for (const key of delivered) db.complete(key); });
   * ```
   */
  inTransaction<T>(fn: () => T): T {
    this.#assertOpen();
    try {
      this.#db.exec('BEGIN IMMEDIATE');
    } catch (error) {
      throw toOutboxError(error, this.path, 'starting a transaction');
    }
    let result: T;
    this.#inTransaction = true;
    this.#countsStale = false;
    try {
      result = fn();
    } catch (error) {
      this.#inTransaction = false;
      rollbackQuietly(this.#db);
      this.#file = this.#readCounts();
      throw error;
    }
    this.#inTransaction = false;
    try {
      this.#db.exec('COMMIT');
    } catch (error) {
      rollbackQuietly(this.#db);
      this.#file = this.#readCounts();
      throw toOutboxError(error, this.path, 'committing a transaction');
    }
    if (this.#countsStale) this.#file = this.#readCounts();
    return result;
  }

  /**
   * Leases up to `limit` due rows to `owner` until `now + leaseMs`: rows nobody holds, and rows
   * whose lease expired (a crashed or stalled process's). One statement, so two processes never
   * get the same row while a lease is live.
   *
   * @example
   * ```ts
   * const due = db.claim(owner, Date.now(), 32, 30_000);
   * ```
   */
  claim(owner: string, now: number, limit: number, leaseMs: number): NotificationJson[] {
    const rows = this.#all<PendingRow>(
      'claiming',
      `UPDATE outbox SET lease_owner = ?, lease_until = ?
       WHERE key IN (SELECT key FROM outbox
                     WHERE state = 'pending' AND not_before <= ? AND (lease_until IS NULL OR lease_until <= ?)
                     ORDER BY not_before LIMIT ?)
       RETURNING key, attempts, not_before, json`,
      owner,
      now + leaseMs,
      now,
      now,
      limit,
    );
    rows.sort((a, b) => a.not_before - b.not_before);
    // Claims are polled: a cheap moment to see what other processes added or settled.
    this.#file = this.#readCounts();
    return rows.map(toNotification);
  }

  /**
   * Whether a pending row is free to adopt (unleased, or its lease expired): a read, which never
   * waits for another connection's write lock, to skip `adopt()`'s write when there is nothing.
   *
   * @example
   * ```ts
   * if (db.adoptable(Date.now())) rows = db.adopt(owner, Date.now(), 500, 30_000);
   * ```
   */
  adoptable(now: number): boolean {
    return (
      this.#all<{ one: number }>(
        'looking for rows to adopt',
        "SELECT 1 AS one FROM outbox WHERE state = 'pending' AND (lease_until IS NULL OR lease_until <= ?) LIMIT 1",
        now,
      ).length > 0
    );
  }

  /**
   * Like {@link OutboxDb.claim}, but also takes rows still in backoff: what an outbox that keeps
   * its own schedule in memory (the dispatcher's) loads at start and after a takeover, so a
   * backoff survives the restart instead of being waited out on disk.
   *
   * @example
   * ```ts
   * const rows = db.adopt(owner, Date.now(), 500, 30_000);
   * ```
   */
  adopt(owner: string, now: number, limit: number, leaseMs: number): NotificationJson[] {
    const rows = this.#all<PendingRow>(
      'adopting rows',
      `UPDATE outbox SET lease_owner = ?, lease_until = ?
       WHERE key IN (SELECT key FROM outbox
                     WHERE state = 'pending' AND (lease_until IS NULL OR lease_until <= ?)
                     ORDER BY not_before LIMIT ?)
       RETURNING key, attempts, not_before, json`,
      owner,
      now + leaseMs,
      now,
      limit,
    );
    rows.sort((a, b) => a.not_before - b.not_before);
    this.#file = this.#readCounts();
    return rows.map(toNotification);
  }

  /**
   * The owners holding a lease on a pending row, live or expired: an outbox starting on a host
   * releases the leases of its own host's dead processes at once instead of waiting them out.
   *
   * @example
   * ```ts
   * for (const owner of db.leaseOwners()) if (isDead(owner)) db.release(owner);
   * ```
   */
  leaseOwners(): string[] {
    return this.#all<{ lease_owner: string }>(
      'listing lease owners',
      "SELECT DISTINCT lease_owner FROM outbox WHERE state = 'pending' AND lease_owner IS NOT NULL",
    ).map((row) => row.lease_owner);
  }

  /**
   * Extends every lease `owner` holds to `leaseUntil`; returns how many rows it still holds.
   *
   * @example
   * ```ts
   * setInterval(() => db.renew(owner, Date.now() + 30_000), 10_000).unref();
   * ```
   */
  renew(owner: string, leaseUntil: number): number {
    return this.#run(
      'renewing leases',
      "UPDATE outbox SET lease_until = ? WHERE lease_owner = ? AND state = 'pending'",
      leaseUntil,
      owner,
    );
  }

  /**
   * Gives back every lease `owner` holds, so another process (or the next start) takes the rows
   * at once instead of after the lease expires: what `close()` does with undelivered rows.
   *
   * @example
   * ```ts
   * db.release(owner); db.close();
   * ```
   */
  release(owner: string): number {
    return this.#run(
      'releasing leases',
      'UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?',
      owner,
    );
  }

  /**
   * Records that an attempt starts, before the request is sent: a notification that crashes the
   * process each time still runs out of attempts.
   *
   * @example
   * ```ts
   * db.recordAttempt(n.key, n.attempts + 1); await send(n);
   * ```
   */
  recordAttempt(key: string, attempts: number): boolean {
    return (
      this.#run('recording an attempt', 'UPDATE outbox SET attempts = ? WHERE key = ?', attempts, key) > 0
    );
  }

  /**
   * Puts a row back to wait until `notBefore` (a retry's backoff) and releases its lease; the
   * backoff survives a restart.
   *
   * @example
   * ```ts
   * db.reschedule(n.key, Date.now() + decision.delay, n.attempts + 1);
   * ```
   */
  reschedule(
    key: string,
    notBefore: number,
    attempts: number,
    lease?: { owner: string; until: number },
  ): boolean {
    return (
      this.#run(
        'rescheduling',
        "UPDATE outbox SET not_before = ?, attempts = ?, lease_owner = ?, lease_until = ? WHERE key = ? AND state = 'pending'",
        notBefore,
        attempts,
        lease?.owner ?? null,
        lease?.until ?? null,
        key,
      ) > 0
    );
  }

  /**
   * Deletes a delivered row.
   *
   * @example
   * ```ts
   * if (decision.kind === 'delivered') db.complete(n.key);
   * ```
   */
  complete(key: string): boolean {
    return this.#write('completing', 'DELETE FROM outbox WHERE key = ?', key) > 0;
  }

  /**
   * Turns a row into a dead letter: it is no longer claimed, and the `afterward` command lists,
   * replays or purges it. The message is stored with every URL reduced to its origin.
   *
   * @example
   * ```ts
   * db.bury(n.key, { reason: 'failed', status: 410, errorCode: e.code, errorMessage: e.message });
   * ```
   */
  bury(key: string, info: BuryInfo): boolean {
    const message = info.errorMessage == null ? null : redactMessage(info.errorMessage);
    return (
      this.#write(
        'burying',
        `UPDATE outbox SET state = 'dead', lease_owner = NULL, lease_until = NULL, status = ?, error_code = ?,
           error_message = ?, attempts = coalesce(?, attempts), failed_at = ?, reason = ?
         WHERE key = ? AND state = 'pending'`,
        info.status ?? null,
        info.errorCode ?? null,
        message,
        info.attempts ?? null,
        info.failedAt ?? Date.now(),
        info.reason,
        key,
      ) > 0
    );
  }

  /**
   * One page of pending rows in key order, leased or not, for recovery without loading the whole
   * file.
   *
   * @example
   * ```ts
   * for (let page = db.pendingPage(undefined, 500); ; page = db.pendingPage(page.next, 500)) { use(page.rows); if (!page.next) break; }
   * ```
   */
  pendingPage(after: string | undefined, limit: number): PendingPage {
    const rows = this.#all<PendingRow>(
      'loading pending rows',
      "SELECT key, attempts, not_before, json FROM outbox WHERE state = 'pending' AND key > ? ORDER BY key LIMIT ?",
      after ?? '',
      limit,
    );
    const last = rows.length === limit ? rows[rows.length - 1]?.key : undefined;
    return { rows: rows.map(toNotification), next: last };
  }

  /**
   * When the next row becomes claimable (its backoff ends or its lease expires); undefined when no
   * row is pending.
   *
   * @example
   * ```ts
   * const at = db.nextDueAt(Date.now()); if (at !== undefined) setTimeout(poll, at - Date.now());
   * ```
   */
  nextDueAt(now: number): number | undefined {
    const [row] = this.#all<{ at: number | null }>(
      'finding the next due row',
      `SELECT min(CASE WHEN lease_until > ? THEN lease_until ELSE not_before END) AS at FROM outbox WHERE state = 'pending'`,
      now,
    );
    return row?.at ?? undefined;
  }

  /**
   * A number that changes when another connection (another process, the `afterward` command)
   * commits to the file: poll it to pick up replayed rows without a restart.
   *
   * @example
   * ```ts
   * if (db.dataVersion() !== seen) poll();
   * ```
   */
  dataVersion(): number {
    const [row] = this.#all<{ data_version: number }>('reading data_version', 'PRAGMA data_version');
    return row?.data_version ?? 0;
  }

  /**
   * Dead letters matching `filter`, newest first.
   *
   * @example
   * ```ts
   * db.listDead({ origin: 'https://hooks.example.com', since: Date.now() - 3_600_000 });
   * ```
   */
  listDead(filter: DeadLetterFilter = {}): DeadLetter[] {
    const { where, params } = deadWhere(filter);
    const limit = filter.limit ?? -1;
    return this.#all<DeadRow>(
      'listing dead letters',
      `SELECT ${DEAD_COLUMNS} FROM outbox WHERE ${where} ORDER BY failed_at DESC, key LIMIT ?`,
      ...params,
      limit,
    ).map(toDeadLetter);
  }

  /**
   * One dead letter by webhook id or storage key.
   *
   * @example
   * ```ts
   * db.showDead('0190f1e2-...');
   * ```
   */
  showDead(idOrKey: string): DeadLetter | undefined {
    // By key first (the primary key), then by webhook id (a scan of the dead letters only).
    const [row] = this.#all<DeadRow>(
      'showing a dead letter',
      `SELECT ${DEAD_COLUMNS} FROM outbox WHERE key = ? AND state = 'dead'`,
      idOrKey,
    );
    const [byId] =
      row === undefined
        ? this.#all<DeadRow>(
            'showing a dead letter',
            `SELECT ${DEAD_COLUMNS} FROM outbox WHERE id = ? AND state = 'dead' ORDER BY failed_at DESC LIMIT 1`,
            idOrKey,
          )
        : [row];
    return byId === undefined ? undefined : toDeadLetter(byId);
  }

  /**
   * Puts a dead letter back: pending, due now, attempts 0, same key and webhook id. Idempotent:
   * false if there is no such dead letter (never replayed, or already replayed).
   *
   * @example
   * ```ts
   * db.replayDead(id); db.replayDead(id); // true, then false
   * ```
   */
  replayDead(idOrKey: string, now = Date.now()): boolean {
    const set = `UPDATE outbox SET state = 'pending', attempts = 0, not_before = ?, lease_owner = NULL, lease_until = NULL,
       status = NULL, error_code = NULL, error_message = NULL, failed_at = NULL, reason = NULL`;
    // By key first (the primary key, what a bulk replay passes), then by webhook id.
    return (
      this.#write('replaying a dead letter', `${set} WHERE key = ? AND state = 'dead'`, now, idOrKey) > 0 ||
      this.#write('replaying a dead letter', `${set} WHERE id = ? AND state = 'dead'`, now, idOrKey) > 0
    );
  }

  /**
   * Deletes the dead letters matching `filter`; returns how many.
   *
   * @example
   * ```ts
   * db.purgeDead({ until: Date.now() - 7 * 86_400_000 });
   * ```
   */
  purgeDead(filter: DeadLetterFilter = {}): number {
    const { where, params } = deadWhere(filter);
    if (filter.limit === undefined)
      return this.#run('purging dead letters', `DELETE FROM outbox WHERE ${where}`, ...params);
    return this.#run(
      'purging dead letters',
      `DELETE FROM outbox WHERE key IN (SELECT key FROM outbox WHERE ${where} ORDER BY failed_at LIMIT ?)`,
      ...params,
      filter.limit,
    );
  }

  /**
   * Drops dead letters older than `deadLetterTtl` and beyond `maxDeadLetters`; when no row is
   * pending (a backlog cleared), gives free pages back to the file system (incremental vacuum) and
   * truncates the WAL. Cheap when there is nothing to do; call it every minute or so.
   *
   * @example
   * ```ts
   * setInterval(() => void db.housekeep().catch(log), 60_000).unref();
   * ```
   */
  async housekeep(now = Date.now()): Promise<HousekeepingReport> {
    const deadExpired = this.#run(
      'expiring dead letters',
      "DELETE FROM outbox WHERE state = 'dead' AND failed_at < ?",
      now - this.#deadTtl,
    );
    const deadOverCount = this.#run(
      'capping dead letters',
      `DELETE FROM outbox WHERE key IN (SELECT key FROM outbox WHERE state = 'dead'
         ORDER BY failed_at DESC, key LIMIT -1 OFFSET ?)`,
      this.#maxDead,
    );
    const counts = this.#readCounts();
    this.#file = counts;
    const [free] = this.#all<{ freelist_count: number }>('reading the free list', 'PRAGMA freelist_count');
    let vacuumedPages = 0;
    if (counts.rows === 0 && (free?.freelist_count ?? 0) > 0) {
      // On the worker: the vacuum and the checkpoint write and fsync the whole file.
      const seq = ++this.#seq;
      const reply = await new Promise<WorkerReply>((resolve) => {
        this.#vacuum = { seq, resolve };
        const request: WorkerRequest = { type: 'vacuum', seq };
        const worker = (this.#worker ??= this.#startWorker());
        worker.ref();
        worker.postMessage(request);
      });
      if (!reply.ok) {
        throw toOutboxError({ errcode: reply.errcode, message: reply.message }, this.path, 'vacuuming');
      }
      vacuumedPages = reply.rows;
    }
    return { deadExpired, deadOverCount, vacuumedPages };
  }

  /**
   * Counts over the whole file (every process's rows), and this instance's counters.
   *
   * @example
   * ```ts
   * const { pending, leased, dead, fileBytes } = db.stats();
   * ```
   */
  stats(now = Date.now()): OutboxDbStats {
    const [row] = this.#all<{ pending: number; leased: number; dead: number }>(
      'reading stats',
      `SELECT coalesce(sum(state = 'pending' AND (lease_until IS NULL OR lease_until <= ?)), 0) AS pending,
              coalesce(sum(state = 'pending' AND lease_until > ?), 0) AS leased,
              coalesce(sum(state = 'dead'), 0) AS dead
       FROM outbox`,
      now,
      now,
    );
    return {
      pending: row?.pending ?? 0,
      leased: row?.leased ?? 0,
      dead: row?.dead ?? 0,
      fileBytes: fileSize(this.path) + fileSize(`${this.path}-wal`),
      refused: this.#refused,
      failed: this.#failed,
      commits: this.#commits,
    };
  }

  /**
   * Commits what was enqueued, waits for the commits in flight, and closes the file. Rows not
   * delivered stay on disk for the next start; leases are not released here (see {@link release}).
   *
   * @example
   * ```ts
   * db.release(owner); await db.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    if (this.#commit !== undefined) {
      // The reply of each commit sends the next batch; wait for the last one.
      await new Promise<void>((resolve) => (this.#drained = resolve));
      this.#drained = undefined;
    }
    this.#closed = true;
    if (this.#worker !== undefined) await this.#worker.terminate();
    this.#db.close();
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function deadWhere(filter: DeadLetterFilter): { where: string; params: SQLInputValue[] } {
  const clauses = ["state = 'dead'"];
  const params: SQLInputValue[] = [];
  if (filter.origin !== undefined) {
    clauses.push('origin = ?');
    params.push(filter.origin);
  }
  if (filter.status !== undefined) {
    clauses.push('status = ?');
    params.push(filter.status);
  }
  if (filter.errorCode !== undefined) {
    clauses.push('error_code = ?');
    params.push(filter.errorCode);
  }
  if (filter.since !== undefined) {
    clauses.push('failed_at >= ?');
    params.push(filter.since);
  }
  if (filter.until !== undefined) {
    clauses.push('failed_at <= ?');
    params.push(filter.until);
  }
  return { where: clauses.join(' AND '), params };
}
