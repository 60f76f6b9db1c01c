import { execFile } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import net, { type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { cleanupScope, startReceiver, waitUntil, type Receiver } from '../../../test/support/index.js';
import {
  addJson,
  addUnobserved,
  createBatcher,
  stageInto,
  staged,
  writeStage,
  type Batcher,
  type BatchRoom,
  type BatchSink,
  type BatchStage,
} from '../src/batch/batcher.js';
import { createDispatcher, type Dispatcher } from '../src/dispatcher/dispatcher.js';
import {
  CancelledError,
  ClosedError,
  DroppedError,
  HttpStatusError,
  InvalidArgumentError,
} from '../src/util/errors.js';
import type { DeliveryEvent } from '../src/dispatcher/events.js';
import type { Logger } from '../src/util/logger.js';
import { createTestDispatcher } from '../src/testing.js';

const URL_ = 'http://batch.test/ingest';
const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const quiet: Logger = { warn: () => {}, error: () => {} };

const { cleanups: cleanup } = cleanupScope();

function testDispatcher(): ReturnType<typeof createTestDispatcher> {
  const made = createTestDispatcher({ logger: quiet });
  cleanup.push(() => made.dispatcher.close({ timeout: 1_000 }));
  return made;
}

async function receiver(handler?: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const r = await startReceiver(handler);
  cleanup.push(() => r.close());
  return r;
}

function realDispatcher(): Dispatcher {
  const dispatcher = createDispatcher({ logger: quiet, retry: { minDelay: 5, maxDelay: 20 } });
  cleanup.push(() => dispatcher.close({ timeout: 2_000 }));
  return dispatcher;
}

describe('createBatcher', () => {
  it('combines items into one JSON array request once maxItems is reached', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 3, maxWaitMs: 60_000 });
    const handles = [1, 2, 3, 4].map((n) => batcher.add({ n }));
    await handles[2]?.done;
    expect(transport.requests).toHaveLength(1);
    const [request] = transport.requests;
    expect(request?.json()).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(request?.headers['content-type']).toBe('application/json');
    expect(request?.headers['idempotency-key']).toBe(request?.id);
    expect(handles.slice(0, 3).map((h) => h.state)).toEqual(['delivered', 'delivered', 'delivered']);
    expect(handles[3]?.state).toBe('pending');
    expect(batcher.pending()).toBe(1);
    expect(new Set(handles.map((h) => h.id)).size).toBe(4);
    expect(handles.map((h) => h.id)).not.toContain(request?.id);
  });

  it('sends a partial batch once maxWaitMs has passed', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxWaitMs: 100 });
    const started = performance.now();
    const a = batcher.add('a');
    batcher.add('b');
    expect(transport.requests).toHaveLength(0);
    const result = await a.done;
    expect(result.state).toBe('delivered');
    expect(performance.now() - started).toBeGreaterThanOrEqual(90);
    expect(transport.requests.map((r) => r.json())).toEqual([['a', 'b']]);
  });

  it('keeps every body within maxBytes, starting a new batch when the next item would overflow', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxBytes: 64, maxWaitMs: 60_000 });
    const items = Array.from({ length: 10 }, (_, i) => ({ item: i, pad: 'xxxxx' }));
    const handles = items.map((item) => batcher.add(item));
    await dispatcher.drain();
    expect(handles.every((h) => h.state === 'delivered')).toBe(true);
    expect(transport.requests.length).toBeGreaterThan(2);
    for (const request of transport.requests) expect(request.body?.length).toBeLessThanOrEqual(64);
    expect(transport.requests.flatMap((r) => r.json<unknown[]>())).toEqual(items);
  });

  it('fills each batch up to maxBytes by exact UTF-8 size, multi-byte characters included', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxBytes: 100, maxWaitMs: 60_000 });
    // 'a' x 20: 22 bytes of JSON; 'é' x 10: 12 UTF-16 units but 22 bytes. Plus one separator each
    // and the brackets, four fit in 100 bytes and a fifth does not.
    const items = [
      ...Array.from({ length: 5 }, () => 'a'.repeat(20)),
      ...Array.from({ length: 5 }, () => 'é'.repeat(10)),
    ];
    for (const item of items) batcher.add(item);
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json<unknown[]>().length)).toEqual([4, 4, 2]);
    expect(transport.requests.map((r) => r.body?.length)).toEqual([93, 93, 47]);
    expect(transport.requests.flatMap((r) => r.json<unknown[]>())).toEqual(items);
  });

  it('sends NDJSON when asked, with its content type', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, format: 'ndjson', maxItems: 2 });
    batcher.add({ a: 1 });
    await batcher.add({ b: 'two\nlines' }).done;
    const [request] = transport.requests;
    expect(request?.headers['content-type']).toBe('application/x-ndjson');
    expect(request?.text()).toBe('{"a":1}\n{"b":"two\\nlines"}\n');
  });

  it('keeps a content type and the other init given by the user', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, {
      url: URL_,
      init: { headers: { 'content-type': 'application/vnd.audit+json', 'x-tenant': 't1' }, query: { v: 2 } },
      maxItems: 1,
    });
    await batcher.add(1).done;
    const [request] = transport.requests;
    expect(request?.headers['content-type']).toBe('application/vnd.audit+json');
    expect(request?.headers['x-tenant']).toBe('t1');
    expect(request?.url).toBe(`${URL_}?v=2`);
    expect(batcher.url).toBe(`${URL_}?v=2`);
  });

  it('retries a batch under one idempotency id and settles every item with its outcome', async () => {
    const { dispatcher, transport } = testDispatcher();
    let calls = 0;
    transport.respondWith(() => (++calls <= 2 ? 503 : 204));
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 2 });
    const retries: number[] = [];
    dispatcher.on('retry', ({ attempt }) => retries.push(attempt));
    const a = batcher.add('a');
    const b = batcher.add('b');
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(transport.requests).toHaveLength(3);
    expect(new Set(transport.requests.map((r) => r.headers['idempotency-key'])).size).toBe(1);
    expect(retries).toEqual([1, 2]);
    expect(ra).toMatchObject({ state: 'delivered', attempts: 3, error: undefined });
    expect(rb).toMatchObject({ state: 'delivered', attempts: 3 });
    expect(b.response?.status).toBe(204);
  });

  it('shows a retrying batch on its items', async () => {
    const { dispatcher, transport } = testDispatcher();
    let calls = 0;
    transport.respondWith(() => (++calls === 1 ? 500 : 204));
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 1 });
    let seen: string | undefined;
    dispatcher.on('retry', () => queueMicrotask(() => (seen = handle.state)));
    const handle = batcher.add('x');
    await handle.done;
    expect(seen).toBe('retrying');
  });

  it('shows a batch in flight on its items: queued, then sending, then its outcome', async () => {
    const { dispatcher, transport } = testDispatcher();
    let answer: (status: number) => void = () => undefined;
    transport.respondWith(() => new Promise<number>((resolve) => (answer = resolve)));
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 2 });
    const handles = [batcher.add(1), batcher.add(2)];
    expect(handles.map((h) => h.state)).toEqual(['queued', 'queued']);
    await waitUntil(() => transport.requests.length === 1, { message: 'the batch never left' });
    expect(handles.map((h) => [h.state, h.attempts])).toEqual([
      ['sending', 1],
      ['sending', 1],
    ]);
    answer(204);
    const results = await Promise.all(handles.map((h) => h.done));
    expect(results.map((r) => [r.state, r.attempts])).toEqual([
      ['delivered', 1],
      ['delivered', 1],
    ]);
  });

  it('fails every item of a batch that fails', async () => {
    const { dispatcher, transport } = testDispatcher();
    transport.respondWith(400);
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 2 });
    const handles = [batcher.add(1), batcher.add(2)];
    const results = await Promise.all(handles.map((h) => h.done));
    for (const result of results) {
      expect(result.state).toBe('failed');
      expect(result.error).toBeInstanceOf(HttpStatusError);
      expect(result.response?.status).toBe(400);
    }
  });

  it('splits a batch the receiver refuses with 413 into halves, down to single items', async () => {
    const r = await receiver((req, res) => {
      res.statusCode = req.json<unknown[]>().length > 2 ? 413 : 204;
      res.end();
    });
    const dispatcher = realDispatcher();
    const batcher = createBatcher(dispatcher, { url: r.url, maxItems: 8 });
    const handles = Array.from({ length: 8 }, (_, i) => batcher.add({ i }));
    const results = await Promise.all(handles.map((h) => h.done));
    expect(results.map((x) => x.state)).toEqual(Array(8).fill('delivered'));
    expect(r.requests.map((q) => q.json<unknown[]>().length)).toEqual([8, 4, 4, 2, 2, 2, 2]);
    const delivered = r.requests.filter((q) => q.json<unknown[]>().length <= 2);
    const seen = delivered.flatMap((q) => q.json<Array<{ i: number }>>()).map((x) => x.i);
    expect(seen.sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(r.requests.map((q) => q.headers['idempotency-key'])).size).toBe(7);
    expect(results[0]?.attempts).toBe(3);
  });

  it('fails a single item still refused with 413', async () => {
    const r = await receiver((_req, res) => {
      res.statusCode = 413;
      res.end();
    });
    const batcher = createBatcher(realDispatcher(), { url: r.url, maxItems: 2 });
    const [a, b] = [batcher.add('a'), batcher.add('b')];
    const results = await Promise.all([a.done, b.done]);
    expect(results.map((x) => x.state)).toEqual(['failed', 'failed']);
    expect((results[0]?.error as HttpStatusError).status).toBe(413);
    expect(r.requests).toHaveLength(3);
  });

  it('loses nothing when the receiver fails twice and then recovers', async () => {
    let calls = 0;
    const r = await receiver((_req, res) => {
      res.statusCode = ++calls <= 2 ? 503 : 204;
      res.end();
    });
    const batcher = createBatcher(realDispatcher(), { url: r.url, maxItems: 5, maxWaitMs: 20 });
    const handles = Array.from({ length: 12 }, (_, i) => batcher.add({ seq: i }));
    const results = await Promise.all(handles.map((h) => h.done));
    expect(results.every((x) => x.state === 'delivered')).toBe(true);
    const accepted = new Set<number>();
    for (const q of r.requests.slice(2))
      for (const x of q.json<Array<{ seq: number }>>()) accepted.add(x.seq);
    expect([...accepted].sort((x, y) => x - y)).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });

  it('is flushed by drain() and by close()', async () => {
    const { dispatcher, transport } = createTestDispatcher({ logger: quiet });
    const batcher = createBatcher(dispatcher, { url: URL_, maxWaitMs: 60_000 });
    const a = batcher.add('a');
    const { drained } = await dispatcher.drain({ timeout: 5_000 });
    expect(drained).toBe(true);
    expect(a.state).toBe('delivered');
    const b = batcher.add('b');
    const closed = await dispatcher.close({ timeout: 5_000 });
    expect(closed.drained).toBe(true);
    expect(b.state).toBe('delivered');
    expect(transport.requests.map((q) => q.json())).toEqual([['a'], ['b']]);
    expect(() => batcher.add('late')).toThrow(ClosedError);
  });

  it('close() flushes to a real receiver before the process may exit', async () => {
    const r = await receiver();
    const dispatcher = createDispatcher({ logger: quiet });
    const batcher = createBatcher(dispatcher, { url: r.url, maxWaitMs: 60_000, format: 'ndjson' });
    for (let i = 0; i < 3; i++) batcher.add({ i });
    await dispatcher.close();
    expect(r.requests).toHaveLength(1);
    expect(r.requests[0]?.body.toString()).toBe('{"i":0}\n{"i":1}\n{"i":2}\n');
    expect(batcher.pending()).toBe(0);
  });

  it('drops items past maxPending, counted and evented by the dispatcher', async () => {
    const { dispatcher, transport } = testDispatcher();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    transport.respondWith(async () => {
      await gate;
      return 204;
    });
    const dropped: DeliveryEvent[] = [];
    dispatcher.on('dropped', (event) => dropped.push(event));
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 2, maxPending: 3 });
    const handles = [1, 2, 3, 4].map((n) => batcher.add(n));
    expect(handles[3]?.state).toBe('dropped');
    expect(handles[3]?.error).toBeInstanceOf(DroppedError);
    expect(dropped.map((e) => e.handle)).toEqual([handles[3]]);
    expect(dispatcher.stats().dropped).toBe(1);
    release();
    await dispatcher.drain();
    expect(handles.slice(0, 3).map((h) => h.state)).toEqual(['delivered', 'delivered', 'delivered']);
  });

  it('takes a held item out on cancel() or an aborted signal, but not once its batch left', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 3, maxWaitMs: 60_000 });
    const controller = new AbortController();
    const a = batcher.add('a');
    const b = batcher.add('b', { signal: controller.signal });
    expect(a.cancel('changed my mind')).toBe(true);
    controller.abort('gone');
    expect(a.state).toBe('cancelled');
    expect(b.error).toBeInstanceOf(CancelledError);
    expect(batcher.pending()).toBe(0);
    const pre = batcher.add('x', { signal: AbortSignal.abort() });
    expect(pre.state).toBe('cancelled');
    const c = batcher.add('c');
    batcher.flush();
    expect(c.cancel()).toBe(false);
    await c.done;
    expect(transport.requests.map((q) => q.json())).toEqual([['c']]);
  });

  it('throws at the call on what can never be sent', () => {
    const { dispatcher } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxBytes: 32 });
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(() => batcher.add(circular)).toThrow(InvalidArgumentError);
    expect(() => batcher.add({ n: 1n })).toThrow(InvalidArgumentError);
    expect(() => batcher.add(undefined)).toThrow(InvalidArgumentError);
    expect(() => batcher.add('x'.repeat(40))).toThrow(/cannot fit/);
    expect(() => batcher.add(1, { signal: 'no' as unknown as AbortSignal })).toThrow(InvalidArgumentError);
    expect(batcher.pending()).toBe(0);
    expect(() => createBatcher(dispatcher, { url: 'ftp://x' })).toThrow(InvalidArgumentError);
    expect(() => createBatcher(dispatcher, { url: URL_, init: { method: 'GET' } })).toThrow(/GET/);
    expect(() => createBatcher(dispatcher, { url: URL_, init: { json: 1 } as never })).toThrow(/json/);
    expect(() => createBatcher(dispatcher, { url: URL_, format: 'csv' as never })).toThrow(/format/);
    expect(() => createBatcher(dispatcher, { url: URL_, maxItems: 0 })).toThrow(/maxItems/);
    expect(() => createBatcher(dispatcher, { url: URL_, maxitems: 5 } as never)).toThrow(
      InvalidArgumentError,
    );
    expect(() => createBatcher({} as Dispatcher, { url: URL_ })).toThrow(/createDispatcher/);
  });
});

