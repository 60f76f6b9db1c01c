import { describe, expect, it } from 'vitest';
import { OutboxDb } from '@afterward/sqlite';
import { nextTurn, notification, tempFile } from './support.js';

describe('bounds at the call', () => {
  it('refuses beyond maxRows before acknowledging, counts it, and never deletes an acknowledged row', async () => {
    const path = tempFile();
    const db = new OutboxDb({ path, maxRows: 10 });
    try {
      const results = Array.from({ length: 15 }, (_, i) => db.enqueue(notification({ key: `k${i}` })));
      expect(results.filter((r) => r.accepted)).toHaveLength(10);
      expect(results.slice(10).every((r) => !r.accepted && r.reason === 'full')).toBe(true);
      const first = results[0]!;
      if (first.accepted) await first.persisted;
      // Full across turns too, and across what other processes wrote (the file's count).
      await nextTurn();
      expect(db.enqueue(notification()).accepted).toBe(false);
      expect(db.stats()).toMatchObject({ pending: 10, refused: 6 });
      const keys = db.pendingPage(undefined, 100).rows.map((n) => n.key);
      expect(keys.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`).sort());

      // Another process on the same file sees the same bound.
      const other = new OutboxDb({ path, maxRows: 10 });
      expect(other.enqueue(notification()).accepted).toBe(false);
      // Room comes back only when a row is settled, never by evicting one.
      db.complete('k0');
      const again = db.enqueue(notification({ key: 'k-new' }));
      expect(again.accepted).toBe(true);
      if (again.accepted) await again.persisted;
      await other.close();
      expect(db.stats().pending).toBe(10);
    } finally {
      await db.close();
    }
  });

  it('refuses beyond maxBytes of bodies', async () => {
    const db = new OutboxDb({ path: tempFile(), maxBytes: 1_000 });
    try {
      expect(db.enqueue(notification({}, 600)).accepted).toBe(true);
      expect(db.enqueue(notification({}, 600)).accepted).toBe(false);
      expect(db.enqueue(notification({}, 400)).accepted).toBe(true);
      expect(db.enqueue(notification({}, 1)).accepted).toBe(false);
      expect(db.stats().refused).toBe(2);
    } finally {
      await db.close();
    }
  });

  it('dead letters do not count against the bound of pending rows', async () => {
    const db = new OutboxDb({ path: tempFile(), maxRows: 2 });
    try {
      const r = [db.enqueue(notification({ key: 'a' })), db.enqueue(notification({ key: 'b' }))][0]!;
      if (r.accepted) await r.persisted;
      expect(db.enqueue(notification()).accepted).toBe(false);
      db.bury('a', { reason: 'failed' });
      expect(db.enqueue(notification({ key: 'c' })).accepted).toBe(true);
    } finally {
      await db.close();
    }
  });
});
