import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { resolveBatcherOptions } from '../src/batch/batcher.js';
import { resolveDispatcherOptions } from '../src/dispatcher/options.js';
import { DEFAULTS } from '../src/options/options.js';
import { resolveUndiciTransportOptions } from '../src/transport/undici.js';
import { InvalidArgumentError } from '../src/util/errors.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

describe('DEFAULTS and the option resolvers', () => {
  it('reads the user agent from the package version', () => {
    const [major, minor] = pkg.version.split('.');
    expect(DEFAULTS.userAgent).toBe(`afterward/${major}.${minor}`);
  });

  it('fill in the one set of defaults', () => {
    const dispatcher = resolveDispatcherOptions({});
    expect(dispatcher).toMatchObject({
      concurrency: DEFAULTS.concurrency,
      concurrencyPerOrigin: DEFAULTS.concurrencyPerOrigin,
      maxQueued: DEFAULTS.maxQueued,
      closeTimeout: DEFAULTS.closeTimeout,
      request: { timeout: DEFAULTS.timeout, retry: DEFAULTS.retry, userAgent: DEFAULTS.userAgent },
    });
    const { init, ...batch } = resolveBatcherOptions({ url: 'https://logs.example.com' });
    expect(init).toEqual({});
    expect(batch).toEqual(DEFAULTS.batch);
    expect(resolveUndiciTransportOptions({})).toEqual({
      maxResponseBytes: DEFAULTS.maxResponseBytes,
      guard: undefined,
      ...DEFAULTS.transport,
    });
  });

  it('refuse unknown keys, naming the known ones', () => {
    expect(() => resolveUndiciTransportOptions({ keepAlive: 1 } as never)).toThrow(InvalidArgumentError);
    expect(() => resolveUndiciTransportOptions({ keepAlive: 1 } as never)).toThrow(/keepAliveTimeout/);
    expect(() => resolveBatcherOptions({ url: 'https://x.example', maxItem: 1 } as never)).toThrow(
      /maxItems/,
    );
    expect(() => resolveDispatcherOptions({ concurency: 1 } as never)).toThrow(/concurrencyPerOrigin/);
  });
});