describe('addJson (issue 15: audit records held as UTF-8, off the JS heap)', () => {
  it('sends up to 500 items per batch by default (issue 15: each batch request costs about 0.5 ms of CPU)', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_ });
    for (let i = 0; i < 1_001; i++) addJson(batcher, String(i));
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json<unknown[]>().length)).toEqual([500, 500, 1]);
  });

  it('holds serialised items in arrival order with the other items, in both formats', async () => {
    for (const format of ['json', 'ndjson'] as const) {
      const { dispatcher, transport } = testDispatcher();
      const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 4, maxWaitMs: 60_000, format });
      addJson(batcher, '{"n":1}');
      batcher.add({ n: 2 });
      addUnobserved(batcher, { n: 3 });
      expect(batcher.pending()).toBe(3);
      addJson(batcher, '{"n":"é\\u0000😀"}');
      await dispatcher.drain();
      const body = transport.requests[0]?.body?.toString('utf8');
      expect(body).toBe(
        format === 'json'
          ? '[{"n":1},{"n":2},{"n":3},{"n":"é\\u0000😀"}]'
          : '{"n":1}\n{"n":2}\n{"n":3}\n{"n":"é\\u0000😀"}\n',
      );
    }
  });

  it('fills each batch up to maxBytes by exact UTF-8 size', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxBytes: 64, maxWaitMs: 60_000 });
    // 23 bytes of UTF-8 each (22 UTF-16 units): two fit in 64 bytes with brackets and commas, three do not.
    const items = Array.from({ length: 10 }, (_, i) => JSON.stringify({ item: i, pad: 'xéx' }));
    for (const item of items) addJson(batcher, item);
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json<unknown[]>().length)).toEqual([2, 2, 2, 2, 2]);
    for (const request of transport.requests) expect(request.body?.length).toBeLessThanOrEqual(64);
    expect(transport.requests.flatMap((r) => r.json<unknown[]>())).toEqual(
      items.map((i): unknown => JSON.parse(i)),
    );
  });

  it('refuses an item that could never fit in a batch, and keeps the held ones intact', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxBytes: 64, maxWaitMs: 60_000 });
    addJson(batcher, JSON.stringify('a'.repeat(40)));
    expect(() => addJson(batcher, JSON.stringify('b'.repeat(100)))).toThrow(InvalidArgumentError);
    expect(() => batcher.add('c'.repeat(100))).toThrow(InvalidArgumentError);
    expect(batcher.pending()).toBe(1);
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json())).toEqual([['a'.repeat(40)]]);
  });

  it('sends and retries a batch with the body it left with, whatever is added after it', async () => {
    let calls = 0;
    const r = await receiver((_req, res) => {
      res.statusCode = calls++ === 0 ? 503 : 204;
      res.end();
    });
    const batcher = createBatcher(realDispatcher(), { url: r.url, maxItems: 2 });
    // Large enough that the batch takes the batcher's buffer with it rather than a copy.
    const first = [
      JSON.stringify(`first-${'x'.repeat(1_500)}`),
      JSON.stringify(`second-${'y'.repeat(1_500)}`),
    ];
    for (const item of first) addJson(batcher, item);
    // Written while the first batch waits for its first attempt and its retry.
    for (let i = 0; i < 50; i++) addJson(batcher, JSON.stringify(`later-${i}-${'z'.repeat(1_500)}`));
    await waitUntil(() => batcher.pending() === 0, { message: 'every batch settled' });
    const bodies = r.requests.map((q) => q.body.toString('utf8'));
    const sent = `[${first.join(',')}]`;
    expect(bodies.filter((b) => b.includes('first-'))).toEqual([sent, sent]);
    expect(bodies.filter((b) => !b.includes('first-'))).toHaveLength(25);
    for (const body of bodies) expect(() => JSON.parse(body) as unknown).not.toThrow();
  });

  it('drops items past maxPending, counted by the dispatcher', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxPending: 2, maxWaitMs: 60_000 });
    for (let i = 0; i < 3; i++) addJson(batcher, String(i));
    expect(batcher.pending()).toBe(2);
    expect(dispatcher.stats().dropped).toBe(1);
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json())).toEqual([[0, 1]]);
  });

  it('cuts a cancelled item out of the held body, between unobserved ones', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 10, maxWaitMs: 60_000 });
    addJson(batcher, '"a"');
    const b = batcher.add('bb');
    addJson(batcher, '"c"');
    const d = batcher.add('d');
    expect(b.cancel()).toBe(true);
    addJson(batcher, '"e"');
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json())).toEqual([['a', 'c', 'd', 'e']]);
    expect((await d.done).state).toBe('delivered');
  });

  it('splits a mixed batch on 413 and settles each handle with the half that carried it', async () => {
    const r = await receiver((req, res) => {
      res.statusCode = req.body.toString('utf8').trim().split('\n').length > 2 ? 413 : 204;
      res.end();
    });
    const batcher = createBatcher(realDispatcher(), { url: r.url, maxItems: 6, format: 'ndjson' });
    addJson(batcher, '{"i":0}');
    const one = batcher.add({ i: 1 });
    addJson(batcher, '{"i":2}');
    addJson(batcher, '{"i":3}');
    addJson(batcher, '{"i":4}');
    const five = batcher.add({ i: 5 });
    expect((await one.done).state).toBe('delivered');
    expect((await five.done).state).toBe('delivered');
    await waitUntil(() => batcher.pending() === 0, { message: 'the split batches settled' });
    const lines = (q: { body: Buffer }) => q.body.toString('utf8');
    // The halves of a split go concurrently: their order of arrival is not fixed.
    expect(r.requests.map(lines).sort()).toEqual(
      [
        '{"i":0}\n{"i":1}\n{"i":2}\n{"i":3}\n{"i":4}\n{"i":5}\n',
        '{"i":0}\n{"i":1}\n{"i":2}\n',
        '{"i":3}\n{"i":4}\n{"i":5}\n',
        '{"i":0}\n{"i":1}\n',
        '{"i":2}\n',
        '{"i":3}\n{"i":4}\n',
        '{"i":5}\n',
      ].sort(),
    );
    expect(one.attempts).toBe(3);
    expect(five.attempts).toBe(3);
  });
});

