import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OutboxDb } from '@afterward/sqlite';
import { notification, tempFile } from './support.js';

const DAY = 86_400_000;

describe('housekeeping', () => {
  it('drops dead letters older than deadLetterTtl and beyond maxDeadLetters, oldest first', async () => {
    const now = Date.now();
    const db = new OutboxDb({ path: tempFile(), deadLetterTtl: 7 * DAY, maxDeadLetters: 3 });
    try {
      const keys = ['old', 'd1', 'd2', 'd3', 'd4', 'live'];
      const r = keys.map((key) => db.enqueue(notification({ key })))[0]!;
      if (r.accepted) await r.persisted;
      db.bury('old', { reason: 'failed', failedAt: now - 8 * DAY });
      db.bury('d1', { reason: 'failed', failedAt: now - 4_000 });
      db.bury('d2', { reason: 'failed', failedAt: now - 3_000 });
      db.bury('d3', { reason: 'failed', failedAt: now - 2_000 });
      db.bury('d4', { reason: 'dropped', failedAt: now - 1_000 });
      expect(await db.housekeep(now)).toMatchObject({ deadExpired: 1, deadOverCount: 1 });
      expect(db.listDead().map((d) => d.key)).toEqual(['d4', 'd3', 'd2']);
      // Pending rows are never touched by housekeeping.
      expect(db.stats()).toMatchObject({ pending: 1, dead: 3 });
      expect(await db.housekeep(now)).toMatchObject({ deadExpired: 0, deadOverCount: 0 });
    } finally {
      await db.close();
    }
  });

  it('gives the space back to the file system once a backlog clears (incremental vacuum)', async () => {
    const path = tempFile();
    const db = new OutboxDb({ path });
    try {
      const keys: string[] = [];
      for (let turn = 0; turn < 4; turn++) {
        const results = Array.from({ length: 500 }, () => {
          const n = notification({}, 4_096);
          keys.push(n.key);
          return db.enqueue(n);
        });
        const first = results[0]!;
        if (first.accepted) await first.persisted;
      }
      await db.housekeep();
      const full = db.stats().fileBytes;
      expect(full).toBeGreaterThan(10 * 1024 * 1024);
      // While rows are pending, no vacuum.
      for (const key of keys.slice(0, 1_000)) db.complete(key);
      expect((await db.housekeep()).vacuumedPages).toBe(0);
      for (const key of keys.slice(1_000)) db.complete(key);
      const report = await db.housekeep();
      expect(report.vacuumedPages).toBeGreaterThan(1_000);
      const after = db.stats().fileBytes;
      expect(after).toBeLessThan(full / 10);
      expect(statSync(path).size).toBeLessThan(full / 10);
      expect(statSync(`${path}-wal`).size).toBe(0);
    } finally {
      await db.close();
    }
  });

  it("checkpoints the WAL into the file on the worker, without housekeep and without the app's thread", async () => {
    const path = tempFile();
    const db = new OutboxDb({ path });
    try {
      for (let turn = 0; turn < 4; turn++) {
        const results = Array.from({ length: 500 }, () => db.enqueue(notification({}, 4_096)));
        const first = results[0]!;
        if (first.accepted) await first.persisted;
      }
      const deadline = Date.now() + 10_000;
      while (statSync(path).size < 4 * 1024 * 1024 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(statSync(path).size).toBeGreaterThan(4 * 1024 * 1024);
    } finally {
      await db.close();
    }
  });
});
