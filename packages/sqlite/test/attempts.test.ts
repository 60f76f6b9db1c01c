import { describe, expect, it } from 'vitest';
import { OutboxDb } from '@afterward/sqlite';
import { child, notification, tempFile } from './support.js';

describe('attempts and backoff survive the process', () => {
  it('records an attempt before sending: a payload that kills the process each time still runs out of attempts', async () => {
    const path = tempFile();
    const seed = new OutboxDb({ path });
    const r = seed.enqueue(
      notification({
        key: 'poison',
        retry: { attempts: 3, minDelay: 1, maxDelay: 1, factor: 2, maxRetryAfter: 0 },
      }),
    );
    if (r.accepted) await r.persisted;
    await seed.close();

    const seen: number[] = [];
    for (let run = 0; run < 3; run++) {
      const c = child('crash-on-attempt', path);
      const line = await c.next('attempt');
      seen.push(line.attempt as number);
      expect((await c.exited).signal).toBe('SIGKILL');
      // The crashed process's lease would hold the row; a restart takes it back at once here.
      const db = new OutboxDb({ path });
      db.release(`crash-${c.process.pid}`);
      await db.close();
    }
    expect(seen).toEqual([1, 2, 3]);

    // What the next start sees: every attempt used, so the runner buries it instead of sending.
    const db = new OutboxDb({ path });
    try {
      const [n] = db.claim('next', Date.now(), 1, 30_000);
      expect(n).toMatchObject({ key: 'poison', attempts: 3 });
      expect(n!.attempts >= n!.retry.attempts).toBe(true);
      expect(
        db.bury('poison', { reason: 'failed', errorCode: 'AFTERWARD_ERR_NETWORK', errorMessage: 'crashed' }),
      ).toBe(true);
      expect(db.showDead('poison')).toMatchObject({ attempts: 3, reason: 'failed' });
    } finally {
      await db.close();
    }
  });

  it('keeps a backoff across a restart: the row is not claimable before notBefore', async () => {
    const path = tempFile();
    const db = new OutboxDb({ path });
    const r = db.enqueue(notification({ key: 'k' }));
    if (r.accepted) await r.persisted;
    const now = Date.now();
    const [n] = db.claim('A', now, 1, 30_000);
    expect(db.recordAttempt(n!.key, 1)).toBe(true);
    expect(db.reschedule(n!.key, now + 60_000, 1)).toBe(true);
    await db.close();

    const after = new OutboxDb({ path });
    try {
      expect(after.claim('B', now + 59_999, 10, 30_000)).toEqual([]);
      expect(after.nextDueAt(now)).toBe(now + 60_000);
      const [again] = after.claim('B', now + 60_000, 10, 30_000);
      expect(again).toMatchObject({ key: 'k', id: 'msg_k', attempts: 1, notBefore: now + 60_000 });
      expect(after.complete('k')).toBe(true);
      expect(after.stats()).toMatchObject({ pending: 0, leased: 0, dead: 0 });
    } finally {
      await after.close();
    }
  });
});

describe('inTransaction', () => {
  it('settles several rows in one transaction, and rolls all of them back on a throw', async () => {
    const path = tempFile();
    const db = new OutboxDb({ path });
    try {
      const r = ['a', 'b', 'c'].map((key) => db.enqueue(notification({ key })))[0]!;
      if (r.accepted) await r.persisted;
      const claimed = db.claim('A', Date.now(), 10, 30_000);
      expect(() =>
        db.inTransaction(() => {
          db.complete('a');
          db.recordAttempt('b', 1);
          throw new Error('runner bug');
        }),
      ).toThrow('runner bug');
      expect(db.pendingPage(undefined, 10).rows.map((n) => [n.key, n.attempts])).toEqual([
        ['a', 0],
        ['b', 0],
        ['c', 0],
      ]);
      const done = db.inTransaction(() => claimed.filter((n) => n.key !== 'c' && db.complete(n.key)).length);
      expect(done).toBe(2);
      expect(db.stats()).toMatchObject({ pending: 0, leased: 1 });
      // The file's counts follow, so the bound sees the room made.
      const other = new OutboxDb({ path, maxRows: 2 });
      expect(other.enqueue(notification()).accepted).toBe(true);
      await other.close();
    } finally {
      await db.close();
    }
  });
});