/** A stage of plain strings, kept until the batcher writes them (an audit log keeps columns). */
class TestStage implements BatchStage {
  readonly kept: string[] = [];
  get size(): number {
    return this.kept.length;
  }
  write(sink: BatchSink): void {
    for (const json of this.kept.splice(0)) sink.take(json);
  }
  /** What an audit log does per record: staged(), keep it, write the stage when due. */
  add(batcher: Batcher, json: string, full = 64): void {
    const due = staged(batcher);
    this.kept.push(json);
    if (due || this.kept.length === full) writeStage(batcher);
  }
}

/**
 * A stage of ASCII JSON strings written in place through rooms, as an audit log writes its rows:
 * each asks for room for `slack` bytes more than it is (an audit record's room is an upper bound).
 */
class RoomStage implements BatchStage {
  readonly kept: string[] = [];
  constructor(readonly slack = 0) {}
  get size(): number {
    return this.kept.length;
  }
  write(sink: BatchSink): void {
    let room: BatchRoom | undefined;
    for (const json of this.kept.splice(0)) {
      const bytes = json.length + this.slack;
      if (room === undefined || room.left === 0 || room.at + bytes + 1 > room.end) {
        if (room !== undefined) sink.close();
        room = sink.open(bytes);
        if (room === undefined) {
          sink.take(json);
          continue;
        }
      }
      writeItem(room, json);
    }
    if (room !== undefined) sink.close();
  }
}

