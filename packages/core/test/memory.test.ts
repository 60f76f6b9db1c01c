import { AsyncLocalStorage } from 'node:async_hooks';
import { setImmediate as turn } from 'node:timers/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createDispatcher,
  type DeliveryHandle,
  type Dispatcher,
  type SendInit,
  type Transport,
} from '../src/index.js';
import { Notification, type NotificationLifecycle } from '../src/notification/notification.js';
import { DEFAULTS } from '../src/options/options.js';
import { normalizeRequest } from '../src/request/request.js';
import type { TransportRequest } from '../src/transport/transport.js';
import { CONTEXTS_SHARED } from '../src/util/context.js';
import { TimeoutError } from '../src/util/errors.js';

// Bytes each queued notification holds, measured after full collections: not timing. Issue 15
// row 5 (peak RSS with the receiver down) is driven by it, since every queued notification lives
// as long as the queue ahead of it and survives young collections (bench/memory.mjs). Measured
// here before the compact record: 1,276 bytes (string body) and 1,233 (json), on Node 22, 24 and
// 26 alike; after it, about 445 and 685; with the store's bookkeeping on the record, the shared
// shape and the id made on first read, about 222 and 472.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

// Without async context frames (Node 22) each queued notification also keeps an AsyncResource of
// its own, about 80 bytes; with them (Node 24, 26) sends in one context share one. Node 22
// measures about 300 and 555 bytes.
const OWN_CONTEXT = CONTEXTS_SHARED ? 0 : 100;

const URL = 'http://127.0.0.1:9/hook';
const BODY = JSON.stringify({
  type: 'order.paid',
  id: 'ord_0000000042',
  amount: 4200,
  note: 'x'.repeat(200),
});
const silent = { warn() {}, error() {} };

/** A transport whose first attempt never ends: with one slot, everything else stays queued. */
function stuck(seen: TransportRequest[] = []): Transport {
  return {
    send: (request) => {
      seen.push(request);
      return new Promise(() => undefined);
    },
    close: () => Promise.resolve(),
  };
}

let dispatcher: Dispatcher | undefined;
afterEach(async () => {
  await dispatcher?.close({ timeout: 0 });
  dispatcher = undefined;
});

// The heap spaces that hold objects. Not the code and trusted spaces (bytecode, compiled code, their
// metadata): what the optimising compiler happens to finish inside the measured window lands there,
// 20 to 50 bytes a notification either way, and more of it when the machine is busy (a CI run once
// measured 305 bytes here, against 200 with the code spaces left out).
const DATA_SPACES = new Set(['new_space', 'old_space', 'new_large_object_space', 'large_object_space']);

/** Bytes held in object spaces and ArrayBuffers, after two full collections. */
function held(): number {
  gc();
  gc();
  let bytes = process.memoryUsage().arrayBuffers;
  for (const space of v8.getHeapSpaceStatistics())
    if (DATA_SPACES.has(space.space_name)) bytes += space.space_used_size;
  return bytes;
}

/** Heap objects and ArrayBuffer bytes per notification queued by `send`, `count` times. */
async function heldPerNotification(send: (i: number) => void, count: number): Promise<number> {
  const before = held();
  for (let i = 0; i < count;) {
    for (let j = 0; j < 500 && i < count; j++, i++) send(i);
    await turn();
  }
  return (held() - before) / count;
}

