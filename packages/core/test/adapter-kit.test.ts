import type { ServerResponse } from 'node:http';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createAdapterKit, resolveAfterwardOptions, type ResponseInfo } from '../src/adapter.js';
import { NotInstalledError, type DeliveryHandle } from '../src/index.js';
import { createTestDispatcher, drain } from '../src/testing.js';
import { recordingLogger } from '../../../test/support/index.js';

type Info = ResponseInfo<IncomingMessage, ServerResponse>;
interface Target {
  res: ServerResponse;
  route: string;
  fireAndForget?: (...args: unknown[]) => DeliveryHandle;
}

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function makeKit() {
  return createAdapterKit<Target, Info>({
    receiver: 'thing',
    noun: 'exchange',
    callers: 'the handlers that call',
    response: (target) => target.res,
    capture: (target) => target.route,
    describe: (target, outcome, durationMs, route) => ({
      outcome,
      durationMs,
      statusCode: target.res.statusCode,
      method: target.res.req.method ?? '',
      url: target.res.req.url ?? '',
      route,
      req: target.res.req,
      res: target.res,
    }),
  });
}

describe('createAdapterKit', () => {
  it('installs non-enumerable methods and tells its own from another copy’s', () => {
    const kit = makeKit();
    const proto = {};
    kit.install(proto);
    expect(Object.keys(proto)).toEqual([]);
    expect(kit.installedOn(proto)).toBe(true);
    expect(kit.installedOn({ fireAndForget: () => undefined })).toBe(false);
    expect(makeKit().installedOn(proto)).toBe(false);
  });

  it('throws NotInstalledError, in the adapter’s words, on a target the middleware never saw', () => {
    const kit = makeKit();
    const target = Object.create(kit.methods) as Target & typeof kit.methods;
    expect(() => target.fireAndForget('https://hooks.example.com')).toThrow(NotInstalledError);
    expect(() => target.after(() => undefined)).toThrow(
      'thing.after() was called on a exchange the afterward middleware never saw: ' +
        'install app.use(afterward()) before the handlers that call thing.after',
    );
  });

  it('parks work on a tracked target and releases it once the response finished, with the captured route', async () => {
    const { dispatcher, transport } = createTestDispatcher({ logger: recordingLogger() });
    cleanup.push(() => dispatcher.close());
    const kit = makeKit();
    const settings = resolveAfterwardOptions({ dispatcher });
    const seen: Array<string | undefined> = [];
    const server = createServer((req, res) => {
      const target = Object.assign(Object.create(kit.methods) as typeof kit.methods, {
        res,
        route: '/r/:id',
      });
      kit.track(target, settings);
      target.fireAndForget.call(target, 'https://hooks.example.com/x', {
        json: (info: Info) => ({ status: info.statusCode, route: info.route }),
      });
      target.after.call(target, (info) => void seen.push(info.route));
      res.statusCode = 201;
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => server.close(resolve)));
    const { port } = server.address() as AddressInfo;
    const answer = await fetch(`http://127.0.0.1:${port}/r/1`);
    expect(await answer.text()).toBe('ok');
    await drain(dispatcher);
    expect(transport.requests[0]?.json()).toEqual({ status: 201, route: '/r/:id' });
    expect(seen).toEqual(['/r/:id']);
  });
});