/** Writes an ASCII item into `room` as an audit log writes a row. */
function writeItem(room: BatchRoom | undefined, json: string): void {
  if (room === undefined) throw new Error('a small item fits');
  const end = room.at + room.buf.write(json, room.at, 'latin1');
  room.buf[end] = room.separator;
  room.ends.push(end);
  room.at = end + 1;
  room.left--;
}

/** A batcher whose stage holds one item, written by `write` at the next flush; its requests' bodies. */
async function writtenOnce(write: (sink: BatchSink) => void): Promise<string[]> {
  const { dispatcher, transport } = testDispatcher();
  const batcher = createBatcher(dispatcher, { url: URL_, maxWaitMs: 60_000 });
  let size = 1;
  stageInto(batcher, {
    get size() {
      return size;
    },
    write(sink) {
      size = 0;
      write(sink);
    },
  });
  batcher.flush();
  await dispatcher.drain();
  return transport.requests.map((r) => r.text());
}

describe('BatchSink rooms (issue 15: a stage writes many items per room)', () => {
  function staging(
    options: { maxItems?: number; maxBytes?: number; maxPending?: number; format?: 'ndjson' },
    slack = 0,
  ) {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxWaitMs: 60_000, ...options });
    const stage = new RoomStage(slack);
    stageInto(batcher, stage);
    return { dispatcher, transport, batcher, stage };
  }

  it('holds the items after those held before, and splits them into batches at maxItems', async () => {
    const { dispatcher, transport, batcher, stage } = staging({ maxItems: 3 });
    addJson(batcher, '"held"');
    for (let i = 0; i < 9; i++) stage.kept.push(String(i));
    writeStage(batcher);
    expect(batcher.pending()).toBe(10);
    batcher.flush();
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json())).toEqual([['held', 0, 1], [2, 3, 4], [5, 6, 7], [8]]);
  });

  it('fills each batch to maxBytes by the exact size written, though each item asks room for more', async () => {
    // '"aaaa"' is 6 bytes: two fit in 20 ('[' + 6 + ',' + 6 + ']'), three do not; each asks for 16.
    const { dispatcher, transport, batcher, stage } = staging({ maxBytes: 20 }, 10);
    for (let i = 0; i < 5; i++) stage.kept.push('"aaaa"');
    batcher.flush();
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.text())).toEqual([
      '["aaaa","aaaa"]',
      '["aaaa","aaaa"]',
      '["aaaa"]',
    ]);
  });

  it('gives no room past maxBytes: the item goes to take(), which measures it exactly', async () => {
    const { dispatcher, transport, batcher, stage } = staging({ maxBytes: 20 }, 30);
    stage.kept.push('"x"');
    batcher.flush();
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.text())).toEqual(['["x"]']);
    stage.kept.push(`"${'x'.repeat(20)}"`);
    expect(() => batcher.flush()).toThrow(InvalidArgumentError);
    expect(batcher.pending()).toBe(0);
  });

  it('drops the items past maxPending, counted by the dispatcher, as take() does', async () => {
    const { dispatcher, transport, batcher, stage } = staging({ maxPending: 2 });
    for (let i = 0; i < 4; i++) stage.kept.push(String(i));
    batcher.flush();
    expect(dispatcher.stats().dropped).toBe(2);
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json())).toEqual([[0, 1]]);
  });

  it('separates NDJSON items by newlines', async () => {
    const { dispatcher, transport, batcher, stage } = staging({ format: 'ndjson' });
    stage.kept.push('{"i":0}', '{"i":1}');
    batcher.flush();
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.text())).toEqual(['{"i":0}\n{"i":1}\n']);
  });

  it('holds the items of a room left open when the next is opened', async () => {
    const bodies = await writtenOnce((sink) => {
      writeItem(sink.open(8), '1');
      writeItem(sink.open(8), '2');
      sink.close();
    });
    expect(bodies).toEqual(['[1,2]']);
  });

  it('never holds an item written but not pushed, and a close() with no room open does nothing', async () => {
    const bodies = await writtenOnce((sink) => {
      const room = sink.open(16);
      if (room === undefined) throw new Error('a 16-byte item fits');
      room.at += room.buf.write('"half', room.at, 'latin1');
      sink.close();
      sink.close();
      sink.take('"whole"');
    });
    expect(bodies).toEqual(['["whole"]']);
  });
});

