import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Agent, buildConnector, request } from 'undici';
import { afterAll, beforeAll, describe, it, expect } from 'vitest';
import { BlockedAddressError, InvalidArgumentError } from '../src/util/errors.js';
import { createAddressGuard, refusedReason, type AddressGuard } from '../src/policy/guard.js';

// Written as customers type them into a webhook settings form.
const REFUSED_URLS = [
  // loopback, in the spellings the WHATWG parser folds into 127.0.0.1
  'http://127.0.0.1/',
  'http://127.0.0.1:8080/admin',
  'http://127.1/',
  'http://2130706433/',
  'http://0x7f.1/',
  'http://0x7f000001/',
  'http://017700000001/',
  'http://127.0.0.1./',
  'http://127.255.255.254/',
  'http://user:pass@127.0.0.1/',
  'http://[::1]/',
  'http://[0:0:0:0:0:0:0:1]/',
  'http://[::ffff:127.0.0.1]/',
  'http://[::ffff:7f00:1]/',
  // unspecified: connecting to it reaches this machine
  'http://0.0.0.0/',
  'http://0/',
  'http://[::]/',
  // private and shared address space
  'http://10.0.0.1/',
  'https://10.255.255.255/',
  'http://172.16.0.1/',
  'http://172.31.255.255/',
  'http://192.168.1.1/',
  'http://100.64.0.1/',
  'http://100.127.255.255/',
  'http://[::ffff:10.0.0.1]/',
  'http://[::ffff:192.168.0.1]/',
  // link-local, including cloud metadata endpoints
  'http://169.254.169.254/latest/meta-data',
  'http://169.254.0.1/',
  'http://[fe80::1]/',
  'http://[::ffff:169.254.169.254]/',
  'http://[fd00:ec2::254]/',
  // IPv6 unique local and deprecated site-local
  'http://[fd00::1]/',
  'http://[fc00::1]/',
  'http://[fec0::1]/',
  // multicast, broadcast, reserved, documentation, benchmarking
  'http://224.0.0.1/',
  'http://239.255.255.250/',
  'http://255.255.255.255/',
  'http://240.0.0.1/',
  'http://192.0.0.1/',
  'http://192.0.2.1/',
  'http://198.51.100.1/',
  'http://203.0.113.1/',
  'http://198.18.0.1/',
  'http://198.19.255.255/',
  'http://192.88.99.1/',
  'http://[ff02::1]/',
  'http://[2001:db8::1]/',
  'http://[2001:2::1]/',
  'http://[100::1]/',
  'http://[3fff::1]/',
  // tunnels and translators that lead to IPv4 space
  'http://[64:ff9b::7f00:1]/',
  'http://[64:ff9b::127.0.0.1]/',
  'http://[64:ff9b::a9fe:a9fe]/',
  'http://[64:ff9b:1::1]/',
  'http://[2002:7f00:1::]/',
  'http://[2002:808:808::1]/',
  'http://[2001::1]/',
  'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/',
  'http://[::127.0.0.1]/',
  'http://[::ffff:0:7f00:1]/',
  // names reserved for this machine
  'http://localhost/',
  'http://localhost:3000/hook',
  'http://LOCALHOST./',
  'http://localhost../',
  'http://api.localhost/',
  'http://a.b.LocalHost./',
  'http://%6c%6fcalhost/',
];

const PUBLIC_ADDRESSES = [
  '8.8.8.8',
  '1.1.1.1',
  '9.9.9.9',
  '93.184.215.14',
  '172.32.0.1',
  '100.128.0.1',
  '192.169.0.1',
  '11.0.0.1',
  '2606:4700:4700::1111',
  '2001:4860:4860::8888',
  '2a00:1450:4001:80b::200e',
  '::ffff:8.8.8.8',
  '64:ff9b::808:808',
];

function lookupAll(guard: AddressGuard, host: string) {
  return new Promise<{ address: string; family: number }[]>((resolve, reject) => {
    guard.lookup(host, { all: true }, (error, addresses) => {
      if (error) reject(error);
      else resolve(addresses as { address: string; family: number }[]);
    });
  });
}

