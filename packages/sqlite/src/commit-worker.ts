/**
 * The outbox's worker thread, with its own connection to the same file, so nothing that waits on
 * the disk runs on the application's event loop: with `synchronous: 'full'` it makes every group
 * commit (and its fsync); in both modes it checkpoints the WAL into the database file (an fsync
 * too, which stalled the loop by tens of milliseconds when SQLite ran it inside a commit).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BatchWriter, type BatchOp, type BatchRow } from './commit.js';
import { openOutboxFile } from './schema.js';

/** What the main thread sends: one group commit, or a checkpoint. */
export type WorkerRequest =
  | { type: 'commit'; seq: number; rows: BatchRow[]; ops: BatchOp[] }
  | { type: 'checkpoint'; seq: number }
  | { type: 'vacuum'; seq: number };

/** What the worker answers for each {@link WorkerRequest}. */
export type WorkerReply =
  | { seq: number; ok: true; rows: number; bytes: number }
  | { seq: number; ok: false; errcode: number | undefined; message: string };

/** What the worker is started with. */
export interface WorkerData {
  path: string;
  busyTimeout: number;
  synchronous: 'normal' | 'full';
}

const port = parentPort;
if (port !== null) {
  const data = workerData as WorkerData;
  // The main thread created the schema already.
  const db = openOutboxFile(data.path, {
    create: false,
    synchronous: data.synchronous,
    busyTimeout: data.busyTimeout,
  });
  let writer: BatchWriter | undefined;
  port.on('message', (request: WorkerRequest) => {
    let reply: WorkerReply;
    try {
      if (request.type === 'commit') {
        writer ??= new BatchWriter(db);
        const counts = writer.write(request.rows, request.ops);
        reply = { seq: request.seq, ok: true, rows: counts.rows, bytes: counts.bytes };
      } else if (request.type === 'vacuum') {
        // Gives the free pages back to the file system, then copies the WAL into the file and
        // truncates it, so the file shrinks now (a reader in another process may keep part of it).
        const before = db.prepare('PRAGMA freelist_count').get() as { freelist_count: number };
        db.exec('PRAGMA incremental_vacuum');
        db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
        reply = { seq: request.seq, ok: true, rows: before.freelist_count, bytes: -1 };
      } else {
        // PASSIVE: never waits for, nor blocks, the writers and readers of other connections.
        db.exec('PRAGMA wal_checkpoint(PASSIVE)');
        reply = { seq: request.seq, ok: true, rows: -1, bytes: -1 };
      }
    } catch (error) {
      const errcode = (error as { errcode?: unknown }).errcode;
      reply = {
        seq: request.seq,
        ok: false,
        errcode: typeof errcode === 'number' ? errcode : undefined,
        message: error instanceof Error ? error.message : String(error),
      };
    }
    port.postMessage(reply);
  });
  port.on('close', () => db.close());
}