describe('stageInto (issue 15: audit records made into JSON 64 at a time, not at each close)', () => {
  it('writes staged items at the flush, after the held ones, and counts them as pending', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxWaitMs: 60_000 });
    const stage = new TestStage();
    stageInto(batcher, stage);
    addJson(batcher, '"held"');
    stage.add(batcher, '"a"');
    stage.add(batcher, '"b"');
    expect(stage.size).toBe(2);
    expect(batcher.pending()).toBe(3);
    batcher.flush();
    expect(stage.size).toBe(0);
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json())).toEqual([['held', 'a', 'b']]);
  });

  it('sends the batch once held and staged items reach maxItems, the rest in the next batch', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 3, maxWaitMs: 60_000 });
    const stage = new TestStage();
    stageInto(batcher, stage);
    addJson(batcher, '0');
    stage.add(batcher, '1');
    expect(batcher.pending()).toBe(2);
    stage.add(batcher, '2');
    await waitUntil(() => transport.requests.length === 1, { message: 'the full batch left' });
    expect(transport.requests[0]?.json()).toEqual([0, 1, 2]);
    // A stage written in one go past maxItems (its own limit reached first) splits into batches.
    for (let i = 3; i < 10; i++) stage.kept.push(String(i));
    writeStage(batcher);
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json())).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);
  });

  it('sends staged items once maxWaitMs has passed, with no other item held', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxWaitMs: 30 });
    const stage = new TestStage();
    stageInto(batcher, stage);
    stage.add(batcher, '"late"');
    await waitUntil(() => transport.requests.length === 1, { message: 'the timer sent the staged item' });
    expect(transport.requests[0]?.json()).toEqual(['late']);
    await waitUntil(() => batcher.pending() === 0, { message: 'the batch settled' });
  });

  it('is written by drain() and by close(), and refuses items once closed, as add() does', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxWaitMs: 60_000 });
    const stage = new TestStage();
    stageInto(batcher, stage);
    stage.add(batcher, '1');
    expect(await dispatcher.drain({ timeout: 1_000 })).toEqual({ drained: true, pending: 0 });
    expect(transport.requests.map((r) => r.json())).toEqual([[1]]);
    stage.add(batcher, '2');
    await batcher.close();
    expect(transport.requests.map((r) => r.json())).toEqual([[1], [2]]);
    expect(() => staged(batcher)).toThrow(ClosedError);
  });

  it('drops staged items past maxPending when they are written, counted by the dispatcher', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxPending: 2, maxWaitMs: 60_000 });
    const stage = new TestStage();
    stageInto(batcher, stage);
    for (let i = 0; i < 3; i++) stage.add(batcher, String(i));
    expect(dispatcher.stats().dropped).toBe(0);
    batcher.flush();
    expect(dispatcher.stats().dropped).toBe(1);
    await dispatcher.drain();
    expect(transport.requests.map((r) => r.json())).toEqual([[0, 1]]);
  });

  it('takes one stage per batcher, and only a batcher of createBatcher()', () => {
    const { dispatcher } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_ });
    const stage = new TestStage();
    stageInto(batcher, stage);
    stageInto(batcher, stage);
    expect(() => stageInto(batcher, new TestStage())).toThrow(InvalidArgumentError);
    const other = { url: URL_, add: () => undefined, flush: () => undefined, pending: () => 0 };
    expect(() => stageInto(other as unknown as Batcher, stage)).toThrow(/createBatcher/);
  });
});