describe('memory held per queued notification', () => {
  it('holds under 260 bytes (heap and buffers; 360 on Node 22) per queued notification with a string body', async () => {
    const d = createDispatcher({ transport: stuck(), concurrency: 1, logger: silent });
    dispatcher = d;
    const init: SendInit = { body: BODY, headers: { 'content-type': 'application/json' } };
    // Warm-up: the shapes and field representations of the objects are settled before measuring.
    for (let i = 0; i < 300; i++) d.send(URL, init);
    await turn();
    const perNotification = await heldPerNotification(() => d.send(URL, init), 5_000);
    expect(d.stats().queued).toBe(5_299);
    expect(perNotification).toBeLessThan(260 + OWN_CONTEXT);
  });

  it('holds as little per queued notification when sends alternate between two URLs', async () => {
    // What a notification shares with other sends is found among the few made last, not only the
    // last one: alternating URLs made a target and a shape per notification (about 100 bytes).
    const d = createDispatcher({ transport: stuck(), concurrency: 1, logger: silent });
    dispatcher = d;
    const init: SendInit = { body: BODY, headers: { 'content-type': 'application/json' } };
    const urls = [URL, 'http://127.0.0.1:9/other'];
    for (let i = 0; i < 300; i++) d.send(urls[i % 2] as string, init);
    await turn();
    const perNotification = await heldPerNotification((i) => d.send(urls[i % 2] as string, init), 5_000);
    expect(d.stats().queued).toBe(5_299);
    expect(perNotification).toBeLessThan(260 + OWN_CONTEXT);
  });

  it('leaves a closed dispatcher collectable: what notifications share is not kept for it', async () => {
    const ref = await (async () => {
      const d = createDispatcher({ transport: stuck(), logger: silent });
      // Cancelled at the call: made (with its shape), never attempted.
      expect(d.send(URL, { body: 'x', signal: AbortSignal.abort() }).state).toBe('cancelled');
      await d.close({ timeout: 0 });
      return new WeakRef(d);
    })();
    await turn();
    gc();
    gc();
    expect(ref.deref()).toBeUndefined();
  });

  it('holds under 520 bytes (620 on Node 22) per queued notification with a json payload of its own', async () => {
    const d = createDispatcher({ transport: stuck(), concurrency: 1, logger: silent });
    dispatcher = d;
    const payload = (i: number): SendInit => ({
      json: { type: 'order.paid', id: `ord_${i}`, note: 'x'.repeat(200) },
    });
    for (let i = 0; i < 300; i++) d.send(URL, payload(i));
    await turn();
    const perNotification = await heldPerNotification((i) => d.send(URL, payload(i)), 5_000);
    expect(d.stats().queued).toBe(5_299);
    expect(perNotification).toBeLessThan(520 + OWN_CONTEXT);
  });
});

describe('the notification object itself', () => {
  const lifecycle: NotificationLifecycle = {
    settled: () => undefined,
    retried: () => undefined,
    cancelling: () => true,
  };
  const defaults = {
    timeout: DEFAULTS.timeout,
    retry: DEFAULTS.retry,
    headers: [],
    userAgent: 'x',
    canSign: false,
  };

  it('is one object of at most 170 bytes, also after a retry waited a delay with a fraction', () => {
    // One request for all: what the notification shares with the sends before it is shared, so
    // only the notification is counted. 160 bytes (17 fields of 8 bytes, and the header), with no
    // key or id string: before, 192 bytes and a key string of 24.
    const request = normalizeRequest(URL, { body: 'x' }, defaults);
    let key = 0;
    const make = (): Notification => new Notification(++key, request, lifecycle);
    // A delay with jitter has a fraction: a field that once held one was a 16-byte box in every
    // notification made after it (V8's double field representation).
    const first = make();
    first.begin({ abort: () => undefined });
    first.end();
    first.retry(new TimeoutError('total', 1), undefined, 1234.5, Date.now());
    const kept: Notification[] = new Array<Notification>(20_000);
    const before = held();
    for (let i = 0; i < kept.length; i++) kept[i] = make();
    const perNotification = (held() - before) / kept.length;
    expect(kept.every((n) => n.state === 'pending')).toBe(true);
    expect(perNotification).toBeLessThan(170);
  });
});

