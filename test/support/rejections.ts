import { afterAll, afterEach, beforeAll, expect } from 'vitest';

/**
 * Fails the current test if any promise rejection goes unhandled while it runs: afterward's
 * contract is that no code path produces one.
 */
export function guardUnhandledRejections(): void {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    seen.push(reason);
  };
  beforeAll(() => {
    process.on('unhandledRejection', onRejection);
  });
  afterEach(async () => {
    // Rejections are reported after a turn of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    const found = seen.splice(0);
    expect(found, 'unhandled rejections').toEqual([]);
  });
  afterAll(() => {
    process.off('unhandledRejection', onRejection);
  });
}
