import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OutboxDb, type NotificationJson } from '@afterward/sqlite';
import { EXIT, run } from '@afterward/cli';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  bin: { afterward: string };
};
const BIN = new URL(`../${pkg.bin.afterward}`, import.meta.url).pathname;

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanup.splice(0)) fn();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'afterward-cli-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the real `afterward` bin, as a user's shell would. */
function afterward(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started })),
  );
}

function n(key: string, origin: string, path = '/hook?token=secret'): NotificationJson {
  return {
    v: 1,
    key,
    id: `msg_${key}`,
    url: `${origin}${path}`,
    origin,
    method: 'POST',
    headers: [],
    body: null,
    confirm: 'response',
    keepBody: 0,
    timeout: { connect: 5_000, response: 10_000, total: 15_000 },
    retry: { attempts: 3, minDelay: 1_000, maxDelay: 60_000, factor: 2, maxRetryAfter: 3_600_000 },
    sign: false,
    attempts: 0,
    notBefore: 0,
    createdAt: Date.now() - 60_000,
  };
}

const NOW = Date.now();

/** An outbox file with five dead letters (a1..a3 on a.example, b1..b2 on b.example) and one pending row. */
async function outbox(): Promise<string> {
  const path = join(tempDir(), 'outbox.db');
  const db = new OutboxDb({ path });
  const keys = ['a1', 'a2', 'a3', 'b1', 'b2', 'live'];
  const first = keys.map((k) =>
    db.enqueue(n(k, k.startsWith('b') ? 'https://b.example' : 'https://a.example')),
  )[0]!;
  if (first.accepted) await first.persisted;
  db.bury('a1', {
    reason: 'failed',
    status: 500,
    errorCode: 'AFTERWARD_ERR_HTTP_STATUS',
    errorMessage: 'answered 500',
    attempts: 3,
    failedAt: NOW - 5 * 3_600_000,
  });
  db.bury('a2', {
    reason: 'failed',
    status: 410,
    errorCode: 'AFTERWARD_ERR_HTTP_STATUS',
    errorMessage: 'answered 410',
    attempts: 1,
    failedAt: NOW - 4_000,
  });
  db.bury('a3', {
    reason: 'failed',
    errorCode: 'AFTERWARD_ERR_NETWORK',
    errorMessage: 'ECONNREFUSED',
    attempts: 3,
    failedAt: NOW - 3_000,
  });
  db.bury('b1', { reason: 'dropped', errorCode: 'AFTERWARD_ERR_DROPPED', failedAt: NOW - 2_000 });
  db.bury('b2', {
    reason: 'failed',
    status: 500,
    errorCode: 'AFTERWARD_ERR_HTTP_STATUS',
    attempts: 3,
    failedAt: NOW - 1_000,
  });
  await db.close();
  return path;
}

function pendingKeys(path: string): string[] {
  const db = new OutboxDb({ path, create: false });
  try {
    return db
      .pendingPage(undefined, 100)
      .rows.map((r) => r.key)
      .sort();
  } finally {
    void db.close();
  }
}

