/**
 * Webhook URLs are secrets (Slack/Discord carry the token in the path, others in `?token=`): by
 * default nothing afterward logs, and no error message it makes, holds the userinfo, path or
 * query of a target URL. Log lines carry the origin and the notification id instead.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher } from '../src/index.js';
import { rateLimitLogger } from '../src/util/logger.js';
import { redactUrl } from '../src/util/redact-url.js';
import { recordingLogger, startReceiver, type Receiver } from '../../../test/support/index.js';

const SECRETS = ['USERSECRET', 'PASSSECRET', 'PATHSECRET', 'QUERYSECRET'];
const SECRET_TAIL = '/services/T000/PATHSECRET?token=QUERYSECRET';

/** Everything a pino-style serialiser could print of a value: own fields, messages, causes. */
function dump(value: unknown, seen = new Set<unknown>()): string {
  if (typeof value !== 'object' || value === null) return String(value);
  if (seen.has(value)) return '';
  seen.add(value);
  const parts: string[] = [];
  if (value instanceof Error) parts.push(value.message, value.stack ?? '', dump(value.cause, seen));
  for (const [key, inner] of Object.entries(value)) parts.push(key, dump(inner, seen));
  return parts.join(' ');
}

function expectNoSecret(text: string): void {
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function receiver(status: number): Promise<Receiver> {
  const r = await startReceiver((_req, res) => {
    res.statusCode = status;
    res.end();
  });
  cleanups.push(() => r.close());
  return r;
}

function dispatcher(options: Parameters<typeof createDispatcher>[0]): Dispatcher {
  const d = createDispatcher(options);
  cleanups.push(() => d.close({ timeout: 1_000 }));
  return d;
}

async function refusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('target URLs in logs and error messages', () => {
  it('a failed notification (HTTP 500) logs origin and id, never userinfo, path or query', async () => {
    const r = await receiver(500);
    const logger = recordingLogger();
    const d = dispatcher({ logger, retry: false });
    const target = `http://USERSECRET:PASSSECRET@127.0.0.1:${r.port}${SECRET_TAIL}`;
    const handle = d.send(target);
    const result = await handle.done;
    expect(result.state).toBe('failed');
    // In-process, the handle keeps what it was sent to (userinfo moved to Authorization).
    expect(handle.url).toContain('PATHSECRET');
    const failed = logger.lines.find((c) => c.msg === 'afterward: notification failed');
    expect(failed?.obj).toMatchObject({ id: handle.id, origin: r.origin });
    expect(failed?.obj).not.toHaveProperty('url');
    expectNoSecret(dump(logger.lines));
    expectNoSecret(dump(result.error));
  });

  it('a refused connection: the NetworkError and its log line name only the origin', async () => {
    const port = await refusedPort();
    const logger = recordingLogger();
    const d = dispatcher({ logger, retry: false });
    const handle = d.send(`http://127.0.0.1:${port}${SECRET_TAIL}`);
    const result = await handle.done;
    expect(result.error?.code).toBe('AFTERWARD_ERR_NETWORK');
    expect(logger.lines.some((c) => c.obj['origin'] === `http://127.0.0.1:${port}`)).toBe(true);
    expectNoSecret(dump(logger.lines));
    expectNoSecret(dump(result.error));
  });

  it('a dropped notification logs origin and id only', async () => {
    const r = await startReceiver((_req, res) => void setTimeout(() => res.end(), 200));
    cleanups.push(() => r.close());
    const logger = recordingLogger();
    const d = dispatcher({ logger, retry: false, concurrency: 1, maxQueued: 1 });
    const handles = [1, 2, 3].map((n) => d.send(`${r.url}${SECRET_TAIL}&n=${n}`));
    const results = await Promise.all(handles.map((h) => h.done));
    const dropped = handles.find((_h, i) => results[i]?.state === 'dropped');
    const line = logger.lines.find((c) => c.msg === 'afterward: notification dropped');
    expect(line?.obj).toMatchObject({ id: dropped?.id, origin: r.origin });
    expectNoSecret(dump(logger.lines));
  });

  it('a guard refusal (BlockedAddressError) names the host, never the path or query', async () => {
    const r = await receiver(204);
    const logger = recordingLogger();
    const d = dispatcher({ logger, retry: false, guard: 'public-only' });
    const result = await d.send(`http://USERSECRET:PASSSECRET@127.0.0.1:${r.port}${SECRET_TAIL}`).done;
    expect(result.error?.code).toBe('AFTERWARD_ERR_BLOCKED_ADDRESS');
    expect(r.connections).toBe(0);
    expectNoSecret(dump(logger.lines));
    expectNoSecret(dump(result.error));
  });

  it("logs the full URL only when asked for ('full')", () => {
    const target = recordingLogger();
    const full = rateLimitLogger(target, 1_000, 'full');
    full.warn({ id: '1', url: `https://h.example${SECRET_TAIL}` }, 'a');
    expect(target.lines[0]?.obj['url']).toBe(`https://h.example${SECRET_TAIL}`);
    const redacted = rateLimitLogger(target);
    redacted.warn({ id: '2', url: `https://h.example${SECRET_TAIL}` }, 'b');
    expect(target.lines[1]?.obj).toEqual({ id: '2', origin: 'https://h.example' });
    redacted.debug?.({ url: new URL(`https://h.example:8443${SECRET_TAIL}`) }, 'c');
    expect(target.lines[2]?.obj).toEqual({ origin: 'https://h.example:8443' });
  });

  it('redactUrl keeps scheme, host and port of parsable and unparsable inputs', () => {
    expect(redactUrl(`https://USERSECRET:PASSSECRET@h.example${SECRET_TAIL}`)).toBe('https://h.example/…');
    expect(redactUrl('https://h.example')).toBe('https://h.example');
    expect(redactUrl('https://h.example:8443/')).toBe('https://h.example:8443');
    expect(redactUrl(`https://USERSECRET:PASSSECRET@exa mple.com${SECRET_TAIL}`)).toBe(
      'https://exa mple.com/…',
    );
    expect(redactUrl(`hooks.slack.com${SECRET_TAIL}`)).toBe('hooks.slack.com/…');
    expect(redactUrl('not a url')).toBe('not a url');
    for (const input of [
      `http://[::1${SECRET_TAIL}`,
      `//USERSECRET:PASSSECRET@x${SECRET_TAIL}`,
      `?token=QUERYSECRET`,
    ]) {
      expectNoSecret(redactUrl(input));
    }
  });
});

describe("a custom transport's error text", () => {
  it('is copied into the NetworkError message with URLs cut to their origin and the path taken out', async () => {
    const url = `http://USERSECRET:PASSSECRET@127.0.0.1:9${SECRET_TAIL}`;
    const d = dispatcher({
      retry: false,
      transport: {
        send: (request) =>
          Promise.reject(new Error(`fetch ${request.url.href} failed; path ${request.path}; ${url}`)),
        close: () => Promise.resolve(),
      },
    });
    const result = await d.send(url).done;
    expect(result.state).toBe('failed');
    expect(result.error?.message).toContain('http://127.0.0.1:9/…');
    expectNoSecret(result.error?.message ?? '');
  });
});