describe('the request a transport gets from a compactly queued notification', () => {
  it('has a Buffer body and the id headers, for string, json and form bodies', async () => {
    const seen: TransportRequest[] = [];
    const d = createDispatcher({ transport: stuck(seen), logger: silent });
    dispatcher = d;
    const a = d.send(URL, { body: 'plain' });
    const b = d.send(URL, { json: { x: 1 } });
    const c = d.send(URL, { body: new URLSearchParams({ q: 'é' }) });
    await turn();
    expect(seen).toHaveLength(3);
    const [ra, rb, rc] = seen as [TransportRequest, TransportRequest, TransportRequest];
    expect(Buffer.isBuffer(ra.body) && ra.body.toString()).toBe('plain');
    expect(Buffer.isBuffer(rb.body) && rb.body.toString()).toBe('{"x":1}');
    expect(Buffer.isBuffer(rc.body) && rc.body.toString()).toBe('q=%C3%A9');
    for (const [request, handle] of [
      [ra, a],
      [rb, b],
      [rc, c],
    ] as const) {
      const headers = request.headers;
      expect(headers.filter((_, i) => headers[i - 1] === 'webhook-id')).toEqual([handle.id]);
      expect(headers.filter((_, i) => headers[i - 1] === 'idempotency-key')).toEqual([handle.id]);
    }
    expect(rb.headers.slice(0, 2)).toEqual(['content-type', 'application/json']);
  });

  it('keeps each request its own when a payload sends again while it is serialised', async () => {
    const seen: TransportRequest[] = [];
    const d = createDispatcher({ transport: stuck(seen), logger: silent });
    dispatcher = d;
    let inner: DeliveryHandle | undefined;
    const payload = {
      toJSON: () => {
        inner = d.send('http://127.0.0.1:9/inner', { body: 'inner', headers: { 'x-inner': '1' } });
        return { outer: true };
      },
    };
    const outer = d.send(URL, { json: payload, headers: { 'x-outer': '1' } });
    await turn();
    const byId = new Map(seen.map((request) => [request.id, request]));
    const o = byId.get(outer.id) as TransportRequest;
    const i = byId.get((inner as DeliveryHandle).id) as TransportRequest;
    expect([
      o.url.href,
      o.body?.toString(),
      o.headers.includes('x-outer'),
      o.headers.includes('x-inner'),
    ]).toEqual([URL, '{"outer":true}', true, false]);
    expect([
      i.url.href,
      i.body?.toString(),
      i.headers.includes('x-inner'),
      i.headers.includes('x-outer'),
    ]).toEqual(['http://127.0.0.1:9/inner', 'inner', true, false]);
  });

  it("keeps a caller's own webhook-id header, once, and counts a UTF-8 body in bytes", async () => {
    const seen: TransportRequest[] = [];
    const d = createDispatcher({ transport: stuck(seen), logger: silent, concurrency: 1 });
    dispatcher = d;
    d.send(URL, { body: 'x', headers: { 'webhook-id': 'mine' } });
    const before = d.stats().queuedBytes;
    d.send(URL, { body: 'ééé' });
    const after = d.stats().queuedBytes;
    d.send(URL, { body: 'eee' });
    // The two-byte characters count as the six bytes they are sent as.
    expect(after - before - (d.stats().queuedBytes - after)).toBe(3);
    await turn();
    const headers = (seen[0] as TransportRequest).headers;
    expect(headers.filter((name) => name === 'webhook-id')).toHaveLength(1);
    expect(headers[headers.indexOf('webhook-id') + 1]).toBe('mine');
    expect(headers.filter((name) => name === 'idempotency-key')).toHaveLength(1);
  });
});

describe('the async context a queued notification keeps', () => {
  it("runs each attempt in its caller's AsyncLocalStorage store when sends in one turn share a context", async () => {
    const als = new AsyncLocalStorage<string>();
    const seen: string[] = [];
    const transport: Transport = {
      send: (request) => {
        seen.push(`${request.id}:${String(als.getStore())}`);
        return Promise.resolve({ kind: 'sent' });
      },
      close: () => Promise.resolve(),
    };
    const d = createDispatcher({ transport, logger: silent });
    dispatcher = d;
    const handles: DeliveryHandle[] = [];
    const send = (id: string): void => void handles.push(d.send(URL, { id, body: 'x' }));
    als.run('a', () => send('1'));
    als.run('b', () => {
      send('2');
      send('3');
      als.run('c', () => send('4'));
      send('5');
    });
    send('6');
    als.run('a', () => send('7'));
    await Promise.all(handles.map((handle) => handle.done));
    expect(seen.sort()).toEqual(['1:a', '2:b', '3:b', '4:c', '5:b', '6:undefined', '7:a']);
  });
});
