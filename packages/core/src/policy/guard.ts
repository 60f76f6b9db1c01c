import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction, type Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { buildConnector } from 'undici';
import { BlockedAddressError, InvalidArgumentError, NetworkError } from '../util/errors.js';

/**
 * One entry of an allowlist: a CIDR (`"10.0.0.0/8"`, `"fd00::/8"`, `"::1/128"`) or a single IP
 * (`"127.0.0.1"`, `"::1"`). IPv4 must be written as a dotted quad.
 *
 * @example
 * ```ts
 * const internal: AllowEntry[] = ['10.20.0.0/16', '127.0.0.1'];
 * ```
 */
export type AllowEntry = string;

/**
 * Options of the address guard.
 *
 * @example
 * ```ts
 * const options: GuardOptions = { allow: ['10.20.0.0/16'] }; // the in-house receivers
 * ```
 */
export interface GuardOptions {
  /**
   * Addresses let through although they are not public, for receivers you run yourself.
   * Checked at creation: a malformed entry throws `InvalidArgumentError`.
   */
  allow?: readonly AllowEntry[];
}

/**
 * How the dispatcher's `guard` option is written: `'public-only'`, or the same policy with options.
 *
 * @example
 * ```ts
 * createDispatcher({ guard: { policy: 'public-only', allow: ['10.20.0.0/16'] } });
 * ```
 */
export type GuardSetting = 'public-only' | ({ policy: 'public-only' } & GuardOptions);

/**
 * Refuses connections to addresses that are not public (private, loopback, link-local, CGNAT,
 * reserved, multicast, IPv6 ULA, NAT64/6to4/Teredo tunnels to such places), for dispatchers that
 * send to URLs typed in by customers. Names are checked on every DNS answer, and the connected
 * address is checked again, so DNS rebinding and redirects through the resolver do not get past it.
 *
 * @example
 * ```ts
 * const guard = createAddressGuard('public-only');
 * guard.checkUrl(new URL(input)); // fails fast on http://169.254.169.254/
 * const agent = new Agent({ connect: guard.wrapConnector(buildConnector({ lookup: guard.lookup })) });
 * ```
 */
export interface AddressGuard {
  /**
   * Throws `BlockedAddressError` when `url.hostname` is an IP literal that is refused, or is
   * `localhost` / ends in `.localhost` (with or without a trailing dot). Other names are left to
   * {@link AddressGuard.lookup}, which sees what they resolve to.
   *
   * @example
   * ```ts
   * guard.checkUrl(new URL('http://[::ffff:127.0.0.1]/')); // throws BlockedAddressError
   * ```
   */
  checkUrl(url: URL): void;
  /**
   * A `dns.lookup` replacement for `net.connect`/`tls.connect` (and undici's `buildConnector`):
   * resolves every address of the name and fails with `BlockedAddressError` if any of them is
   * refused, so a name with one public and one private answer cannot be used to reach the
   * private one. Honours `options.all`, `family`, `hints` and `order` as `dns.lookup` does.
   *
   * @example
   * ```ts
   * net.connect({ host: 'example.com', port: 80, lookup: guard.lookup });
   * ```
   */
  lookup: LookupFunction;
  /**
   * Throws `BlockedAddressError` if `address` (for example `socket.remoteAddress` once connected)
   * is refused. `host` only names the target in the error.
   *
   * @example
   * ```ts
   * guard.checkAddress('example.com', socket.remoteAddress ?? '');
   * ```
   */
  checkAddress(host: string, address: string): void;
  /**
   * Wraps an undici connector: an IP-literal hostname is checked before anything is dialled, and
   * the connected socket's remote address is checked as a backstop (the socket is destroyed and
   * the callback gets `BlockedAddressError`). Names are only checked before connecting when the
   * connector was built with `lookup: guard.lookup`; without it a refused name is caught only
   * after the TCP (and TLS) handshake.
   *
   * @example
   * ```ts
   * const connect = guard.wrapConnector(buildConnector({ timeout: 5_000, lookup: guard.lookup }));
   * const agent = new Agent({ connect });
   * ```
   */
  wrapConnector(connector: buildConnector.connector): buildConnector.connector;
}

type IP = ipaddr.IPv4 | ipaddr.IPv6;
type Cidr = [IP, number];

// 64:ff9b::/96 is the NAT64 well-known prefix (RFC 6052): the translator dials the IPv4 address
// in the last 32 bits. DNS64 networks answer public names with these, so they are judged by the
// IPv4 address they stand for rather than refused outright.
const NAT64_WELL_KNOWN: Cidr = [ipaddr.IPv6.parse('64:ff9b::'), 96];
// All IPv6 global unicast is in 2000::/3 (RFC 4291, IANA); ipaddr.js calls a few addresses
// outside it 'unicast' (IPv4-compatible ::a.b.c.d, unassigned space), which must not pass.
const GLOBAL_UNICAST: Cidr = [ipaddr.IPv6.parse('2000::'), 3];

