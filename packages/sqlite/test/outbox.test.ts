import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createBatcher,
  createDispatcher,
  InvalidArgumentError,
  QueueFullError,
  type Dispatcher,
} from '@afterward/core';
import { createRecordingTransport } from '@afterward/core/testing';
import { OutboxDb, sqliteOutbox } from '@afterward/sqlite';
import { storeContract } from '../../core/test/store-contract.js';
import { startReceiver, waitUntil, type Receiver } from '../../../test/support/index.js';
import { child, tempFile } from './support.js';

const quiet = { warn: () => undefined, error: () => undefined };

// The reopen case closes its first store, then opens a second on the same file.
let lastPath = '';
storeContract(
  'sqlite',
  (limits) => {
    lastPath = tempFile();
    const store = sqliteOutbox({ path: lastPath });
    store.configure(limits);
    return store;
  },
  {
    reopen: (limits) => {
      const store = sqliteOutbox({ path: lastPath });
      store.configure(limits);
      return store;
    },
  },
);

const open: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const item of open.splice(0).reverse()) await item.close();
});

function track<T extends { close(): Promise<unknown> }>(item: T): T {
  open.push(item);
  return item;
}

async function receiver(): Promise<Receiver> {
  return track(await startReceiver());
}

function dispatcher(path: string, extra: Parameters<typeof createDispatcher>[0] = {}): Dispatcher {
  return track(
    createDispatcher({
      outbox: sqliteOutbox({ path, lease: 1_000, poll: 50 }),
      logger: quiet,
      retry: { attempts: 3, minDelay: 5, maxDelay: 20 },
      ...extra,
    }),
  );
}

