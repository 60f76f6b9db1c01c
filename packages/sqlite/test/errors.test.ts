import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAfterwardError, InvalidArgumentError } from '@afterward/core';
import { OutboxDb, OutboxError } from '@afterward/sqlite';
import { child, notification, tempDir, tempFile } from './support.js';

function codeOf(
  fn: () => unknown,
  type: typeof OutboxError | typeof InvalidArgumentError = OutboxError,
): string | undefined {
  try {
    fn();
  } catch (error) {
    expect(isAfterwardError(error)).toBe(true);
    expect(error).toBeInstanceOf(type);
    return (error as OutboxError).code;
  }
  return undefined;
}

// Root ignores file modes: as root, the open runs in a child process as user nobody.
const asRoot = process.getuid?.() === 0;

async function openAs(path: string, existing: boolean): Promise<string | undefined> {
  if (!asRoot) return codeOf(() => new OutboxDb({ path, create: !existing }));
  const c = child('open', path, existing ? ['existing'] : [], { uid: 65534 });
  const line = await Promise.race([c.next('error'), c.next('opened')]);
  return line.what === 'opened' ? undefined : (line.code as string);
}

describe('clear errors at start, before anything is acknowledged', () => {
  it('a missing directory is AFTERWARD_ERR_OUTBOX_NO_DIRECTORY and creates nothing', () => {
    const path = join(tempDir(), 'no', 'such', 'outbox.db');
    expect(codeOf(() => new OutboxDb({ path }))).toBe('AFTERWARD_ERR_OUTBOX_NO_DIRECTORY');
  });

  it('a missing file, when not creating, is AFTERWARD_ERR_OUTBOX_NOT_FOUND', () => {
    expect(codeOf(() => new OutboxDb({ path: tempFile(), create: false }))).toBe(
      'AFTERWARD_ERR_OUTBOX_NOT_FOUND',
    );
  });

  it('a read-only file, and a read-only directory, are AFTERWARD_ERR_OUTBOX_READ_ONLY', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const path = join(dir, 'outbox.db');
    const db = new OutboxDb({ path });
    const r = db.enqueue(notification());
    if (r.accepted) await r.persisted;
    await db.close();
    chmodSync(path, 0o444);
    expect(await openAs(path, true)).toBe('AFTERWARD_ERR_OUTBOX_READ_ONLY');

    const roDir = tempDir();
    chmodSync(roDir, 0o555);
    expect(await openAs(join(roDir, 'outbox.db'), false)).toBe('AFTERWARD_ERR_OUTBOX_READ_ONLY');
  });

  it('a file locked by another process for longer than busyTimeout is AFTERWARD_ERR_OUTBOX_LOCKED', async () => {
    const path = tempFile();
    await new OutboxDb({ path }).close();
    const holder = child('hold-lock', path);
    await holder.next('locked');
    const started = Date.now();
    expect(codeOf(() => new OutboxDb({ path, busyTimeout: 200 }))).toBe('AFTERWARD_ERR_OUTBOX_LOCKED');
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    holder.process.kill('SIGKILL');
    await holder.exited;
    // The lock dies with its process: the file opens again.
    await new OutboxDb({ path, busyTimeout: 200 }).close();
  });

  it('a file that is not a database is AFTERWARD_ERR_OUTBOX_NOT_AN_OUTBOX', () => {
    const path = tempFile();
    writeFileSync(path, 'not a database '.repeat(100));
    expect(codeOf(() => new OutboxDb({ path }))).toBe('AFTERWARD_ERR_OUTBOX_NOT_AN_OUTBOX');
  });

  it('bad options are InvalidArgumentError at the call', () => {
    expect(codeOf(() => new OutboxDb({ path: '' }), InvalidArgumentError)).toBe(
      'AFTERWARD_ERR_INVALID_ARGUMENT',
    );
    expect(codeOf(() => new OutboxDb({ path: tempFile(), maxRows: -1 }), InvalidArgumentError)).toBe(
      'AFTERWARD_ERR_INVALID_ARGUMENT',
    );
  });
});
