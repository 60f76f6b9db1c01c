import { describe, expect, it } from 'vitest';
import { OutboxDb, openSqliteAdmin, type OutboxError } from '@afterward/sqlite';
import { notification, tempFile } from './support.js';

async function withDeadLetters(path: string, now: number): Promise<OutboxDb> {
  const db = new OutboxDb({ path });
  const r = [
    db.enqueue(notification({ key: 'k1', origin: 'https://a.example', url: 'https://a.example/x?token=t1' })),
    db.enqueue(notification({ key: 'k2', origin: 'https://a.example', url: 'https://a.example/y' })),
    db.enqueue(notification({ key: 'k3', origin: 'https://b.example', url: 'https://b.example/z' })),
    db.enqueue(notification({ key: 'k4', origin: 'https://b.example', url: 'https://b.example/w' })),
  ][0]!;
  if (r.accepted) await r.persisted;
  db.claim('A', now, 10, 30_000);
  db.bury('k1', {
    reason: 'failed',
    status: 410,
    errorCode: 'AFTERWARD_ERR_HTTP_STATUS',
    errorMessage: 'POST https://user:pw@a.example/x?token=t1 answered 410',
    attempts: 1,
    failedAt: now - 3_000,
  });
  db.bury('k2', {
    reason: 'failed',
    errorCode: 'AFTERWARD_ERR_NETWORK',
    errorMessage: 'ECONNRESET',
    attempts: 5,
    failedAt: now - 2_000,
  });
  db.bury('k3', { reason: 'dropped', errorCode: 'AFTERWARD_ERR_DROPPED', failedAt: now - 1_000 });
  return db;
}

describe('dead letters', () => {
  it('keeps status, code, redacted message, attempts, timestamps and reason; never claimed again', async () => {
    const now = Date.now();
    const db = await withDeadLetters(tempFile(), now);
    try {
      const k1 = db.showDead('msg_k1')!;
      expect(k1).toMatchObject({
        key: 'k1',
        id: 'msg_k1',
        origin: 'https://a.example',
        url: 'https://a.example/x?token=t1',
        status: 410,
        errorCode: 'AFTERWARD_ERR_HTTP_STATUS',
        errorMessage: 'POST https://a.example answered 410',
        attempts: 1,
        failedAt: now - 3_000,
        reason: 'failed',
      });
      expect(k1.errorMessage).not.toMatch(/token|user|pw|\/x/);
      expect(k1.notification.key).toBe('k1');
      expect(db.showDead('k1')?.id).toBe('msg_k1');
      expect(db.showDead('k4')).toBeUndefined();
      db.release('A');
      expect(db.claim('B', now + 60_000, 10, 1_000).map((n) => n.key)).toEqual(['k4']);
      expect(db.stats()).toMatchObject({ dead: 3, leased: 1, pending: 0 });
    } finally {
      await db.close();
    }
  });

  it('lists newest first with filters on origin, status, code, since, until and limit', async () => {
    const now = Date.now();
    const db = await withDeadLetters(tempFile(), now);
    try {
      const keys = (filter: Parameters<OutboxDb['listDead']>[0]): string[] =>
        db.listDead(filter).map((d) => d.key);
      expect(keys({})).toEqual(['k3', 'k2', 'k1']);
      expect(keys({ origin: 'https://a.example' })).toEqual(['k2', 'k1']);
      expect(keys({ status: 410 })).toEqual(['k1']);
      expect(keys({ errorCode: 'AFTERWARD_ERR_DROPPED' })).toEqual(['k3']);
      expect(keys({ since: now - 2_000 })).toEqual(['k3', 'k2']);
      expect(keys({ until: now - 2_000 })).toEqual(['k2', 'k1']);
      expect(keys({ limit: 1 })).toEqual(['k3']);
      expect(db.purgeDead({ origin: 'https://a.example' })).toBe(2);
      expect(keys({})).toEqual(['k3']);
    } finally {
      await db.close();
    }
  });

  it('replay puts it back due now with attempts 0 and the same webhook id; replaying twice is a no-op', async () => {
    const now = Date.now();
    const path = tempFile();
    const db = await withDeadLetters(path, now);
    try {
      const version = db.dataVersion();
      const admin = openSqliteAdmin(path);
      expect(await admin.replayDead('msg_k2')).toBe(true);
      expect(await admin.replayDead('msg_k2')).toBe(false);
      expect(await admin.replayDead('k2')).toBe(false);
      expect(await admin.replayDead('nope')).toBe(false);
      await admin.close();
      // The running outbox sees another process's commit without a restart.
      expect(db.dataVersion()).not.toBe(version);
      const claimed = db.claim('B', Date.now(), 10, 30_000);
      expect(claimed).toHaveLength(1);
      expect(claimed[0]).toMatchObject({ key: 'k2', id: 'msg_k2', attempts: 0 });
      expect(claimed[0]!.notBefore).toBeLessThanOrEqual(Date.now());
      expect(db.showDead('k2')).toBeUndefined();
      expect(db.stats()).toMatchObject({ dead: 2 });
    } finally {
      await db.close();
    }
  });

  it('the admin implements OutboxAdmin on the file: list, show, purge, stats; a missing file is a typed error', async () => {
    const now = Date.now();
    const path = tempFile();
    await (await withDeadLetters(path, now)).close();
    const admin = openSqliteAdmin(path);
    try {
      expect((await admin.listDead({ origin: 'https://b.example' })).map((d) => d.key)).toEqual(['k3']);
      expect((await admin.showDead('msg_k3'))?.reason).toBe('dropped');
      expect(await admin.showDead('missing')).toBeUndefined();
      const stats = await admin.stats();
      expect(stats).toMatchObject({ dead: 3, leased: 1, pending: 0 });
      expect(stats.fileBytes).toBeGreaterThan(0);
      expect(await admin.purgeDead({})).toBe(3);
      expect(await admin.listDead({})).toEqual([]);
    } finally {
      await admin.close();
    }
    expect(() => openSqliteAdmin(`${path}.missing`)).toThrow(
      expect.objectContaining({ code: 'AFTERWARD_ERR_OUTBOX_NOT_FOUND' }) as OutboxError,
    );
  });
});