function lookupOne(guard: AddressGuard, host: string) {
  return new Promise<{ address: string; family: number | undefined }>((resolve, reject) => {
    guard.lookup(host, {}, (error, address, family) => {
      if (error) reject(error);
      else resolve({ address: address as string, family });
    });
  });
}

function hostnameOf(url: string): string {
  return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
}

describe('the WHATWG URL parser', () => {
  it.each([
    ['http://2130706433/', '127.0.0.1'],
    ['http://0x7f.1/', '127.0.0.1'],
    ['http://0x7f000001/', '127.0.0.1'],
    ['http://017700000001/', '127.0.0.1'],
    ['http://127.1/', '127.0.0.1'],
    ['http://127.0.0.1./', '127.0.0.1'],
    ['http://0/', '0.0.0.0'],
    ['http://[::ffff:127.0.0.1]/', '[::ffff:7f00:1]'],
    ['http://LOCALHOST./', 'localhost.'],
    ['http://%6c%6fcalhost/', 'localhost'],
  ])('normalises %s to %s before the guard sees it', (url, hostname) => {
    expect(new URL(url).hostname).toBe(hostname);
  });
});

describe('public-only guard', () => {
  const guard = createAddressGuard('public-only');

  it(`has at least 35 refused targets in its table (${REFUSED_URLS.length})`, () => {
    expect(REFUSED_URLS.length).toBeGreaterThanOrEqual(35);
  });

  it.each(REFUSED_URLS)('checkUrl refuses %s', (url) => {
    expect(() => guard.checkUrl(new URL(url))).toThrow(BlockedAddressError);
  });

  it.each(REFUSED_URLS.filter((url) => !/localhost/i.test(url)))(
    'lookup and checkAddress refuse the address of %s too',
    async (url) => {
      const host = hostnameOf(url);
      expect(refusedReason(host)).toBeTypeOf('string');
      expect(() => guard.checkAddress('example.com', host)).toThrow(BlockedAddressError);
      await expect(lookupAll(guard, host)).rejects.toBeInstanceOf(BlockedAddressError);
      await expect(lookupOne(guard, host)).rejects.toBeInstanceOf(BlockedAddressError);
    },
  );

  it.each(PUBLIC_ADDRESSES)('accepts the public address %s', async (address) => {
    expect(refusedReason(address)).toBeUndefined();
    const url = new URL(`https://${address.includes(':') ? `[${address}]` : address}/hooks`);
    expect(() => guard.checkUrl(url)).not.toThrow();
    expect(() => guard.checkAddress('example.com', address)).not.toThrow();
    // An IP literal is answered by dns.lookup without any network traffic.
    const answers = await lookupAll(guard, address);
    expect(answers).toHaveLength(1);
    const one = await lookupOne(guard, address);
    expect(one.family).toBe(address.includes(':') ? 6 : 4);
  });

  it('leaves ordinary names to lookup()', () => {
    for (const url of [
      'https://example.com/',
      'https://hooks.slack.com/x',
      'http://localhost.example.com/',
    ]) {
      expect(() => guard.checkUrl(new URL(url))).not.toThrow();
    }
  });

  it('refuses localhost through a real lookup', async () => {
    const error: unknown = await lookupAll(guard, 'localhost').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BlockedAddressError);
    const blocked = error as BlockedAddressError;
    expect(blocked.host).toBe('localhost');
    expect(blocked.code).toBe('AFTERWARD_ERR_BLOCKED_ADDRESS');
    expect(refusedReason(blocked.address)).toMatch(/^loopback/);
    await expect(lookupOne(guard, 'localhost')).rejects.toBeInstanceOf(BlockedAddressError);
  });

  it('says why an address is refused', () => {
    expect(refusedReason('127.0.0.1')).toBe('loopback');
    expect(refusedReason('10.1.2.3')).toBe('private');
    expect(refusedReason('169.254.169.254')).toBe('linkLocal');
    expect(refusedReason('100.64.0.1')).toBe('carrierGradeNat');
    expect(refusedReason('fd12::1')).toBe('uniqueLocal');
    expect(refusedReason('[::1]')).toBe('loopback');
    expect(refusedReason('fe80::1%eth0')).toBe('linkLocal');
    expect(refusedReason('::ffff:10.0.0.1')).toBe('private (IPv4-mapped)');
    expect(refusedReason('64:ff9b::a00:1')).toBe('private (NAT64)');
    expect(refusedReason('2002:7f00:1::')).toBe('6to4');
    expect(refusedReason('2001::1')).toBe('teredo');
    expect(refusedReason('::7f00:1')).toBe('not global unicast (outside 2000::/3)');
    expect(refusedReason('example.com')).toBe('not an IP address');
    expect(refusedReason('')).toBe('not an IP address');
  });

  it('puts the host and the refused address in the error', () => {
    let caught: unknown;
    try {
      guard.checkUrl(new URL('http://169.254.169.254/latest/meta-data'));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(BlockedAddressError);
    expect(caught).toMatchObject({ host: '169.254.169.254', address: '169.254.169.254', retryable: false });
    expect((caught as Error).message).toContain('linkLocal');
  });
});

