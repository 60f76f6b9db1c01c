import { createHash, randomUUID } from 'node:crypto';
import type { JobInsert } from 'pg-boss';
import { InvalidArgumentError } from '@afterward/core';
import type { NotificationJson } from '@afterward/core/backend';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** The first job id of a storage key: the key when it is a UUID, else a UUID from its MD5. */
export function jobId(key: string): string {
  if (UUID.test(key)) return key.toLowerCase();
  const h = createHash('md5').update(key).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** How jobs are shaped; fixed per backend. */
export interface JobShape {
  /** Seconds a claimed job may stay active beyond its total attempt timeout before it expires. */
  leaseMarginSeconds: number;
  /** Lease expiries (killed or stuck workers) a job survives before pg-boss fails it. */
  maxLeaseExpiries: number;
  /** Seconds a not-yet-delivered job is kept before pg-boss deletes it. */
  retentionSeconds: number;
  /** Seconds a completed job is kept. */
  deleteAfterSeconds: number;
}

/**
 * One notification as a pg-boss job. The first insert derives the job id from the notification's
 * storage key (the key itself when it is a UUID, else a UUID made from its hash), so a batch retried after an ambiguous failure (the commit landed, the
 * answer was lost) is a no-op thanks to pg-boss's `ON CONFLICT DO NOTHING`. Re-schedules and replays
 * pass `fresh` and get a new job id, since the old job row may still exist.
 */
export function toJobInsert(n: NotificationJson, shape: JobShape, fresh = false): JobInsert {
  const job: JobInsert = {
    id: fresh ? randomUUID() : jobId(n.key),
    data: n,
    // Per-origin concurrency across every worker: pg-boss groupConcurrency counts active jobs per group.
    group: { id: n.origin },
    expireInSeconds: Math.ceil(n.timeout.total / 1000) + shape.leaseMarginSeconds,
    retryLimit: shape.maxLeaseExpiries,
    retryDelay: 0,
    retentionSeconds: shape.retentionSeconds,
    deleteAfterSeconds: shape.deleteAfterSeconds,
  };
  if (n.notBefore > Date.now()) job.startAfter = new Date(n.notBefore).toISOString();
  return job;
}

/** A rough byte size of a stored notification, without serialising it (the insert does that). */
export function approximateBytes(n: NotificationJson): number {
  let bytes = 320 + n.url.length + (n.body?.length ?? 0);
  for (const h of n.headers) bytes += h.length + 6;
  return bytes;
}

/** Schema and queue names go into SQL as identifiers: keep them plain. */
export function checkIdentifier(name: string, value: string): string {
  if (!IDENTIFIER.test(value)) {
    throw new InvalidArgumentError(`${name} must match ${IDENTIFIER.source}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * The LISTEN channel pg-boss notifies on when a job of a `notify: true` queue is created. Mirrors
 * pg-boss 12's `notifyChannelSql` (not public API): a test guards it (`worker.test.ts`, idle latency).
 */
export function notifyChannel(schema: string): string {
  return `pgboss_${createHash('sha224').update(schema).digest('hex').slice(0, 24)}`;
}

/** The dead-letter table: our own, so dead letters are kept until purged and filter by column. */
export function deadLetterDdl(schema: string): string {
  return `
    CREATE TABLE IF NOT EXISTS ${schema}.afterward_dead (
      key text PRIMARY KEY,
      id text NOT NULL,
      origin text NOT NULL,
      method text NOT NULL,
      status integer,
      error_code text,
      error_message text,
      attempts integer NOT NULL,
      created_at timestamptz NOT NULL,
      failed_at timestamptz NOT NULL DEFAULT now(),
      reason text NOT NULL,
      notification jsonb NOT NULL
    );
    CREATE INDEX IF NOT EXISTS afterward_dead_failed_at ON ${schema}.afterward_dead (failed_at);
    CREATE INDEX IF NOT EXISTS afterward_dead_id ON ${schema}.afterward_dead (id);
  `;
}
