/**
 * The SSRF guard, through a real dispatcher: targets written as customers type them into a
 * webhook settings form, aimed at a real listener on 127.0.0.1 (most with its port), must each
 * end `failed` with BlockedAddressError after one attempt, while the listener counts zero
 * connections.
 */
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { Agent, buildConnector, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redirect, startReceiver } from '../support/index.js';
import {
  BlockedAddressError,
  countingListener,
  createAddressGuard,
  createDispatcher,
  HttpStatusError,
  isAfterwardError,
  recordingLogger,
  refusedReason,
  track,
  trackDispatcher,
  type CountingListener,
  type Dispatcher,
} from './support.js';

/** Rows that reach the listener's port (`P`) if the guard lets them through. */
const AIMED_AT_THE_LISTENER = [
  // 127.0.0.1 in the spellings the URL parser folds into it
  'http://127.0.0.1:P/',
  'http://127.1:P/',
  'http://2130706433:P/',
  'http://0x7f.1:P/',
  'http://0x7f000001:P/',
  'http://0177.0.0.1:P/',
  'http://017700000001:P/',
  'http://127.000.000.001:P/',
  'http://127.0.0.1.:P/',
  'http://user:secret@127.0.0.1:P/hook',
  'https://127.0.0.1:P/',
  // the rest of 127.0.0.0/8
  'http://127.0.0.2:P/',
  'http://127.255.255.254:P/',
  // IPv6 loopback and IPv4 loopback inside IPv6
  'http://[::1]:P/',
  'http://[0:0:0:0:0:0:0:1]:P/',
  'http://[::ffff:127.0.0.1]:P/',
  'http://[::ffff:7f00:1]:P/',
  'http://[::127.0.0.1]:P/',
  'http://[64:ff9b::7f00:1]:P/',
  'http://[2002:7f00:1::]:P/',
  // unspecified addresses: on Linux a connect to them reaches this machine
  'http://0.0.0.0:P/',
  'http://0:P/',
  'http://[::]:P/',
  // names for this machine
  'http://localhost:P/',
  'http://localhost.:P/',
  'http://LOCALHOST:P/',
  'http://LocalHost.:P/hook?x=1',
  'http://api.localhost:P/',
  // link-local with the port, for good measure
  'http://[fe80::1]:P/',
];

/** Internal targets elsewhere: refused before any connect, so no connect timeout either. */
const ELSEWHERE_INTERNAL = [
  'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
  'http://[::ffff:169.254.169.254]/latest/meta-data/',
  'http://[fd00:ec2::254]/latest/meta-data/',
  'http://10.0.0.1/',
  'https://172.16.0.1:8443/hook',
  'http://192.168.1.1/admin',
  'http://100.64.0.1/',
  'http://0.1.2.3/',
  'http://[fd12:3456::1]/',
  'http://224.0.0.1/',
  'http://255.255.255.255/',
  'http://240.0.0.1/',
  'http://[ff02::1]/',
];

let listener: CountingListener;
let dispatcher: Dispatcher;
let machineName: string | undefined;

function blockedResult(url: string) {
  return dispatcher.send(url, { json: { event: 'ping' } }).done;
}

beforeAll(async () => {
  listener = await countingListener('127.0.0.1');
  // Default retry policy (5 attempts): a refusal must not be retried.
  dispatcher = createDispatcher({ guard: 'public-only', logger: recordingLogger() });
  // This machine's own name usually resolves to a loopback or private address through /etc/hosts:
  // a real "hostname that resolves to 127.0.0.1" that only the lookup can catch.
  try {
    const { address } = await lookup(hostname());
    if (refusedReason(address) !== undefined) machineName = hostname();
  } catch {
    machineName = undefined;
  }
});

afterAll(async () => {
  await dispatcher.close();
  await listener.close();
});