describe('sqliteOutbox through the dispatcher', () => {
  it('persists at the group commit and removes a delivered row', async () => {
    const path = tempFile();
    const r = await receiver();
    const d = dispatcher(path);
    await d.ready;
    const handle = d.send(`${r.url}/hook`, { json: { n: 1 } });
    await handle.persisted;
    const db = new OutboxDb({ path, create: false });
    await r.waitFor(1);
    await waitUntil(() => db.stats().pending + db.stats().leased === 0, { message: 'row removed' });
    expect(d.stats().store).toMatchObject({ rows: 0, dead: 0 });
    expect(d.stats().store?.fileBytes).toBeGreaterThan(0);
    await db.close();
  });

  it('keeps undelivered rows at close() and delivers them after a restart, same webhook id', async () => {
    const path = tempFile();
    const r = await receiver();
    r.respondWith(() => undefined); // never answers: the attempt is in flight at close
    const first = createDispatcher({
      outbox: sqliteOutbox({ path }),
      logger: quiet,
      timeout: 60_000,
    });
    const handle = first.send(`${r.url}/hook`, { json: { n: 1 } });
    await handle.persisted;
    await r.waitFor(1);
    const closed = await first.close({ timeout: 50 });
    expect(closed).toMatchObject({ drained: false, kept: 1, cancelled: 0 });
    const firstId = r.requests[0]?.headers['webhook-id'];
    r.respondWith((_req, res) => void res.writeHead(204).end());
    const second = dispatcher(path);
    await second.ready;
    await r.waitFor(2);
    expect(r.requests[1]?.headers['webhook-id']).toBe(firstId);
    await waitUntil(() => second.stats().store?.rows === 0, { message: 'row removed after delivery' });
  });

  it('serialises at the group commit: rows settled before it are still written, then removed', async () => {
    const path = tempFile();
    const r = await receiver();
    r.respondWith((_req, res) => void res.writeHead(204).end());
    const d = dispatcher(path);
    await d.ready;
    const body = { text: 'x'.repeat(3_000) };
    const sent = Array.from({ length: 20 }, (_, n) => d.send(`${r.url}/hook`, { json: { ...body, n } }));
    // Settled in the same turn, before the commit that writes their rows.
    for (const handle of sent.slice(0, 10)) expect(handle.cancel()).toBe(true);
    await Promise.all(sent.map((handle) => handle.persisted));
    await r.waitFor(10);
    const db = track(new OutboxDb({ path, create: false }));
    await waitUntil(() => db.stats().pending + db.stats().leased === 0, { message: 'all rows removed' });
    expect(db.stats()).toMatchObject({ dead: 0, refused: 0 });
    expect(d.stats().store).toMatchObject({ rows: 0, dead: 0 });
    expect(
      r.requests.map((req) => (JSON.parse(req.body.toString()) as { n: number }).n).sort((a, b) => a - b),
    ).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  });

  it('removes delivered rows while a commit is always in flight (a steady stream of sends)', async () => {
    const path = tempFile();
    const transport = createRecordingTransport();
    const d = dispatcher(path, { transport });
    await d.ready;
    let rows: number | undefined;
    for (let n = 0; n < 300; n++) {
      // Sent as the previous commit is acknowledged: the next commit starts before that turn ends,
      // so one is always in flight. The completions of delivered rows must not wait for a pause.
      await d.send('https://hooks.example.com/orders', { json: { n } }).persisted;
      if (n === 299) rows = d.stats().store?.rows;
    }
    expect(transport.requests).toHaveLength(300);
    expect(rows).toBeLessThan(30);
    await waitUntil(() => d.stats().store?.rows === 0, { message: 'all rows removed' });
  });

  it('never waits for the file lock on the event loop: settling while another process holds it', async () => {
    const path = tempFile();
    const transport = createRecordingTransport();
    let answer!: () => void;
    const answered = new Promise<number>((resolve) => (answer = () => resolve(204)));
    transport.respondWith(() => answered);
    // Default lease and poll: no renewal or adoption falls in the window below.
    const d = track(createDispatcher({ outbox: sqliteOutbox({ path }), transport, logger: quiet }));
    await d.ready;
    await d.send('https://hooks.example.com/orders', { json: { n: 1 } }).persisted;
    await waitUntil(() => transport.requests.length === 1);
    const holder = child('hold-lock', path);
    await holder.next('locked');

    // The delivery settles while the lock is held: its row's deletion must wait off the loop.
    let last = performance.now();
    let longest = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 5);
    answer();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    holder.process.kill('SIGKILL');
    await holder.exited;
    clearInterval(ticker);
    // Blocked, the loop would have stood still for the whole 1.5 s the lock was held.
    expect(longest).toBeLessThan(750);
    await waitUntil(() => d.stats().store?.rows === 0, { message: 'row removed once the lock is free' });
  });

  it('keeps a row written at the group commit with its body intact across a restart', async () => {
    const path = tempFile();
    const r = await receiver();
    r.respondWith(() => undefined); // never answers: kept at close
    const first = createDispatcher({ outbox: sqliteOutbox({ path }), logger: quiet, timeout: 60_000 });
    const payload = { text: 'é'.repeat(1_000), n: 7 };
    await first.send(`${r.url}/hook`, { json: payload }).persisted;
    await first.close({ timeout: 10 });
    const db = track(new OutboxDb({ path, create: false }));
    const [row] = db.pendingPage(undefined, 10).rows;
    expect(JSON.parse(Buffer.from(row?.body ?? '', 'base64').toString())).toEqual(payload);
    expect(db.stats().pending).toBe(1);
  });

  it('turns a failed notification into a dead letter', async () => {
    const path = tempFile();
    const r = await receiver();
    r.respondWith((_req, res) => void res.writeHead(410).end());
    const d = dispatcher(path);
    d.send(`${r.url}/gone`, { json: { n: 1 } });
    await waitUntil(() => d.stats().failed === 1);
    await waitUntil(() => d.stats().store?.dead === 1, { message: 'dead letter written' });
    const db = track(new OutboxDb({ path, create: false }));
    const [dead] = db.listDead();
    expect(dead).toMatchObject({ reason: 'failed', status: 410, errorCode: 'AFTERWARD_ERR_HTTP_STATUS' });
  });

  it('records attempts and backoff, kept across a restart', async () => {
    const path = tempFile();
    const r = await receiver();
    // A Retry-After sets the backoff exactly: a computed one is full jitter over [0, maxDelay], so
    // 1 run in 60 drew less than a second and the assertion below failed (or retried before close).
    r.respondWith((_req, res) => void res.writeHead(503, { 'retry-after': '60' }).end());
    const first = createDispatcher({
      outbox: sqliteOutbox({ path }),
      logger: quiet,
      retry: { attempts: 5, minDelay: 60_000, maxDelay: 60_000, maxRetryAfter: 60_000 },
    });
    const sentAt = Date.now();
    first.send(`${r.url}/later`, { json: { n: 1 } });
    await r.waitFor(1);
    await waitUntil(() => first.stats().retries === 1);
    const { kept } = await first.close({ timeout: 10 });
    expect(kept).toBe(1);
    const db = track(new OutboxDb({ path, create: false }));
    const [row] = db.pendingPage(undefined, 10).rows;
    expect(row?.attempts).toBe(1);
    expect(row?.notBefore).toBeGreaterThanOrEqual(sentAt + 60_000);
    expect(row?.notBefore).toBeLessThanOrEqual(Date.now() + 60_000);
  });

  it('bounds at the call: reject by default, drop-newest counted, drop-oldest refused', async () => {
    const path = tempFile();
    const r = await receiver();
    r.respondWith(() => undefined);
    const d = dispatcher(path, { maxQueued: 1, timeout: 60_000 });
    d.send(`${r.url}/a`, { json: 1 });
    expect(() => d.send(`${r.url}/b`, { json: 2 })).toThrow(QueueFullError);
    const e = dispatcher(tempFile(), { maxQueued: 1, overflow: 'drop-newest', timeout: 60_000 });
    e.send(`${r.url}/a`, { json: 1 });
    expect(e.send(`${r.url}/b`, { json: 2 }).state).toBe('dropped');
    expect(e.stats().dropped).toBe(1);
    expect(() =>
      createDispatcher({ outbox: sqliteOutbox({ path: tempFile() }), overflow: 'drop-oldest' }),
    ).toThrow(InvalidArgumentError);
    await d.close({ timeout: 0 });
    await e.close({ timeout: 0 });
  });

  it('picks up a row replayed by another connection while running (dataVersion poll)', async () => {
    const path = tempFile();
    const r = await receiver();
    r.respondWith((_req, res) => void res.writeHead(r.requests.length === 1 ? 410 : 204).end());
    const d = dispatcher(path);
    d.send(`${r.url}/x`, { json: { n: 1 } });
    await waitUntil(() => d.stats().store?.dead === 1, { message: 'dead letter' });
    const admin = track(new OutboxDb({ path, create: false }));
    const [dead] = admin.listDead();
    expect(admin.replayDead(dead!.id)).toBe(true);
    await r.waitFor(2);
    expect(r.requests[1]?.headers['webhook-id']).toBe(r.requests[0]?.headers['webhook-id']);
  });
});

