import { describe, expect, it } from 'vitest';
import { newId, writeId } from '../src/util/id.js';

describe('newId', () => {
  it('makes version 4 UUIDs, all different, across refills of its random pool', () => {
    const seen = new Set<string>();
    // 256 ids per refill of the random bytes: 3,000 cross several refills.
    for (let i = 0; i < 3_000; i++) {
      const id = newId();
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(id);
    }
    expect(seen.size).toBe(3_000);
  });

  it('uses every hex digit in every free position (no stuck nibble)', () => {
    const digits = Array.from({ length: 36 }, () => new Set<string>());
    for (let i = 0; i < 2_000; i++) [...newId()].forEach((c, at) => digits[at]?.add(c));
    const free = [...Array(36).keys()].filter((at) => ![8, 13, 14, 18, 19, 23].includes(at));
    for (const at of free) expect(digits[at]?.size, `position ${at}`).toBe(16);
    expect(digits[14]).toEqual(new Set(['4']));
    expect([...(digits[19] ?? [])].sort()).toEqual(['8', '9', 'a', 'b']);
  });

  it('writeId() writes an id of the same kind at an offset, touching nothing around it', () => {
    const buf = Buffer.alloc(50, 0x2a);
    expect(writeId(buf, 7)).toBe(43);
    expect(buf.toString('latin1', 7, 43)).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(buf.subarray(0, 7).every((byte) => byte === 0x2a)).toBe(true);
    expect(buf.subarray(43).every((byte) => byte === 0x2a)).toBe(true);
  });
});
