import pg from 'pg';
import { fromKnex } from 'pg-boss';
import type { KnexTransactionLike } from 'pg-boss';
import { createWorker, notificationJson, postgresAdmin, postgresBackend } from '@afterward/postgres';
import type {
  AttemptRunner,
  EnqueueTicket,
  OutboxAdmin,
  PersistOutcome,
  PostgresBackend,
  Worker,
  WorkerCloseResult,
} from '@afterward/postgres';
import { describe, expectTypeOf, it } from 'vitest';

declare const runner: AttemptRunner;
declare const trx: KnexTransactionLike;

describe('@afterward/postgres types (built declarations)', () => {
  it('enqueue is synchronous and its persisted never carries a rejection type', () => {
    const backend = postgresBackend({ connectionString: 'postgres://localhost/x' });
    expectTypeOf(backend).toEqualTypeOf<PostgresBackend>();
    const ticket = backend.enqueue(notificationJson('https://example.com'));
    expectTypeOf(ticket).toEqualTypeOf<EnqueueTicket>();
    expectTypeOf(ticket.persisted).toEqualTypeOf<Promise<PersistOutcome>>();
    backend.on('dropped', (e) => expectTypeOf(e.reason).toEqualTypeOf<'buffer-full' | 'closed'>());
  });

  it('add takes a pg client, a pool client or a pg-boss adapter', async () => {
    const backend = postgresBackend({ pool: new pg.Pool() });
    const client = await new pg.Pool().connect();
    expectTypeOf(await backend.add(client, 'https://example.com', { json: { a: 1 } })).toBeString();
    expectTypeOf(await backend.add(fromKnex(trx), new URL('https://example.com'))).toBeString();
    // @ts-expect-error not a SQL target
    await backend.add({}, 'https://example.com');
  });

  it('worker and admin', async () => {
    const backend = postgresBackend({ connectionString: 'postgres://localhost/x' });
    const worker = createWorker({ backend, runner, concurrencyPerOrigin: 4 });
    expectTypeOf(worker).toEqualTypeOf<Worker>();
    expectTypeOf(await worker.close({ timeout: 1 })).toEqualTypeOf<WorkerCloseResult>();
    expectTypeOf(postgresAdmin({ backend })).toEqualTypeOf<OutboxAdmin>();
    // The runner is built from the dispatcher's attempt options; a runner may still be given.
    expectTypeOf(
      createWorker({ backend, signing: { secret: 'whsec_x' }, guard: 'public-only' }),
    ).toEqualTypeOf<Worker>();
    // @ts-expect-error not a worker option
    createWorker({ backend, concurrencyPerOrign: 4 });
  });
});
