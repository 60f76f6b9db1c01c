import { describe, expect, it } from 'vitest';
import { monotonicNow } from '../src/util/clock.js';

describe('monotonicNow', () => {
  it('reads what performance.now() reads, to within a few microseconds, and never goes back', () => {
    let last = monotonicNow();
    let worst = 0;
    for (let i = 0; i < 5_000; i++) {
      const before = performance.now();
      const now = monotonicNow();
      const after = performance.now();
      // Outside [before, after] only by the error of its origin, taken at load from the closest
      // of a few pairs of reads: under a microsecond on an idle machine.
      worst = Math.max(worst, before - now, now - after);
      expect(now).toBeGreaterThanOrEqual(last);
      last = now;
    }
    expect(worst).toBeLessThan(0.05);
  });

  it('measures a wait as performance.now() does', async () => {
    const [start, perfStart] = [monotonicNow(), performance.now()];
    await new Promise((resolve) => setTimeout(resolve, 30));
    const [elapsed, perfElapsed] = [monotonicNow() - start, performance.now() - perfStart];
    expect(elapsed).toBeGreaterThanOrEqual(29);
    expect(Math.abs(elapsed - perfElapsed)).toBeLessThan(0.05);
  });
});
