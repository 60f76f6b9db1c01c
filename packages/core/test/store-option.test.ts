/**
 * The `store` option is real: the dispatcher drives a store only through NotificationStore, and
 * hands it what a durable store needs (attempts as they start, retries with notBefore, the final
 * outcome), and takes back records a store recovered.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createMemoryStore,
  type NotificationJson,
  type NotificationStore,
  type StoreHost,
} from '../src/backend.js';
import { createDispatcher, type Dispatcher } from '../src/index.js';
import { createRecordingTransport } from '../src/testing.js';
import { recordingLogger } from '../../../test/support/index.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

type Call = [string, ...unknown[]];

/** A memory store that writes down every call, as a durable store would persist it. */
function recordingStore(
  recovered: NotificationJson[] = [],
): NotificationStore & { calls: Call[]; storageKeys: string[] } {
  const inner = createMemoryStore({ maxQueued: 100, maxQueuedBytes: 1 << 20, overflow: 'reject' });
  const calls: Call[] = [];
  const storageKeys: string[] = [];
  return {
    calls,
    storageKeys,
    open(host: StoreHost) {
      calls.push(['open']);
      for (const json of recovered) inner.put(host.revive(json));
      if (recovered.length > 0) host.wake();
    },
    put(record) {
      const json = record.json();
      storageKeys.push(json.key);
      calls.push(['put', record.key, json.id]);
      return inner.put(record);
    },
    take(now, admit) {
      return inner.take(now, admit);
    },
    attempt(record) {
      calls.push(['attempt', record.key, record.attempts]);
      inner.attempt();
    },
    release(record) {
      calls.push(['release', record.key, record.notBefore > 0]);
      inner.release(record);
    },
    settle(record, outcome) {
      // Copied, as a store persists it: the outcome is only read during the call.
      const { state, status, errorCode, errorMessage } = outcome;
      calls.push(['settle', record.key, { state, status, errorCode, errorMessage }]);
      inner.settle(record, outcome);
    },
    remove(record) {
      calls.push(['remove', record.key]);
      return inner.remove(record);
    },
    nextDueAt: () => inner.nextDueAt(),
    get size() {
      return inner.size;
    },
    get bytes() {
      return inner.bytes;
    },
    get waiting() {
      return inner.waiting;
    },
    flush: () => inner.flush(),
    close() {
      calls.push(['close']);
      return inner.close();
    },
  };
}

function dispatcherOn(store: NotificationStore, answers: number[]): Dispatcher {
  const transport = createRecordingTransport();
  transport.respondWith(() => answers.shift() ?? 204);
  const dispatcher = createDispatcher({
    store,
    transport,
    breaker: false,
    logger: recordingLogger(),
    retry: { minDelay: 1, maxDelay: 2 },
  });
  cleanup.push(() => dispatcher.close({ timeout: 1_000 }));
  return dispatcher;
}