describe('batches through the outbox (issue 15, thirteenth pass)', () => {
  it("writes each batch into a new buffer, never a settled batch's (the store writes behind), and every batch arrives intact", async () => {
    const r = await receiver();
    const d = dispatcher(tempFile());
    await d.ready;
    const batcher = track(createBatcher(d, { url: r.url, maxItems: 100, maxWaitMs: 60_000 }));
    const pad = 'o'.repeat(1_000);
    const send = async (round: number): Promise<void> => {
      const handles = Array.from({ length: 100 }, (_, i) => batcher.add({ round, i, pad }));
      await Promise.all(handles.map((h) => h.done));
      expect(handles.every((h) => h.state === 'delivered')).toBe(true);
    };
    // The buffer grows to its size in the first batches.
    for (let round = 0; round < 3; round++) await send(round);
    const allocate = vi.spyOn(Buffer, 'allocUnsafeSlow');
    let made: number;
    try {
      for (let round = 3; round < 13; round++) await send(round);
      made = allocate.mock.calls.filter(([size]) => size >= 64 * 1024).length;
    } finally {
      allocate.mockRestore();
    }
    // With the memory store, a settled batch's buffer is written into again (at most 1 new one).
    expect(made).toBeGreaterThanOrEqual(10);
    await r.waitFor(13);
    const expected = Array.from({ length: 13 }, (_, round) =>
      JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ round, i, pad }))),
    );
    expect(r.requests.map((q) => q.body.toString('utf8')).sort()).toEqual(expected.sort());
  });
});
