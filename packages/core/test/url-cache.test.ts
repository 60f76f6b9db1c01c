import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createDispatcher, type Transport, type TransportRequest } from '../src/index.js';
import { cleanupScope, guardUnhandledRejections } from '../../../test/support/index.js';

guardUnhandledRejections();

const { cleanups: cleanup } = cleanupScope();
const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));

/** A transport that records what it was asked to send, then tries to change the URL it was given. */
function meddling(seen: string[]): Transport {
  return {
    send: (request: TransportRequest) => {
      seen.push(request.url.href);
      for (const change of [
        () => (request.url.pathname = '/evil'),
        () => request.url.searchParams.set('token', 'stolen'),
        () => (request.url.host = 'evil.example'),
      ]) {
        try {
          change();
        } catch {
          // A read-only URL refuses: what the test is about is later sends, not this one.
        }
      }
      return Promise.resolve({ kind: 'sent' as const });
    },
    close: () => Promise.resolve(),
  };
}

describe('the URL cache (issue 11 #11)', () => {
  it('a transport changing the URL it was given changes no later send, on this or another dispatcher', async () => {
    const url = 'http://127.0.0.1:9/hook?a=1';
    const seen: string[] = [];
    const first = createDispatcher({ transport: meddling(seen) });
    const second = createDispatcher({ transport: meddling(seen) });
    cleanup.push(() => first.close({ timeout: 0 }));
    cleanup.push(() => second.close({ timeout: 0 }));
    await first.send(url, { confirm: 'sent' }).done;
    await first.send(url, { confirm: 'sent' }).done;
    await second.send(url, { confirm: 'sent' }).done;
    expect(seen).toEqual([url, url, url]);
    const handle = first.send(url, { confirm: 'sent' });
    await handle.done;
    expect(handle.url).toBe(url);
  });

  it('holds no memory after close(): long URLs are not kept by anything module-wide', async () => {
    // In a child with --expose-gc: 64 distinct one-megabyte URLs, then close() and drop the dispatcher.
    const script = `
      const { createDispatcher } = await import(${JSON.stringify(dist)});
      const settle = async () => { for (let i = 0; i < 3; i++) { await new Promise((r) => setTimeout(r, 10)); gc(); } };
      await settle();
      const before = process.memoryUsage().heapUsed;
      let dispatcher = createDispatcher({
        transport: { send: async () => ({ kind: 'sent' }), close: async () => {} },
        logger: { warn() {}, error() {} },
      });
      for (let i = 0; i < 64; i++) {
        await dispatcher.send('http://127.0.0.1:9/' + i + '?x=' + 'a'.repeat(1 << 20), { confirm: 'sent' }).done;
      }
      await dispatcher.close();
      dispatcher = undefined;
      await settle();
      process.stdout.write(String(process.memoryUsage().heapUsed - before));
    `;
    const retained = await new Promise<number>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--expose-gc', '--input-type=module', '-e', script],
        { timeout: 20_000 },
        (error, stdout) => {
          if (error === null) resolve(Number(stdout));
          else reject(new Error(`child failed: ${error.message}`, { cause: error }));
        },
      );
    });
    // A module-wide cache kept them all: over 64 MB.
    expect(retained).toBeLessThan(16 * 1024 * 1024);
  });
});
