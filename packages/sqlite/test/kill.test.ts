import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { child, tempFile } from './support.js';

describe.each([
  { synchronous: 'normal', writer: 'worker' },
  { synchronous: 'normal', writer: 'main' },
  { synchronous: 'full', writer: 'worker' },
] as const)('kill -9 while enqueueing ($synchronous, writer $writer)', ({ synchronous, writer }) => {
  it('every acknowledged row is on disk after SIGKILL at random moments, four times over', async () => {
    const path = tempFile();
    const report: string[] = [];
    for (let round = 0; round < 4; round++) {
      const c = child('enqueue-forever', path, [synchronous, writer]);
      await c.next('acked');
      await new Promise((r) => setTimeout(r, 20 + Math.random() * 200));
      c.process.kill('SIGKILL');
      expect((await c.exited).signal).toBe('SIGKILL');
      const acked = Math.max(...c.lines.filter((l) => l.what === 'acked').map((l) => l.count as number));
      const db = new DatabaseSync(path, { readOnly: true });
      const rows = db
        .prepare('SELECT key FROM outbox WHERE key LIKE ?')
        .all(`${c.process.pid}-%`)
        .map((r) => Number(String(r.key).split('-')[1]));
      db.close();
      const present = new Set(rows);
      const lost = Array.from({ length: acked }, (_, i) => i).filter((i) => !present.has(i));
      expect(lost, `round ${round}: acknowledged rows missing`).toEqual([]);
      report.push(`${acked} acked, ${rows.length - acked} more unacknowledged on disk`);
    }
    expect(report).toHaveLength(4);
  });
});