describe("guard: 'public-only' through a dispatcher", () => {
  it.each(AIMED_AT_THE_LISTENER)('refuses %s after one attempt, no connection made', async (row) => {
    const url = row.replace(':P', `:${listener.port}`);
    const result = await blockedResult(url);

    expect(result.state).toBe('failed');
    expect(result.error).toBeInstanceOf(BlockedAddressError);
    expect(result.attempts).toBe(1);
    expect(listener.connections).toBe(0);
  });

  it.each(ELSEWHERE_INTERNAL)('refuses %s after one attempt', async (url) => {
    const result = await blockedResult(url);

    expect(result.state).toBe('failed');
    expect(result.error).toBeInstanceOf(BlockedAddressError);
    expect(result.attempts).toBe(1);
  });

  it.each(['http://127.0.0.1:P/', 'http://[::ffff:127.0.0.1]:P/', 'http://localhost.:P/'])(
    "refuses %s with confirm: 'sent' too (its own connection path)",
    async (row) => {
      const url = row.replace(':P', `:${listener.port}`);
      const result = await dispatcher.send(url, { json: {}, confirm: 'sent' }).done;

      expect(result.state).toBe('failed');
      expect(result.error).toBeInstanceOf(BlockedAddressError);
      expect(result.attempts).toBe(1);
      expect(listener.connections).toBe(0);
    },
  );

  it("refuses this machine's hostname, which resolves to a non-public address, at the lookup", async (context) => {
    if (machineName === undefined) context.skip();
    const result = await dispatcher.send(`http://${machineName}:${listener.port}/`, { json: {} }).done;

    expect(result.state).toBe('failed');
    expect(result.attempts).toBe(1);
    const error = result.error as BlockedAddressError;
    expect(error).toBeInstanceOf(BlockedAddressError);
    // Refused for what the name resolved to, not for the name: the DNS path did the work.
    expect(error.host).toBe(machineName);
    expect(refusedReason(error.address)).toBeDefined();
    expect(listener.connections).toBe(0);
  });

  it('checks every address localhost resolves to when the name itself is not refused', async () => {
    // Allowing ::1 lets "localhost" past the by-name check; it still resolves to 127.0.0.1,
    // which the lookup refuses before anything is dialled.
    const own = trackDispatcher(
      createDispatcher({
        guard: { policy: 'public-only', allow: ['::1/128'] },
        logger: recordingLogger(),
      }),
    );
    const result = await own.send(`http://localhost:${listener.port}/`, { json: {} }).done;

    expect(result.state).toBe('failed');
    expect(result.attempts).toBe(1);
    expect(result.error).toBeInstanceOf(BlockedAddressError);
    expect(result.error).toMatchObject({ host: 'localhost', address: '127.0.0.1' });
    expect(listener.connections).toBe(0);
  });

  it('refuses localhost in the connector, through guard.lookup, as the transport wires it', async () => {
    const guard = createAddressGuard({ policy: 'public-only', allow: ['::1/128'] });
    const agent = new Agent({
      connect: guard.wrapConnector(buildConnector({ timeout: 2_000, lookup: guard.lookup })),
    });
    try {
      const error: unknown = await request(`http://localhost:${listener.port}/`, { dispatcher: agent }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isAfterwardError(error) && error.code).toBe('AFTERWARD_ERR_BLOCKED_ADDRESS');
      expect(listener.connections).toBe(0);
    } finally {
      await agent.close();
    }
  });

  it('sent nothing to the listener over the whole table', () => {
    expect(AIMED_AT_THE_LISTENER.length + ELSEWHERE_INTERNAL.length).toBeGreaterThanOrEqual(30);
    expect(listener.connections).toBe(0);
    expect(dispatcher.stats()).toMatchObject({ delivered: 0, retries: 0, queued: 0, inFlight: 0 });
  });
});

describe('guard allowlist', () => {
  it('lets an allowlisted private receiver through, by address and by localhost name', async () => {
    const receiver = track(await startReceiver());
    const own = trackDispatcher(
      createDispatcher({
        guard: { policy: 'public-only', allow: ['127.0.0.1/32'] },
        logger: recordingLogger(),
      }),
    );

    const byAddress = await own.send(`${receiver.url}/a`, { json: { n: 1 } }).done;
    const byName = await own.send(`http://localhost:${receiver.port}/b`, { json: { n: 2 } }).done;
    // The rest of 127.0.0.0/8 is still refused.
    const outside = await own.send(`http://127.0.0.2:${receiver.port}/c`, { json: { n: 3 } }).done;

    expect(byAddress.state).toBe('delivered');
    expect(byName.state).toBe('delivered');
    expect(outside).toMatchObject({ state: 'failed', attempts: 1 });
    expect(outside.error).toBeInstanceOf(BlockedAddressError);
    expect(receiver.requests.map((r) => r.url)).toEqual(['/a', '/b']);
  });

  it('refuses a malformed allowlist entry at creation', () => {
    expect(() => createDispatcher({ guard: { policy: 'public-only', allow: ['127.1/32'] } })).toThrow(
      /guard\.allow/,
    );
  });
});

describe('redirects to internal hosts', () => {
  let internal: CountingListener;

  beforeAll(async () => {
    // 127.0.0.2: loopback, outside the allowlist below, so only "3xx is never followed" matters.
    internal = await countingListener('127.0.0.2');
  });

  afterAll(async () => {
    await internal.close();
  });

  it.each([301, 302, 303, 307, 308] as const)(
    'a %i from an allowlisted receiver to an internal host fails, is not retried, is not followed',
    async (status) => {
      const origin = track(await redirect({ status, location: `${internal.url}/steal` }));
      const own = trackDispatcher(
        createDispatcher({
          guard: { policy: 'public-only', allow: ['127.0.0.1/32'] },
          logger: recordingLogger(),
        }),
      );

      const result = await own.send(`${origin.url}/hook`, { json: { n: 1 } }).done;

      expect(result).toMatchObject({ state: 'failed', attempts: 1 });
      expect(result.error).toBeInstanceOf(HttpStatusError);
      expect((result.error as HttpStatusError).status).toBe(status);
      expect(result.response?.headers['location']).toBe(`${internal.url}/steal`);
      expect(origin.requestsStarted).toBe(1);
      expect(internal.connections).toBe(0);
    },
  );

  it('a redirect to localhost is not followed either', async () => {
    const target = track(await countingListener('127.0.0.1'));
    const origin = track(await redirect({ location: `http://localhost:${target.port}/` }));
    const own = trackDispatcher(
      createDispatcher({
        guard: { policy: 'public-only', allow: ['127.0.0.1/32'] },
        logger: recordingLogger(),
      }),
    );

    const result = await own.send(origin.url, { json: {} }).done;

    expect(result).toMatchObject({ state: 'failed', attempts: 1 });
    expect((result.error as HttpStatusError).status).toBe(302);
    expect(target.connections).toBe(0);
  });
});
