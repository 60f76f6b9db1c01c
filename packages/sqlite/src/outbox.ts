import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createMemoryStore, storageKey } from '@afterward/core/backend';
import type {
  Admit,
  NotificationJson,
  NotificationStore,
  PutResult,
  SettleOutcome,
  StoreHost,
  StoredRecord,
  StoreLimits,
} from '@afterward/core/backend';
import { InvalidArgumentError } from '@afterward/core';
import { OutboxDb, type OutboxDbOptions } from './db.js';

/**
 * Options of {@link sqliteOutbox}.
 *
 * @example
 * ```ts
 * sqliteOutbox({ path: './outbox.db', synchronous: 'full', lease: 30_000 });
 * ```
 */
export interface SqliteOutboxOptions extends Pick<
  OutboxDbOptions,
  'path' | 'synchronous' | 'busyTimeout' | 'maxRows' | 'maxBytes' | 'deadLetterTtl' | 'maxDeadLetters'
> {
  /**
   * How long (ms) this process's claim on its rows lasts without renewal; renewed every third of
   * it. A killed process's rows are taken over by another process on the file once it expires.
   * Default 30,000.
   */
  lease?: number;
  /**
   * How often (ms) the outbox looks for rows it does not hold yet: replayed by `afterward dead
   * replay`, or left by a process whose lease expired. Default 1,000.
   */
  poll?: number;
  /** How often (ms) expired dead letters are purged and the file shrunk. Default 60,000. */
  housekeeping?: number;
}

const DEFAULT_LIMITS: StoreLimits = {
  maxQueued: 10_000,
  maxQueuedBytes: 32 * 1024 * 1024,
  overflow: 'reject',
};
const PAGE = 500;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user's process.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ms(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new InvalidArgumentError(`${name} must be an integer >= 1 (ms), got ${String(value)}`);
  }
  return value;
}

/**
 * The durable store on one SQLite file: the dispatcher's schedule stays in memory (this process's
 * rows, claimed with a lease), every change is written behind it. A new notification joins the
 * group commit of this event-loop turn; its `persisted` resolves at that commit.
 */
export class SqliteOutbox implements NotificationStore {
  readonly db: OutboxDb;
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  readonly ready: Promise<void>;
  readonly #lease: number;
  readonly #poll: number;
  readonly #housekeeping: number;
  #memory: NotificationStore | undefined;
  #limits: StoreLimits = DEFAULT_LIMITS;
  #host: StoreHost | undefined;
  /** Local key → storage key, for every record this process holds. */
  readonly #storageKeys = new Map<string, string>();
  /** Storage keys held, to skip a row adopted twice. */
  readonly #held = new Set<string>();
  /** Storage keys of held rows that came from the file (committed before this process saw them). */
  readonly #recovered = new Set<string>();
  #keeping = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #lastRenew = 0;
  #lastAdopt = 0;
  #lastHousekeeping = Date.now();
  #dataVersion = -1;
  #resolveReady!: () => void;