/**
 * Why `address` would be refused by the `'public-only'` policy, or `undefined` if it is public or
 * covered by `allow`. Refused: every range ipaddr.js does not call `unicast` (unspecified,
 * private, loopback, link-local, CGNAT, reserved, documentation, benchmarking, broadcast,
 * multicast, IPv6 ULA, 6to4, Teredo, NAT64 local-use, ...) and IPv6 outside 2000::/3. An
 * IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 well-known-prefix (`64:ff9b::a.b.c.d`) address is
 * judged by the IPv4 address inside it. Anything that is not an IP address is refused.
 *
 * @param address - an IP address; IPv6 may be bracketed and may carry a zone (`fe80::1%eth0`).
 * @param allow - CIDRs or single IPs let through although not public.
 * @throws InvalidArgumentError when an `allow` entry is malformed.
 *
 * @example
 * ```ts
 * refusedReason('8.8.8.8'); // undefined
 * refusedReason('169.254.169.254'); // 'linkLocal'
 * refusedReason('::ffff:10.0.0.1'); // 'private (IPv4-mapped)'
 * refusedReason('10.1.2.3', ['10.0.0.0/8']); // undefined
 * ```
 */
export function refusedReason(address: string, allow: readonly AllowEntry[] = []): string | undefined {
  return classify(address, compileAllow(allow));
}

/**
 * Creates the address guard for a dispatcher's `guard` option. See {@link AddressGuard} for how
 * the four checks fit together.
 *
 * @throws InvalidArgumentError for an unknown policy or a malformed `allow` entry.
 *
 * @example
 * ```ts
 * import { Agent, buildConnector, request } from 'undici';
 *
 * const guard = createAddressGuard({ policy: 'public-only', allow: ['10.20.0.0/16'] });
 * const agent = new Agent({ connect: guard.wrapConnector(buildConnector({ lookup: guard.lookup })) });
 * guard.checkUrl(url);
 * await request(url, { dispatcher: agent }); // rejects with BlockedAddressError for refused targets
 * ```
 */
export function createAddressGuard(setting: GuardSetting): AddressGuard {
  const allow = compileAllow(readSetting(setting));
  // A localhost name means "this machine" whatever the resolver says, so it is refused by name,
  // unless loopback was allowed on purpose; lookup() still checks what it resolves to.
  const localhostAllowed = classify('127.0.0.1', allow) === undefined || classify('::1', allow) === undefined;

  function checkAddress(host: string, address: string): void {
    const why = classify(address, allow);
    if (why !== undefined) throw new BlockedAddressError(host, address, why);
  }

  const lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) {
        callback(error, options.all === true ? [] : '');
        return;
      }
      const blocked = firstBlocked(hostname, addresses);
      if (blocked !== undefined) {
        callback(blocked, options.all === true ? [] : '');
        return;
      }
      if (options.all === true) {
        callback(null, addresses);
        return;
      }
      const [first] = addresses;
      if (first === undefined) {
        callback(new NetworkError(`${hostname} resolved to no addresses`, { beforeSent: true }), '');
        return;
      }
      callback(null, first.address, first.family);
    });
  };

  function firstBlocked(
    hostname: string,
    addresses: readonly LookupAddress[],
  ): BlockedAddressError | undefined {
    for (const { address } of addresses) {
      const why = classify(address, allow);
      if (why !== undefined) return new BlockedAddressError(hostname, address, why);
    }
    return undefined;
  }

  return {
    checkUrl(url) {
      const host = url.hostname;
      const literal = unbracket(host);
      // The WHATWG parser has already turned 2130706433, 0x7f.1 and 127.1 into dotted quads for
      // http(s); anything else that is not an IP goes through the resolver and so through lookup().
      if (isIP(literal) !== 0) {
        checkAddress(host, literal);
        return;
      }
      if (!localhostAllowed && isLocalhostName(host)) {
        throw new BlockedAddressError(host, host, 'localhost name');
      }
    },

    lookup,

    checkAddress,

    wrapConnector(connector) {
      return (options, callback) => {
        const host = options.hostname;
        const literal = unbracket(host);
        // net.connect skips the lookup function for IP literals, so they are judged here,
        // before anything is dialled.
        if (isIP(literal) !== 0) {
          const why = classify(literal, allow);
          if (why !== undefined) {
            process.nextTick(callback, new BlockedAddressError(host, literal, why), null);
            return;
          }
        }
        connector(options, (...result: Parameters<buildConnector.Callback>) => {
          const [error, socket] = result;
          if (error !== null) {
            callback(error, null);
            return;
          }
          const refusal = checkConnected(host, socket);
          if (refusal === undefined) {
            callback(null, socket);
            return;
          }
          socket.destroy();
          callback(refusal, null);
        });
      };
    },
  };

  // The backstop: whatever the resolver or a custom connector did, this is where bytes would go.
  function checkConnected(host: string, socket: Socket): Error | undefined {
    const address = socket.remoteAddress;
    if (address === undefined) {
      return new NetworkError(`connection to ${host} closed before its address could be checked`, {
        beforeSent: true,
      });
    }
    const why = classify(address, allow);
    return why === undefined ? undefined : new BlockedAddressError(host, address, why);
  }
}