describe('the store option', () => {
  it('records the path of a notification: put, attempt, release for retry, attempt, settle', async () => {
    const store = recordingStore();
    const dispatcher = dispatcherOn(store, [503, 503]);
    const handle = dispatcher.send('https://hooks.example.com/x', { json: { n: 1 }, retry: { attempts: 2 } });
    await expect(handle.persisted).resolves.toBeUndefined();
    const result = await handle.done;
    expect(result.state).toBe('failed');
    const key = (store.calls.find(([name]) => name === 'put') as Call)[1] as string;
    expect(store.calls.filter(([name]) => name !== 'open')).toEqual([
      ['put', key, handle.id],
      ['attempt', key, 1],
      ['release', key, true],
      ['attempt', key, 2],
      [
        'settle',
        key,
        {
          state: 'failed',
          status: 503,
          errorCode: 'AFTERWARD_ERR_HTTP_STATUS',
          errorMessage: expect.any(String) as unknown,
        },
      ],
    ]);
    await dispatcher.close();
    expect(store.calls.at(-1)).toEqual(['close']);
  });

  it('gives storage keys that differ from the webhook id and from one dispatcher to the next', () => {
    const a = recordingStore();
    const b = recordingStore();
    const first = dispatcherOn(a, []);
    const second = dispatcherOn(b, []);
    first.send('https://hooks.example.com/x', { id: 'same' });
    second.send('https://hooks.example.com/x', { id: 'same' });
    const keyA = a.calls.find(([name]) => name === 'put')?.[1];
    const keyB = b.calls.find(([name]) => name === 'put')?.[1];
    expect(keyA).not.toBe('same');
    expect(keyA).not.toBe(keyB);
  });

  it('serialises with a storage key unique across processes and restarts', () => {
    const store = recordingStore();
    const handle = dispatcherOn(store, []).send('https://hooks.example.com/x', { json: { n: 1 } });
    const [key] = store.storageKeys;
    expect(key).toMatch(/^[0-9a-z]+-[0-9a-f-]+-[0-9a-z]+$/);
    expect(key).not.toBe(handle.id);
    const backend = new URL('../dist/backend.js', import.meta.url).href;
    const keyOf = (): string =>
      execFileSync(
        process.execPath,
        ['-e', `import(${JSON.stringify(backend)}).then((m) => console.log(m.newKey()))`],
        {
          encoding: 'utf8',
        },
      ).trim();
    const [a, b] = [keyOf(), keyOf()];
    const prefix = (k: string): string => k.slice(0, k.lastIndexOf('-'));
    expect(prefix(a)).not.toBe(prefix(b));
    expect(prefix(a)).not.toBe(prefix(key ?? ''));
  });

  it('removes a cancelled waiting notification and settles it as cancelled', () => {
    const store = recordingStore();
    const dispatcher = dispatcherOn(store, []);
    const handle = dispatcher.send('https://hooks.example.com/x');
    expect(handle.cancel('changed my mind')).toBe(true);
    const key = store.calls.find(([name]) => name === 'put')?.[1];
    expect(store.calls).toContainEqual(['remove', key]);
    expect(store.calls).toContainEqual([
      'settle',
      key,
      expect.objectContaining({ state: 'cancelled', errorCode: 'AFTERWARD_ERR_CANCELLED' }) as unknown,
    ]);
  });

  it('delivers what the store recovered at open, keeping the webhook id and the attempts made', async () => {
    const url = new URL('https://hooks.example.com/recovered?q=1');
    const recovered: NotificationJson = {
      v: 1,
      key: 'from-a-previous-process',
      id: 'msg_recovered',
      url: url.href,
      origin: url.origin,
      method: 'POST',
      headers: ['content-type', 'application/json', 'webhook-id', 'msg_recovered'],
      body: Buffer.from('{"again":true}').toString('base64'),
      confirm: 'response',
      keepBody: 0,
      timeout: { connect: 1_000, response: 1_000, total: 2_000 },
      retry: { attempts: 5, minDelay: 1, maxDelay: 2, factor: 2, maxRetryAfter: 1_000 },
      sign: false,
      attempts: 2,
      notBefore: 0,
      createdAt: Date.now() - 60_000,
    };
    const store = recordingStore([recovered]);
    const transport = createRecordingTransport();
    const delivered: Array<{ id: string; attempts: number }> = [];
    const dispatcher = createDispatcher({ store, transport, logger: recordingLogger() });
    cleanup.push(() => dispatcher.close({ timeout: 1_000 }));
    dispatcher.on('delivered', ({ id, attempts }) => delivered.push({ id, attempts }));
    await dispatcher.drain({ timeout: 2_000 });
    expect(delivered).toEqual([{ id: 'msg_recovered', attempts: 3 }]);
    expect(transport.requests[0]?.url).toBe(url.href);
    expect(transport.requests[0]?.json()).toEqual({ again: true });
    expect(store.calls).toContainEqual([
      'settle',
      'from-a-previous-process',
      expect.objectContaining({ state: 'delivered' }) as unknown,
    ]);
  });

  it('resolves handle.persisted when a write-behind store has written the notification', async () => {
    const store = recordingStore();
    let write: () => void = () => undefined;
    const written = new Promise<void>((resolve) => (write = resolve));
    const writeBehind: NotificationStore = Object.assign(Object.create(store) as NotificationStore, {
      put: (record: Parameters<NotificationStore['put']>[0]) => {
        const result = store.put(record);
        return result.accepted ? { ...result, persisted: written } : result;
      },
    });
    const dispatcher = dispatcherOn(writeBehind, []);
    const handle = dispatcher.send('https://hooks.example.com/x');
    let persisted = false;
    void handle.persisted.then(() => (persisted = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(persisted).toBe(false);
    write();
    await handle.persisted;
    expect(persisted).toBe(true);
  });

  it('refuses a store that lacks part of the interface', () => {
    expect(() =>
      createDispatcher({
        store: { put: () => ({ accepted: false, reason: 'full' }) } as unknown as NotificationStore,
      }),
    ).toThrow(/store must implement NotificationStore/);
  });
});