describe('afterward dead list', () => {
  it('prints a readable table, newest first, with the URL reduced to its origin', async () => {
    const path = await outbox();
    const r = await afterward(['dead', 'list', '--sqlite', path]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+ORIGIN\s+STATUS\s+CODE\s+ATTEMPTS\s+FAILED AT\s+REASON$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([
      'msg_b2',
      'msg_b1',
      'msg_a3',
      'msg_a2',
      'msg_a1',
    ]);
    expect(lines[2]).toMatch(
      /msg_b1\s+https:\/\/b\.example\s+-\s+AFTERWARD_ERR_DROPPED\s+0\s+\S+Z\s+dropped/,
    );
    expect(r.stdout).not.toContain('secret');
  });

  it('filters by origin, status, code, since and until, and prints JSON with --json', async () => {
    const path = await outbox();
    const ids = async (...flags: string[]): Promise<string[]> => {
      const r = await afterward(['dead', 'list', '--sqlite', path, '--json', ...flags]);
      expect(r.code).toBe(0);
      return (JSON.parse(r.stdout) as Array<{ id: string }>).map((d) => d.id);
    };
    expect(await ids('--origin', 'https://a.example')).toEqual(['msg_a3', 'msg_a2', 'msg_a1']);
    expect(await ids('--status', '500')).toEqual(['msg_b2', 'msg_a1']);
    expect(await ids('--code', 'AFTERWARD_ERR_NETWORK')).toEqual(['msg_a3']);
    expect(await ids('--since', '1h')).toEqual(['msg_b2', 'msg_b1', 'msg_a3', 'msg_a2']);
    expect(await ids('--until', new Date(NOW - 3_600_000).toISOString())).toEqual(['msg_a1']);
    expect(await ids('--origin', 'https://a.example/any/path', '--status', '410')).toEqual(['msg_a2']);
  });

  it('says so when there are none; reads the file from AFTERWARD_SQLITE', async () => {
    const path = join(tempDir(), 'empty.db');
    await new OutboxDb({ path }).close();
    const r = await afterward(['dead', 'list'], { AFTERWARD_SQLITE: path });
    expect(r).toMatchObject({ code: 0, stdout: 'no dead letters\n', stderr: '' });
  });
});

describe('afterward dead show', () => {
  it('shows one dead letter by webhook id or key, the query hidden', async () => {
    const path = await outbox();
    const r = await afterward(['dead', 'show', '--sqlite', path, 'msg_a2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^id\s+msg_a2$/m);
    expect(r.stdout).toMatch(/^url\s+https:\/\/a\.example\/hook\?…$/m);
    expect(r.stdout).toMatch(/^status\s+410$/m);
    expect(r.stdout).toMatch(/^error\s+answered 410$/m);
    expect(r.stdout).not.toContain('secret');
    const json = await afterward(['dead', 'show', '--sqlite', path, 'a2', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: 'msg_a2', key: 'a2', attempts: 1, reason: 'failed' });
  });

  it('an unknown id exits 4 with a message', async () => {
    const path = await outbox();
    const r = await afterward(['dead', 'show', '--sqlite', path, 'nope']);
    expect(r.code).toBe(EXIT.unknownId);
    expect(r.stderr).toContain("no dead letter with id or key 'nope'");
    expect(r.stdout).toBe('');
  });
});

describe('afterward dead replay', () => {
  it('replays by id keeping the webhook id; a second replay cannot duplicate', async () => {
    const path = await outbox();
    const first = await afterward(['dead', 'replay', '--sqlite', path, 'msg_a1', 'b1']);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('replayed 2 dead letter(s)');
    expect(pendingKeys(path)).toEqual(['a1', 'b1', 'live']);
    const second = await afterward(['dead', 'replay', '--sqlite', path, 'msg_a1']);
    expect(second.code).toBe(EXIT.unknownId);
    expect(second.stderr).toContain('already replayed');
    expect(pendingKeys(path)).toEqual(['a1', 'b1', 'live']);
    const db = new OutboxDb({ path, create: false });
    const row = db.pendingPage('a0', 1).rows[0]!;
    expect(row).toMatchObject({ key: 'a1', id: 'msg_a1', attempts: 0 });
    await db.close();
  });

  it('--all with filters, --dry-run changes nothing, --rate spaces the replays', async () => {
    const path = await outbox();
    const dry = await afterward([
      'dead',
      'replay',
      '--sqlite',
      path,
      '--all',
      '--origin',
      'https://a.example',
      '--dry-run',
    ]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^would replay 3 dead letter\(s\)$/m);
    expect(dry.stdout).toContain('msg_a3');
    expect(pendingKeys(path)).toEqual(['live']);

    const rated = await afterward([
      'dead',
      'replay',
      '--sqlite',
      path,
      '--all',
      '--origin',
      'https://a.example',
      '--rate',
      '10/s',
    ]);
    expect(rated.code).toBe(0);
    expect(rated.stdout).toContain('replayed 3 dead letter(s)');
    // Three replays at 10/s: the third starts 200 ms after the first.
    expect(rated.ms).toBeGreaterThan(200);
    expect(pendingKeys(path)).toEqual(['a1', 'a2', 'a3', 'live']);
    const again = await afterward([
      'dead',
      'replay',
      '--sqlite',
      path,
      '--all',
      '--origin',
      'https://a.example',
    ]);
    expect(again.stdout).toContain('replayed 0 dead letter(s)');
  });

  it('draws a progress bar for a bulk replay on a terminal', async () => {
    const path = await outbox();
    let out = '';
    let err = '';
    const code = await run(['dead', 'replay', '--sqlite', path, '--all'], {
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: (t: string) => (err += t), isTTY: true },
      env: {},
    });
    expect(code).toBe(0);
    expect(out).toContain('replayed 5 dead letter(s)');
    expect(err).toContain('\rreplaying [');
    expect(err).toMatch(/\] 5\/5\n$/);
  });
});

describe('afterward dead purge and stats', () => {
  it('purges by filter, asks for --all to purge everything, and stats counts the file', async () => {
    const path = await outbox();
    const bare = await afterward(['dead', 'purge', '--sqlite', path]);
    expect(bare.code).toBe(EXIT.usage);
    expect(bare.stderr).toContain('--all');
    const dry = await afterward([
      'dead',
      'purge',
      '--sqlite',
      path,
      '--code',
      'AFTERWARD_ERR_HTTP_STATUS',
      '--dry-run',
    ]);
    expect(dry.stdout).toBe('would purge 3 dead letter(s)\n');
    const purged = await afterward([
      'dead',
      'purge',
      '--sqlite',
      path,
      '--code',
      'AFTERWARD_ERR_HTTP_STATUS',
    ]);
    expect(purged).toMatchObject({ code: 0, stdout: 'purged 3 dead letter(s)\n' });
    const stats = await afterward(['stats', '--sqlite', path, '--json']);
    expect(stats.code).toBe(0);
    const counts = JSON.parse(stats.stdout) as Record<string, number>;
    expect(counts).toMatchObject({ pending: 1, leased: 0, dead: 2 });
    expect(counts.fileBytes).toBeGreaterThan(0);
    const all = await afterward(['dead', 'purge', '--sqlite', path, '--all']);
    expect(all.stdout).toBe('purged 2 dead letter(s)\n');
    const text = await afterward(['stats', '--sqlite', path]);
    expect(text.stdout).toMatch(/^pending\s+1$/m);
    expect(text.stdout).toMatch(/^dead\s+0$/m);
  });
});

describe('errors and exit codes', () => {
  it('a missing file exits 3 and creates nothing; a missing directory too', async () => {
    const dir = tempDir();
    const r = await afterward(['stats', '--sqlite', join(dir, 'nope.db')]);
    expect(r.code).toBe(EXIT.noOutbox);
    expect(r.stderr).toBe(`afterward: outbox ${join(dir, 'nope.db')} does not exist\n`);
    expect(() => readFileSync(join(dir, 'nope.db'))).toThrow();
    const d = await afterward(['dead', 'list', '--sqlite', join(dir, 'no', 'x.db')]);
    expect(d.code).toBe(EXIT.noOutbox);
    expect(d.stderr).toContain('does not exist');
  });

  it('a file that is not an outbox exits 3', async () => {
    const path = join(tempDir(), 'junk.db');
    writeFileSync(path, 'junk '.repeat(200));
    const r = await afterward(['dead', 'list', '--sqlite', path]);
    expect(r.code).toBe(EXIT.noOutbox);
    expect(r.stderr).toContain('not a SQLite database');
  });

  it('a file another process keeps locked exits 5 on a write; reading still works', async () => {
    const path = await outbox();
    const holder = spawn(
      process.execPath,
      [
        '--no-warnings',
        '-e',
        `const { DatabaseSync } = require('node:sqlite');
         const db = new DatabaseSync(${JSON.stringify(path)});
         db.exec('BEGIN IMMEDIATE'); db.exec('UPDATE outbox_meta SET rows = rows');
         process.stdout.write('locked\\n'); setInterval(() => db.location(), 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanup.push(() => holder.kill('SIGKILL'));
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const list = await afterward(['dead', 'list', '--sqlite', path, '--json']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toHaveLength(5);
    const replay = await afterward(['dead', 'replay', '--sqlite', path, 'msg_a1'], {
      AFTERWARD_BUSY_TIMEOUT: '200',
    });
    expect(replay.code).toBe(EXIT.locked);
    expect(replay.stderr).toMatch(/locked by another connection/);
  });

  it('bad flags and commands exit 2 with a hint', async () => {
    const cases: string[][] = [
      ['dead', 'list', '--bogus'],
      ['dead', 'lst', '--sqlite', 'x.db'],
      ['frobnicate'],
      ['dead', 'list'],
      ['dead', 'list', '--sqlite', 'x.db', '--status', 'abc'],
      ['dead', 'list', '--sqlite', 'x.db', '--since', 'yesterday-ish'],
      ['dead', 'replay', '--sqlite', 'x.db', '--rate', 'fast'],
      ['dead', 'replay', '--sqlite', 'x.db'],
      ['dead', 'show', '--sqlite', 'x.db'],
    ];
    const path = await outbox();
    for (const args of cases) {
      const r = await afterward(args.map((a) => (a === 'x.db' ? path : a)));
      expect({ args, code: r.code }).toEqual({ args, code: EXIT.usage });
      expect(r.stderr).toContain("Run 'afterward --help' for usage.");
    }
    const help = await afterward(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('afterward dead replay');
    expect(help.stderr).toBe('');
  });
});