describe('allowlist', () => {
  it('lets 127.0.0.1/32 through and nothing next to it', () => {
    const guard = createAddressGuard({ policy: 'public-only', allow: ['127.0.0.1/32'] });
    expect(() => guard.checkUrl(new URL('http://127.0.0.1:8080/'))).not.toThrow();
    expect(() => guard.checkUrl(new URL('http://2130706433/'))).not.toThrow();
    expect(() => guard.checkUrl(new URL('http://[::ffff:127.0.0.1]/'))).not.toThrow();
    expect(() => guard.checkUrl(new URL('http://127.0.0.2/'))).toThrow(BlockedAddressError);
    expect(() => guard.checkUrl(new URL('http://[::1]/'))).toThrow(BlockedAddressError);
    expect(() => guard.checkUrl(new URL('http://10.0.0.1/'))).toThrow(BlockedAddressError);
    expect(() => guard.checkAddress('x', '127.0.0.1')).not.toThrow();
  });

  it('lets localhost names reach lookup() once loopback is allowed', async () => {
    const guard = createAddressGuard({ policy: 'public-only', allow: ['127.0.0.0/8', '::1/128'] });
    expect(() => guard.checkUrl(new URL('http://localhost:3000/'))).not.toThrow();
    const answers = await lookupAll(guard, 'localhost');
    expect(answers.length).toBeGreaterThan(0);
  });

  it('takes single addresses and IPv6 prefixes', () => {
    const allow = ['10.1.2.3', 'fd00:1234::/32'];
    expect(refusedReason('10.1.2.3', allow)).toBeUndefined();
    expect(refusedReason('10.1.2.4', allow)).toBe('private');
    expect(refusedReason('fd00:1234:5::1', allow)).toBeUndefined();
    expect(refusedReason('fd00:1235::1', allow)).toBe('uniqueLocal');
  });

  it.each([
    '10.0.0.0/33',
    '10.0.0/8',
    '10/8',
    '0x0a.0.0.0/8',
    '010.0.0.1',
    '::1/129',
    'fe80::1%eth0',
    'not-an-ip',
    'localhost',
    '',
    '10.0.0.0/',
    '10.0.0.0/8/8',
    '10.0.0.0/-1',
    '10.0.0.0/ 8',
    '256.0.0.1/32',
  ])('throws InvalidArgumentError for the bad entry %j', (entry) => {
    expect(() => createAddressGuard({ policy: 'public-only', allow: [entry] })).toThrow(InvalidArgumentError);
    expect(() => refusedReason('8.8.8.8', [entry])).toThrow(InvalidArgumentError);
  });

  it('rejects settings that are not the public-only policy', () => {
    expect(() => createAddressGuard('open' as never)).toThrow(InvalidArgumentError);
    expect(() => createAddressGuard({ policy: 'none' } as never)).toThrow(InvalidArgumentError);
    expect(() => createAddressGuard(null as never)).toThrow(InvalidArgumentError);
    expect(() => createAddressGuard({ policy: 'public-only', allow: '10.0.0.0/8' } as never)).toThrow(
      InvalidArgumentError,
    );
  });
});