function readSetting(setting: GuardSetting): readonly unknown[] {
  if (setting === 'public-only') return [];
  if (
    typeof setting === 'object' &&
    setting !== null &&
    (setting as { policy?: unknown }).policy === 'public-only'
  ) {
    const allow: unknown = setting.allow ?? [];
    if (!Array.isArray(allow)) {
      throw new InvalidArgumentError('guard.allow must be an array of CIDRs or IP addresses');
    }
    return allow as unknown[];
  }
  throw new InvalidArgumentError(`guard must be 'public-only' or { policy: 'public-only', allow? }`);
}

// Entries are unknown rather than strings: settings may come from plain JavaScript or JSON config.
function compileAllow(entries: readonly unknown[]): readonly Cidr[] {
  return entries.map((entry) => {
    const cidr = parseAllowEntry(entry);
    if (cidr === undefined) {
      throw new InvalidArgumentError(
        `guard.allow entry ${typeof entry === 'string' ? JSON.stringify(entry) : typeof entry} is not a CIDR ("10.0.0.0/8", "fd00::/8") or an IP address`,
      );
    }
    return cidr;
  });
}

function parseAllowEntry(entry: unknown): Cidr | undefined {
  if (typeof entry !== 'string') return undefined;
  const slash = entry.indexOf('/');
  const text = slash === -1 ? entry : entry.slice(0, slash);
  const prefix = slash === -1 ? undefined : entry.slice(slash + 1);
  let address: IP;
  // ipaddr.js also reads "10" or "0x7f.1" as IPv4; in an allowlist such a typo would silently
  // open 0.0.0.10/8, so only the dotted quad is accepted.
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) address = ipaddr.IPv4.parse(text);
  else if (ipaddr.IPv6.isValid(text) && !text.includes('%')) address = ipaddr.IPv6.parse(text);
  else return undefined;
  const max = address.kind() === 'ipv4' ? 32 : 128;
  if (prefix === undefined) return [address, max];
  if (!/^\d{1,3}$/.test(prefix)) return undefined;
  const bits = Number(prefix);
  return bits <= max ? [address, bits] : undefined;
}

function classify(address: string, allow: readonly Cidr[]): string | undefined {
  const text = unbracket(address);
  // A zone only says which interface a link-local address is on; the address decides.
  const zone = text.indexOf('%');
  const bare = zone === -1 ? text : text.slice(0, zone);
  if (!ipaddr.isValid(bare)) return 'not an IP address';
  const ip = ipaddr.parse(bare);
  if (allowed(ip, allow)) return undefined;
  if (ip.kind() === 'ipv4') return classifyV4(ip as ipaddr.IPv4, allow);

  const v6 = ip as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return withContext(classifyV4(lastFourBytes(v6), allow), 'IPv4-mapped');
  if (v6.match(NAT64_WELL_KNOWN)) return withContext(classifyV4(lastFourBytes(v6), allow), 'NAT64');
  const range = v6.range();
  if (range !== 'unicast') return range;
  if (!v6.match(GLOBAL_UNICAST)) return 'not global unicast (outside 2000::/3)';
  return undefined;
}

function classifyV4(ip: ipaddr.IPv4, allow: readonly Cidr[]): string | undefined {
  if (allowed(ip, allow)) return undefined;
  const range = ip.range();
  return range === 'unicast' ? undefined : range;
}

// ipaddr's toIPv4Address() only converts ::ffff:a.b.c.d; NAT64 carries the IPv4 address in the
// same place (RFC 6052, /96 prefix).
function lastFourBytes(ip: ipaddr.IPv6): ipaddr.IPv4 {
  const bytes = ip.toByteArray().slice(12);
  return new ipaddr.IPv4(bytes);
}

function allowed(ip: IP, allow: readonly Cidr[]): boolean {
  for (const [network, bits] of allow) {
    // match() throws across families, so compare kinds first.
    if (network.kind() === ip.kind() && ip.match(network, bits)) return true;
  }
  return false;
}

function withContext(reason: string | undefined, context: string): string | undefined {
  return reason === undefined ? undefined : `${reason} (${context})`;
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function isLocalhostName(host: string): boolean {
  // DNS treats "localhost." and "localhost" alike, and RFC 6761 reserves the whole .localhost
  // zone for loopback.
  const name = host.toLowerCase().replace(/\.+$/, '');
  return name === 'localhost' || name.endsWith('.localhost');
}
