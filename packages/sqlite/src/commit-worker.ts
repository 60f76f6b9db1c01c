/**
 * The commit worker for `synchronous: 'full'`: its own connection to the same file, so the fsync
 * of each group commit blocks this thread, not the application's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BatchWriter, type BatchRow } from './commit.js';
import { openOutboxFile } from './schema.js';

/** What the main thread sends: one group commit. */
export interface CommitRequest {
  seq: number;
  rows: BatchRow[];
}

/** What the worker answers for each {@link CommitRequest}. */
export type CommitReply =
  | { seq: number; ok: true; rows: number; bytes: number }
  | { seq: number; ok: false; errcode: number | undefined; message: string };

/** What the worker is started with. */
export interface CommitWorkerData {
  path: string;
  busyTimeout: number;
}

const port = parentPort;
if (port !== null) {
  const data = workerData as CommitWorkerData;
  // The main thread created the schema already; this connection only writes batches.
  const db = openOutboxFile(data.path, { create: false, synchronous: 'full', busyTimeout: data.busyTimeout });
  const writer = new BatchWriter(db);
  port.on('message', (request: CommitRequest) => {
    let reply: CommitReply;
    try {
      const counts = writer.write(request.rows);
      reply = { seq: request.seq, ok: true, rows: counts.rows, bytes: counts.bytes };
    } catch (error) {
      const cause = (error as { cause?: { errcode?: unknown } }).cause;
      const errcode = (error as { errcode?: unknown }).errcode ?? cause?.errcode;
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
