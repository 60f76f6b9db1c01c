import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { OutboxDb } from '@afterward/sqlite';
import { nextTurn, notification, tempFile } from './support.js';

function rowsOnDisk(path: string): number {
  // Another connection sees only what was committed.
  const other = new DatabaseSync(path, { readOnly: true });
  try {
    return (other.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
  } finally {
    other.close();
  }
}

const CONFIGS = [
  { synchronous: 'normal', writer: 'main' },
  { synchronous: 'normal', writer: 'worker' },
  { synchronous: 'full', writer: 'worker' },
  { synchronous: 'full', writer: 'main' },
] as const;

describe.each(CONFIGS)(
  'group commit (synchronous: $synchronous, writer: $writer)',
  ({ synchronous, writer }) => {
    it('writes every enqueue of one event-loop turn in one transaction, and persisted resolves at its commit', async () => {
      const path = tempFile();
      const db = new OutboxDb({ path, synchronous, writer });
      try {
        const results = Array.from({ length: 50 }, () => db.enqueue(notification()));
        const persisted = results.map((r) => (r.accepted ? r.persisted : undefined));
        // One promise per batch: the acknowledgement of the group commit.
        expect(new Set(persisted).size).toBe(1);
        expect(persisted[0]).toBeInstanceOf(Promise);
        // Synchronous enqueue did no I/O: nothing is on disk yet.
        expect(rowsOnDisk(path)).toBe(0);
        expect(db.unpersisted).toBe(50);
        let resolved = false;
        void persisted[0]!.then(() => (resolved = true));
        await persisted[0];
        expect(resolved).toBe(true);
        expect(rowsOnDisk(path)).toBe(50);
        expect(db.stats().commits).toBe(1);
        expect(db.unpersisted).toBe(0);

        // The next turn is the next transaction.
        const second = db.enqueue(notification());
        const third = db.enqueue(notification());
        expect(second.accepted && third.accepted && second.persisted === third.persisted).toBe(true);
        await nextTurn();
        if (second.accepted) await second.persisted;
        expect(db.stats().commits).toBe(2);
        expect(rowsOnDisk(path)).toBe(52);
      } finally {
        await db.close();
      }
    });

    it('commits what was enqueued when closed in the same turn', async () => {
      const path = tempFile();
      const db = new OutboxDb({ path, synchronous, writer });
      const r = db.enqueue(notification());
      await db.close();
      expect(r.accepted).toBe(true);
      if (r.accepted) await expect(r.persisted).resolves.toBeUndefined();
      expect(rowsOnDisk(path)).toBe(1);
      expect(() => db.enqueue(notification())).toThrow(/closed/);
    });

    it('rejects persisted with a typed error when the commit fails, and acknowledges nothing of that batch', async () => {
      const path = tempFile();
      const db = new OutboxDb({ path, synchronous, writer });
      try {
        const n = notification();
        const first = db.enqueue(n);
        if (first.accepted) await first.persisted;
        // The same key twice breaks the primary key: the whole batch is rolled back.
        const a = db.enqueue(notification());
        const dup = db.enqueue(n);
        expect(a.accepted && dup.accepted).toBe(true);
        if (!dup.accepted) return;
        await expect(dup.persisted).rejects.toMatchObject({ code: 'AFTERWARD_ERR_OUTBOX_IO' });
        expect(rowsOnDisk(path)).toBe(1);
      } finally {
        await db.close();
      }
    });
  },
);

describe('recovery in pages', () => {
  it('loads every pending row in key order, page by page, with the columns as the truth', async () => {
    const path = tempFile();
    const db = new OutboxDb({ path });
    const keys = Array.from({ length: 25 }, (_, i) => `k${String(i).padStart(3, '0')}`);
    const results = keys.map((key) => db.enqueue(notification({ key })));
    const first = results[0]!;
    if (first.accepted) await first.persisted;
    db.reschedule('k003', 123_456, 2);
    await db.close();

    const reopened = new OutboxDb({ path });
    try {
      const seen: string[] = [];
      let page = reopened.pendingPage(undefined, 10);
      const sizes = [page.rows.length];
      seen.push(...page.rows.map((n) => n.key));
      while (page.next !== undefined) {
        page = reopened.pendingPage(page.next, 10);
        sizes.push(page.rows.length);
        seen.push(...page.rows.map((n) => n.key));
      }
      expect(seen).toEqual(keys);
      expect(sizes).toEqual([10, 10, 5]);
      const moved = reopened.pendingPage('k002', 1).rows[0]!;
      expect(moved).toMatchObject({ key: 'k003', id: 'msg_k003', attempts: 2, notBefore: 123_456 });
    } finally {
      await reopened.close();
    }
  });
});
