import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OutboxDb } from '@afterward/sqlite';
import { child, notification, tempFile } from './support.js';

async function seed(path: string, count: number): Promise<string[]> {
  const db = new OutboxDb({ path });
  const keys = Array.from({ length: count }, (_, i) => `k${String(i).padStart(4, '0')}`);
  const results = keys.map((key) => db.enqueue(notification({ key })));
  const first = results[0]!;
  if (first.accepted) await first.persisted;
  await db.close();
  return keys;
}

describe('claims with leases, several processes on one file', () => {
  it('two live processes never claim the same row, and together deliver every row once', async () => {
    const path = tempFile();
    const keys = await seed(path, 300);
    // Both start claiming together: one child booting 200 ms later under load would find every row
    // claimed by the other, and the last check below would fail.
    const go = `${path}.go`;
    const a = child('claim-loop', path, ['A', '30000', go]);
    const b = child('claim-loop', path, ['B', '30000', go]);
    await Promise.all([a.next('ready'), b.next('ready')]);
    writeFileSync(go, '');
    await Promise.all([a.exited, b.exited]);
    expect(a.lines.at(-1)?.what).toBe('done');
    expect(b.lines.at(-1)?.what).toBe('done');
    const claimedBy = new Map<string, string[]>();
    for (const [name, c] of [
      ['A', a],
      ['B', b],
    ] as const) {
      for (const line of c.lines.filter((l) => l.what === 'claimed')) {
        for (const key of line.keys as string[]) claimedBy.set(key, [...(claimedBy.get(key) ?? []), name]);
      }
    }
    const twice = [...claimedBy].filter(([, owners]) => owners.length > 1);
    expect(twice).toEqual([]);
    expect([...claimedBy.keys()].sort()).toEqual(keys);
    // Both really took part (the claims interleaved on one file).
    const countA = [...claimedBy.values()].filter((o) => o[0] === 'A').length;
    expect(countA).toBeGreaterThan(0);
    expect(countA).toBeLessThan(300);
    const db = new OutboxDb({ path });
    expect(db.stats()).toMatchObject({ pending: 0, leased: 0 });
    await db.close();
  });

  it("a SIGKILLed owner's rows are taken over only after its lease expires, with the same ids", async () => {
    const path = tempFile();
    const keys = await seed(path, 20);
    const leaseMs = 1_500;
    const a = child('claim-and-hang', path, ['A', String(leaseMs)]);
    const claimed = await a.next('claimed');
    expect((claimed.keys as string[]).sort()).toEqual(keys);
    a.process.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');

    const db = new OutboxDb({ path });
    try {
      // Still leased by the dead process: nobody else may take them yet.
      const early = db.claim('B', Date.now(), 100, 10_000);
      if (Date.now() < (claimed.until as number)) expect(early).toEqual([]);
      expect(db.stats().leased + early.length).toBe(20);
      const at = db.nextDueAt(Date.now());
      expect(at).toBeGreaterThan(Date.now() - 1);
      await new Promise((r) => setTimeout(r, Math.max(0, (claimed.until as number) - Date.now() + 20)));
      const taken = [...early, ...db.claim('B', Date.now(), 100, 10_000)];
      expect(taken.map((n) => n.key).sort()).toEqual(keys);
      expect(taken.every((n) => n.id === `msg_${n.key}`)).toBe(true);
      // B holds them now: a third owner gets nothing.
      expect(db.claim('C', Date.now(), 100, 10_000)).toEqual([]);
      expect(db.renew('B', Date.now() + 20_000)).toBe(20);
      expect(db.release('B')).toBe(20);
      expect(db.claim('C', Date.now(), 100, 10_000)).toHaveLength(20);
    } finally {
      await db.close();
    }
  });

  it('claims only due rows, earliest first, and limit bounds a claim', async () => {
    const path = tempFile();
    const db = new OutboxDb({ path });
    try {
      const now = Date.now();
      const r = [
        db.enqueue(notification({ key: 'late', notBefore: now + 60_000 })),
        db.enqueue(notification({ key: 'b', notBefore: now - 10 })),
        db.enqueue(notification({ key: 'a', notBefore: now - 20 })),
        db.enqueue(notification({ key: 'c', notBefore: now - 5 })),
      ][0]!;
      if (r.accepted) await r.persisted;
      expect(db.claim('X', now, 2, 1_000).map((n) => n.key)).toEqual(['a', 'b']);
      expect(db.claim('X', now, 10, 1_000).map((n) => n.key)).toEqual(['c']);
      expect(db.nextDueAt(now)).toBe(now + 1_000);
    } finally {
      await db.close();
    }
  });
});