  constructor(options: SqliteOutboxOptions) {
    this.#lease = ms('lease', options.lease, 30_000);
    this.#poll = ms('poll', options.poll, 1_000);
    this.#housekeeping = ms('housekeeping', options.housekeeping, 60_000);
    const { lease: _lease, poll: _poll, housekeeping: _housekeeping, ...db } = options;
    this.db = new OutboxDb(db);
    this.ready = new Promise<void>((resolve) => (this.#resolveReady = resolve));
  }

  configure(limits: StoreLimits): void {
    this.#limits = limits;
  }

  get #store(): NotificationStore {
    return (this.#memory ??= createMemoryStore(this.#limits));
  }

  open(host: StoreHost): void {
    this.#host = host;
    this.#releaseDeadOwners();
    const now = Date.now();
    this.#lastRenew = now;
    this.#adopt(now, () => this.#resolveReady());
    this.#timer = setInterval(() => this.#tick(), this.#poll);
    this.#timer.unref();
  }

  /**
   * A process on this host that was killed (SIGKILL, OOM) left its rows leased: when its pid is
   * gone (or is ours: a container restarted with the same pid), take them at once instead of
   * after the lease. Another host's owners, and live ones, are left to their lease.
   */
  #releaseDeadOwners(): void {
    const here = hostname();
    for (const owner of this.db.leaseOwners()) {
      const [host, pid] = owner.split(':');
      if (host !== here || owner === this.owner) continue;
      const n = Number(pid);
      if (!Number.isInteger(n) || n <= 0) continue;
      if (n !== process.pid && alive(n)) continue;
      this.db.release(owner);
    }
  }

  /** Claims rows nobody holds (a previous process's, replayed ones), page by page, into memory. */
  #adopt(now: number, done?: () => void): void {
    const host = this.#host;
    if (host === undefined || this.#closed || this.#keeping) {
      done?.();
      return;
    }
    this.#lastAdopt = now;
    this.#dataVersion = this.db.dataVersion();
    const room = Math.min(PAGE, this.#limits.maxQueued - this.#store.size);
    if (room <= 0) {
      done?.();
      return;
    }
    // A read first: the claim is a write, which would wait on the loop for another connection's
    // lock (up to busyTimeout), and there is usually nothing to claim.
    if (!this.db.adoptable(now)) {
      done?.();
      return;
    }
    const rows = this.db.adopt(this.owner, now, room, this.#lease);
    let taken = 0;
    for (const json of rows) if (this.#revive(host, json)) taken++;
    if (taken > 0) host.wake();
    if (rows.length === room && room === PAGE) setImmediate(() => this.#adopt(Date.now(), done));
    else done?.();
  }

  #revive(host: StoreHost, json: NotificationJson): boolean {
    if (this.#held.has(json.key)) return false;
    if (json.attempts >= json.retry.attempts) {
      // Every attempt was started (each is written before it is sent) and the last one never
      // finished: the process stopped during it, as a payload that crashes the process does every
      // time. Sending it again would loop; it becomes a dead letter instead.
      this.db.bury(json.key, {
        reason: 'failed',
        errorCode: 'AFTERWARD_ERR_OUTBOX_INTERRUPTED',
        errorMessage: `attempt ${json.attempts} of ${json.retry.attempts} started and never finished: the process stopped during it (a payload that crashes the process?)`,
        attempts: json.attempts,
      });
      return false;
    }
    const record = host.revive(json);
    const result = this.#store.put(record);
    if (!result.accepted) {
      // No room after all (bytes): give the row back for later or for another process.
      this.db.reschedule(json.key, json.notBefore, json.attempts);
      return false;
    }
    this.#storageKeys.set(record.key, json.key);
    this.#held.add(json.key);
    this.#recovered.add(json.key);
    return true;
  }

  #tick(): void {
    if (this.#closed) return;
    const now = Date.now();
    try {
      if (now - this.#lastRenew >= this.#lease / 3) {
        this.#lastRenew = now;
        // With the group commit, on the commit's thread: never waits for the lock on the loop.
        this.db.queue({ kind: 'renew', owner: this.owner, until: now + this.#lease });
      }
      // Another connection committed (a replay, another process), or a lease may have expired.
      if (this.db.dataVersion() !== this.#dataVersion || now - this.#lastAdopt >= this.#lease / 2) {
        this.#adopt(now);
      }
      if (now - this.#lastHousekeeping >= this.#housekeeping) {
        this.#lastHousekeeping = now;
        // A failed housekeeping run is retried at the next one; nothing acknowledged depends on it.
        this.db.housekeep(now).catch(() => undefined);
      }
    } catch {
      // A locked or failing file: retried at the next tick; the enqueue path reports its own errors.
    }
  }

  put(record: StoredRecord): PutResult {
    const store = this.#store;
    const result = store.put(record);
    if (!result.accepted) return result;
    const lease = { owner: this.owner, until: Date.now() + this.#lease };
    const bodyBytes = record.bodyBytes;
    let key: string;
    let enqueued: ReturnType<OutboxDb['enqueue']>;
    try {
      if (bodyBytes === undefined) {
        const json = record.json();
        key = json.key;
        enqueued = this.db.enqueue(json, lease);
      } else {
        // Serialised at this turn's group commit (base64 of the body, the JSON), not here: the
        // call only checks the bounds with the body's size. A record settled before that commit
        // is still written (as it is then); its completion is applied after the commit.
        key = storageKey(record.key);
        enqueued = this.db.enqueue({ bodyBytes, json: () => record.json() }, lease);
      }
    } catch (error) {
      store.remove(record);
      throw error;
    }
    if (!enqueued.accepted) {
      // The file's bound (all processes together): refused, so never acknowledged.
      store.remove(record);
      return enqueued;
    }
    this.#storageKeys.set(record.key, key);
    this.#held.add(key);
    const persisted = enqueued.persisted;
    // Evicted records ('drop-oldest', which the dispatcher refuses with an outbox) are settled
    // 'dropped' by the dispatcher, and become dead letters here.
    return { accepted: true, evicted: result.evicted, persisted };
  }

  take(now: number, admit: (record: StoredRecord) => Admit): StoredRecord[] {
    return this.#store.take(now, admit);
  }

  attempt(record: StoredRecord): void {
    this.#store.attempt(record);
    const key = this.#storageKeys.get(record.key);
    if (key === undefined) return;
    const attempts = record.attempts;
    if (this.#recovered.has(key)) {
      // A row from the file (a previous process's, or replayed): written now, before the request
      // goes out, so a payload that kills the process every time still uses up its attempts. New
      // rows, the hot path, write theirs in the turn's batch: a crash before it restarts them as
      // recovered rows. Queued below as well, so that it lands after any older write to the row
      // still queued (a reschedule with the previous count).
      try {
        this.db.recordAttempt(key, attempts);
      } catch {
        // Locked or failing: the queued write below is retried with the others.
      }
    }
    this.db.queue({ kind: 'attempt', key, attempts });
  }

  release(record: StoredRecord): void {
    this.#store.release(record);
    const key = this.#storageKeys.get(record.key);
    if (key === undefined) return;
    const { notBefore, attempts } = record;
    // Still ours while it waits out its backoff: the lease is kept (and renewed).
    this.db.queue({
      kind: 'reschedule',
      key,
      notBefore,
      attempts,
      lease: { owner: this.owner, until: Date.now() + this.#lease },
    });
  }

  settle(record: StoredRecord, outcome: SettleOutcome): void {
    this.#store.settle(record, outcome);
    const key = this.#forget(record.key);
    if (key === undefined || (this.#keeping && outcome.state === 'cancelled')) return;
    if (outcome.state === 'failed' || outcome.state === 'dropped') {
      const info = {
        reason: outcome.state,
        status: outcome.status,
        errorCode: outcome.errorCode,
        errorMessage: outcome.errorMessage,
        attempts: record.attempts,
        failedAt: Date.now(),
      } as const;
      this.db.queue({ kind: 'bury', key, info });
    } else {
      this.db.queue({ kind: 'complete', key });
    }
  }

  remove(record: StoredRecord): boolean {
    if (!this.#store.remove(record)) return false;
    const storageKey = this.#forget(record.key);
    // Cancelled while waiting: gone, unless close() is keeping what is left for the next start.
    if (storageKey !== undefined && !this.#keeping) {
      this.db.queue({ kind: 'complete', key: storageKey });
    }
    return true;
  }

  #forget(key: string): string | undefined {
    const storageKey = this.#storageKeys.get(key);
    if (storageKey === undefined) return undefined;
    this.#storageKeys.delete(key);
    this.#held.delete(storageKey);
    this.#recovered.delete(storageKey);
    return storageKey;
  }

  nextDueAt(): number | undefined {
    return this.#store.nextDueAt();
  }

  get size(): number {
    return this.#store.size;
  }

  get bytes(): number {
    return this.#store.bytes;
  }

  get waiting(): number {
    return this.#store.waiting;
  }

  /** Resolves once every row and write so far is committed (or failed). */
  async flush(): Promise<void> {
    await this.db.idle();
  }

  keep(): number {
    this.#keeping = true;
    return this.#store.size;
  }

  /**
   * Rows on disk (all processes), leased ones, dead letters, file bytes; `refused` (bounds) and
   * `failed` (a group commit failed: never acknowledged) count this process's rows.
   */
  stats(): Record<string, number> {
    const s = this.db.stats();
    return {
      rows: s.pending + s.leased,
      pending: s.pending,
      leased: s.leased,
      dead: s.dead,
      fileBytes: s.fileBytes,
      refused: s.refused,
      failed: s.failed,
      commits: s.commits,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#keeping = true;
    await this.flush();
    this.#closed = true;
    this.#resolveReady();
    try {
      // Undelivered rows stay; releasing the leases lets the next start (or another process) take
      // them at once instead of after the lease expires.
      this.db.release(this.owner);
    } finally {
      await this.db.close();
    }
  }
}

/**
 * A durable outbox on one SQLite file, for `createDispatcher({ outbox })`: a notification is
 * written in the group commit of the event-loop turn it was sent in (`handle.persisted` resolves
 * then), survives a crash, and is delivered after the restart with the same webhook id. Several
 * processes may share one file. Needs Node >= 22.19 (`node:sqlite`).
 *
 * @example
 * ```ts
 * import { createDispatcher } from '@afterward/core';
 * import { sqliteOutbox } from '@afterward/sqlite';
 *
 * const dispatcher = createDispatcher({ outbox: sqliteOutbox({ path: './outbox.db' }) });
 * await dispatcher.ready; // what a previous process left is scheduled
 * const handle = dispatcher.send('https://hooks.example.com/orders', { json: { id: 1 } });
 * await handle.persisted; // on disk
 * ```
 */
export function sqliteOutbox(options: SqliteOutboxOptions): SqliteOutbox {
  return new SqliteOutbox(options);
}