describe('Batcher.close() (issue 11)', () => {
  it('sends the partial batch to a real receiver and resolves once it settled', async () => {
    const r = await receiver();
    const dispatcher = realDispatcher();
    const batcher = createBatcher(dispatcher, { url: r.url, maxItems: 100, maxWaitMs: 60_000 });
    const handles = [batcher.add({ n: 1 }), batcher.add({ n: 2 })];
    await batcher.close();
    expect(r.requests.map((q) => q.json())).toEqual([[{ n: 1 }, { n: 2 }]]);
    // Resolved only after the batch settled, not merely handed over.
    expect(handles.map((h) => h.state)).toEqual(['delivered', 'delivered']);
    expect(batcher.pending()).toBe(0);
    expect(dispatcher.closed).toBe(false);
  });

  it('throws ClosedError from add() after close(), and returns the same promise twice', async () => {
    const batcher = createBatcher(testDispatcher().dispatcher, { url: URL_ });
    const first = batcher.close();
    expect(batcher.close()).toBe(first);
    expect(() => batcher.add('late')).toThrow(ClosedError);
    await first;
    expect(batcher.close()).toBe(first);
    expect(() => batcher.add('later')).toThrow(ClosedError);
  });

  it('unregisters from the dispatcher: drain() no longer flushes or counts the batcher', async () => {
    const dispatcher = testDispatcher().dispatcher;
    const closed = createBatcher(dispatcher, { url: URL_ });
    const open = createBatcher(dispatcher, { url: URL_ });
    await closed.close();
    let flushedClosed = 0;
    let flushedOpen = 0;
    // The dispatcher reaches a participant only through these; a kept reference would call them.
    Object.assign(closed, { flush: () => (flushedClosed += 1), pending: () => 1 });
    Object.assign(open, { flush: () => (flushedOpen += 1) });
    const result = await dispatcher.drain({ timeout: 200 });
    expect(flushedOpen).toBe(1);
    expect(flushedClosed).toBe(0);
    expect(result).toEqual({ drained: true, pending: 0 });
  });

  it('leaves no reference behind: a closed batcher is garbage-collected, an open one is not', async () => {
    // In a child with --expose-gc; the dispatcher stays alive and open throughout.
    const script = `
      const { createDispatcher, createBatcher } = await import(${JSON.stringify(dist)});
      const dispatcher = createDispatcher({
        transport: { send: async () => ({ kind: 'sent' }), close: async () => {} },
        logger: { warn() {}, error() {} },
      });
      const make = () => {
        const batcher = createBatcher(dispatcher, { url: 'http://127.0.0.1:9/ingest' });
        batcher.add({ a: 1 });
        return batcher;
      };
      let closed = make();
      let open = make();
      await closed.close();
      const refs = [new WeakRef(closed), new WeakRef(open)];
      closed = undefined;
      open = undefined;
      for (let i = 0; i < 5; i++) { await new Promise((r) => setTimeout(r, 10)); gc(); }
      process.stdout.write(JSON.stringify(refs.map((ref) => ref.deref() === undefined)));
      await dispatcher.close();
    `;
    const collected = await new Promise<boolean[]>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--expose-gc', '--input-type=module', '-e', script],
        { timeout: 20_000 },
        (error, stdout) => {
          if (error === null) resolve(JSON.parse(stdout) as boolean[]);
          else reject(new Error(`child failed: ${error.message}`, { cause: error }));
        },
      );
    });
    // The open one is still registered with the dispatcher (the control: the check can fail).
    expect(collected).toEqual([true, false]);
  });

  it('keeps counting in drain() until a 413 split of its last batch settled', async () => {
    const r = await receiver((req, res) => {
      res.statusCode = req.json<unknown[]>().length > 1 ? 413 : 204;
      res.end();
    });
    const dispatcher = realDispatcher();
    const batcher = createBatcher(dispatcher, { url: r.url, maxWaitMs: 60_000 });
    const handles = [batcher.add('a'), batcher.add('b')];
    const closing = batcher.close();
    const drained = await dispatcher.drain({ timeout: 2_000 });
    expect(drained.drained).toBe(true);
    expect(handles.map((h) => h.state)).toEqual(['delivered', 'delivered']);
    await closing;
    expect(r.requests.map((q) => q.json<unknown[]>().length)).toEqual([2, 1, 1]);
  });
});

