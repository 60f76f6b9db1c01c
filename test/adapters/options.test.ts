import { createDispatcher, InvalidArgumentError, isDispatcher } from '@afterward/core';
import { afterward as expressAfterward } from '@afterward/express';
import { afterward as koaAfterward } from '@afterward/koa';
import { describe, expect, it } from 'vitest';

const ADAPTERS = [
  { name: 'express', afterward: expressAfterward as (options?: unknown) => { dispatcher: unknown } },
  { name: 'koa', afterward: koaAfterward as (options?: unknown) => { dispatcher: unknown } },
];

describe.each(ADAPTERS)('$name: afterward(options)', ({ afterward }) => {
  it.each([
    ['an unknown key', { dispatcher: undefined, retries: 3 }, 'unknown option "retries"'],
    ['a bad onClientAbort', { onClientAbort: 'drop' }, "onClientAbort must be 'send' or 'cancel'"],
    ['a zero maxPerResponse', { maxPerResponse: 0 }, 'maxPerResponse must be'],
    ['a fractional maxPerResponse', { maxPerResponse: 1.5 }, 'maxPerResponse must be a whole number'],
    ['a dispatcher not from createDispatcher()', { dispatcher: { send() {} } }, 'dispatcher must come from'],
    ['null', null, 'options must be an object'],
    ['a string', 'fast', 'options must be an object'],
  ])('rejects %s with InvalidArgumentError at the call', (_label, options, message) => {
    expect(() => afterward(options)).toThrow(InvalidArgumentError);
    expect(() => afterward(options)).toThrow(message);
  });

  it('exposes the dispatcher it was given', () => {
    const dispatcher = createDispatcher();
    expect(afterward({ dispatcher }).dispatcher).toBe(dispatcher);
  });

  it('creates a dispatcher when none is given, exposed as middleware.dispatcher', async () => {
    const middleware = afterward();
    expect(isDispatcher(middleware.dispatcher)).toBe(true);
    expect(afterward().dispatcher).not.toBe(middleware.dispatcher);
    await (middleware.dispatcher as ReturnType<typeof createDispatcher>).close();
  });
});