describe('wrapConnector with real sockets', () => {
  let server: Server;
  let port: number;
  let connections = 0;
  const serverSockets = new Set<Socket>();

  beforeAll(async () => {
    server = createServer((socket) => {
      connections += 1;
      serverSockets.add(socket);
      socket.on('close', () => serverSockets.delete(socket));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const socket of serverSockets) socket.destroy();
    server.close();
    await once(server, 'close');
  });

  function connect(connector: buildConnector.connector, hostname: string) {
    return new Promise<{ error: Error | null; socket: Socket | null }>((resolve) => {
      connector(
        { hostname, host: `${hostname}:${port}`, protocol: 'http:', port: String(port) },
        (error, socket) => resolve({ error, socket }),
      );
    });
  }

  // The server's 'connection' event can trail the client's; give a stray connection time to land.
  const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

  it('refuses 127.0.0.1, [::1] and localhost without ever dialling', async () => {
    const guard = createAddressGuard('public-only');
    const connector = guard.wrapConnector(buildConnector({ timeout: 2_000, lookup: guard.lookup }));
    const before = connections;

    for (const hostname of ['127.0.0.1', '::1', '[::1]', 'localhost']) {
      const { error, socket } = await connect(connector, hostname);
      expect(error, hostname).toBeInstanceOf(BlockedAddressError);
      expect(socket).toBeNull();
    }
    await settle();
    expect(connections - before).toBe(0);
  });

  it('connects when the allowlist admits 127.0.0.1/32', async () => {
    const guard = createAddressGuard({ policy: 'public-only', allow: ['127.0.0.1/32'] });
    const connector = guard.wrapConnector(buildConnector({ timeout: 2_000, lookup: guard.lookup }));
    const before = connections;

    const { error, socket } = await connect(connector, '127.0.0.1');
    expect(error).toBeNull();
    expect(socket?.remoteAddress).toBe('127.0.0.1');
    socket?.destroy();
    await settle();
    expect(connections - before).toBe(1);
  });

  it('still catches the connected address when the connector resolves names itself', async () => {
    const guard = createAddressGuard('public-only');
    // No lookup: guard.lookup here, so only the after-connect backstop stands in the way.
    const connector = guard.wrapConnector(buildConnector({ timeout: 2_000 }));
    const before = connections;

    const { error, socket } = await connect(connector, 'localhost');
    expect(error).toBeInstanceOf(BlockedAddressError);
    expect(socket).toBeNull();
    await settle();
    expect(connections - before).toBe(1);
    // The backstop destroyed the socket, so the server's end is closed too.
    expect(serverSockets.size).toBe(0);
  });
});

describe('through an undici Agent', () => {
  let server: HttpServer;
  let port: number;
  let requests = 0;

  beforeAll(async () => {
    server = createHttpServer((_req, res) => {
      requests += 1;
      res.writeHead(204).end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  function agentFor(guard: AddressGuard): Agent {
    return new Agent({
      connect: guard.wrapConnector(buildConnector({ timeout: 2_000, lookup: guard.lookup })),
    });
  }

  it('rejects the request with BlockedAddressError itself', async () => {
    const agent = agentFor(createAddressGuard('public-only'));
    try {
      for (const host of ['127.0.0.1', 'localhost']) {
        const error: unknown = await request(`http://${host}:${port}/`, { dispatcher: agent }).catch(
          (e: unknown) => e,
        );
        expect(error, host).toBeInstanceOf(BlockedAddressError);
      }
      expect(requests).toBe(0);
    } finally {
      await agent.close();
    }
  });

  it('delivers to an allowed address', async () => {
    const agent = agentFor(createAddressGuard({ policy: 'public-only', allow: ['127.0.0.1/32'] }));
    try {
      const response = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent });
      await response.body.dump();
      expect(response.statusCode).toBe(204);
      expect(requests).toBe(1);
    } finally {
      await agent.close();
    }
  });
});