describe("a delivered batch's buffer, written into again (issue 15, thirteenth pass)", () => {
  /** Batches `from` to `to` (exclusive) of `perBatch` items, each awaited; each item names its batch. */
  async function sendRounds(
    batcher: Batcher,
    from: number,
    to: number,
    perBatch: number,
    pad: string,
  ): Promise<void> {
    for (let round = from; round < to; round++) {
      const handles = [];
      for (let i = 0; i < perBatch; i++) handles.push(batcher.add({ round, i, pad }));
      await Promise.all(handles.map((h) => h.done));
      expect(handles.every((h) => h.state === 'delivered')).toBe(true);
    }
  }

  /** Every batch's body arrived byte for byte, in any order (batches may take other sockets). */
  function expectRounds(bodies: Buffer[], from: number, to: number, perBatch: number, pad: string): void {
    const expected = Array.from({ length: to - from }, (_, k) => from + k).map((round) =>
      JSON.stringify(Array.from({ length: perBatch }, (_, i) => ({ round, i, pad }))),
    );
    expect(bodies.map((body) => body.toString('utf8')).sort()).toEqual(expected.sort());
  }

  /** Counts the buffers of at least 64 KiB made while `work` runs (the batcher's bodies). */
  async function largeBuffersMade(work: () => Promise<void>): Promise<number> {
    const allocate = vi.spyOn(Buffer, 'allocUnsafeSlow');
    try {
      await work();
      return allocate.mock.calls.filter(([size]) => size >= 64 * 1024).length;
    } finally {
      allocate.mockRestore();
    }
  }

  it('writes the next batches into delivered ones, and the receiver gets every batch intact', async () => {
    const r = await receiver();
    const batcher = createBatcher(realDispatcher(), { url: r.url, maxItems: 100, maxWaitMs: 60_000 });
    const pad = 'p'.repeat(1_000);
    // The buffer grows to its size in the first batches.
    await sendRounds(batcher, 0, 3, 100, pad);
    const made = await largeBuffersMade(() => sendRounds(batcher, 3, 13, 100, pad));
    // Without the reuse, each of the ten batches leaves with its buffer and a new one is made.
    expect(made).toBeLessThanOrEqual(1);
    await r.waitFor(13);
    const bodies = r.requests.map((q) => q.body);
    expectRounds(bodies, 0, 13, 100, pad);
  });

  it("never writes into a batch's buffer while its socket still holds the body's tail (a receiver that answers first)", async () => {
    // Answers 204 as soon as a request's headers arrived, then reads nothing for 300 ms after the
    // first one: the first body's tail (8 MiB, more than the kernel takes) stays in our socket
    // while its batch is already delivered and the next batches are written.
    const bodies: Buffer[] = [];
    const served: Socket[] = [];
    const server = net.createServer((socket) => {
      served.push(socket);
      let head = Buffer.alloc(0);
      let parts: Buffer[] = [];
      let bodyLeft = -1;
      let paused = false;
      socket.on('data', (chunk: Buffer) => {
        let data = chunk;
        while (data.length > 0) {
          if (bodyLeft < 0) {
            head = Buffer.concat([head, data]);
            const end = head.indexOf('\r\n\r\n');
            if (end === -1) return;
            bodyLeft = Number(/content-length:\s*(\d+)/i.exec(head.subarray(0, end).toString('latin1'))?.[1]);
            data = head.subarray(end + 4);
            head = Buffer.alloc(0);
            socket.write('HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n');
            if (!paused) {
              paused = true;
              socket.pause();
              setTimeout(() => socket.resume(), 300);
            }
          }
          const take = Math.min(bodyLeft, data.length);
          parts.push(data.subarray(0, take));
          data = data.subarray(take);
          bodyLeft -= take;
          if (bodyLeft === 0) {
            bodies.push(Buffer.concat(parts));
            parts = [];
            bodyLeft = -1;
          }
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const socket of served) socket.destroy();
        }),
    );
    // Our side of each connection, as undici made it.
    const sockets: Socket[] = [];
    const onConnected = (message: unknown): void => {
      sockets.push((message as { socket: Socket }).socket);
    };
    diagnostics.subscribe('undici:client:connected', onConnected);
    cleanup.push(() => diagnostics.unsubscribe('undici:client:connected', onConnected));
    const { port } = server.address() as AddressInfo;
    const batcher = createBatcher(realDispatcher(), {
      url: `http://127.0.0.1:${port}/`,
      maxItems: 128,
      maxBytes: 16 * 1024 * 1024,
      maxWaitMs: 60_000,
    });
    const pad = 'q'.repeat(64 * 1024);
    await sendRounds(batcher, 0, 1, 128, pad);
    // The control: the first batch was delivered while its body was still being written.
    expect(sockets.some((socket) => socket.writableLength > 0)).toBe(true);
    // Written while the first body's tail waits: the second batch leaves, the third is written
    // into the buffer the batcher then holds.
    await sendRounds(batcher, 1, 3, 128, pad);
    await waitUntil(() => bodies.length === 3, {
      message: 'the receiver read all three bodies',
      timeoutMs: 10_000,
    });
    expectRounds(bodies, 0, 3, 128, pad);
  });

  it('never reuses the bodies a custom transport was given (it may keep them)', async () => {
    const { dispatcher, transport } = testDispatcher();
    const batcher = createBatcher(dispatcher, { url: URL_, maxItems: 100, maxWaitMs: 60_000 });
    const pad = 'c'.repeat(1_000);
    await sendRounds(batcher, 0, 8, 100, pad);
    expectRounds(
      transport.requests.map((q) => q.body as Buffer),
      0,
      8,
      100,
      pad,
    );
  });

  it("never reuses the bodies undici's diagnostics channels showed a subscriber", async () => {
    const shown: Buffer[] = [];
    const onCreate = (message: unknown): void => {
      shown.push((message as { request: { body: Buffer } }).request.body);
    };
    diagnostics.subscribe('undici:request:create', onCreate);
    cleanup.push(() => diagnostics.unsubscribe('undici:request:create', onCreate));
    const r = await receiver();
    const batcher = createBatcher(realDispatcher(), { url: r.url, maxItems: 100, maxWaitMs: 60_000 });
    const pad = 'd'.repeat(1_000);
    await sendRounds(batcher, 0, 8, 100, pad);
    expectRounds(shown, 0, 8, 100, pad);
  });
});
