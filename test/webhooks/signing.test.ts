/**
 * Standard Webhooks signing, end to end: a real dispatcher on undici, a real receiver, and the
 * reference implementation (`standardwebhooks`) doing the verifying, never our own code.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { startReceiver, type ReceivedRequest } from '../support/index.js';
import {
  createDispatcher,
  recordingLogger,
  track,
  trackDispatcher,
  type DispatcherOptions,
} from './support.js';

const secret = (): string => `whsec_${randomBytes(24).toString('base64')}`;

/** The three Standard Webhooks headers of a received request, as `Webhook.verify` takes them. */
function webhookHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const value = headers[name];
    if (typeof value === 'string') out[name] = value;
  }
  return out;
}

function verifies(key: string, req: ReceivedRequest, headers = webhookHeaders(req.headers)): boolean {
  try {
    new Webhook(key).verify(req.body, headers);
    return true;
  } catch (error) {
    if (error instanceof WebhookVerificationError) return false;
    throw error;
  }
}

/** A receiver that, like a real one, answers 400 to anything `standardwebhooks` does not verify. */
async function verifyingReceiver(key: string) {
  return track(
    await startReceiver((req, res) => {
      res.statusCode = verifies(key, req) ? 204 : 400;
      res.end();
    }),
  );
}

function dispatcher(options: DispatcherOptions) {
  return trackDispatcher(createDispatcher({ logger: recordingLogger(), ...options }));
}

describe('signing, verified by the standardwebhooks reference implementation', () => {
  it('signs a JSON notification so that Webhook.verify accepts it and returns the payload', async () => {
    const key = secret();
    const receiver = await verifyingReceiver(key);
    const payload = { type: 'invoice.paid', data: { id: 'in_1', customer: 'Zoë', note: '🚀 ünïcödé' } };

    const handle = dispatcher({ signing: { secret: key } }).send(`${receiver.url}/hooks`, { json: payload });
    const result = await handle.done;

    expect(result.state).toBe('delivered');
    const [req] = receiver.requests;
    expect(new Webhook(key).verify(req!.body, webhookHeaders(req!.headers))).toEqual(payload);
    expect(req!.headers['webhook-id']).toBe(handle.id);
    expect(req!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(Math.abs(Number(req!.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(60);
  });

  it('signs the exact bytes of a pre-serialised body, whitespace and escapes included', async () => {
    const key = secret();
    const receiver = await verifyingReceiver(key);
    // The reference library decodes the payload as UTF-8 and JSON-parses it once verified, so
    // the body must be JSON; its bytes are sent and signed exactly as given.
    const body = Buffer.from('{ "b": 1,\r\n  "a": "\\u00e9 é",\t"z": [ ] }\n');

    const result = await dispatcher({ signing: { secret: key } }).send(receiver.url, {
      body,
      headers: { 'content-type': 'application/json' },
    }).done;

    expect(result.state).toBe('delivered');
    expect(receiver.requests[0]!.body.equals(body)).toBe(true);
  });

  it('keeps webhook-id across a retry and signs each attempt with its own fresh timestamp', async () => {
    const key = secret();
    const receiver = track(
      await startReceiver((req, res) => {
        // Retry-After: 1 puts the retry at least a second later, so its timestamp must differ.
        if (receiver.requests.length === 1) {
          res.writeHead(503, { 'retry-after': '1' });
          res.end();
          return;
        }
        res.statusCode = verifies(key, req) ? 204 : 400;
        res.end();
      }),
    );

    const handle = dispatcher({ signing: { secret: key } }).send(receiver.url, { json: { n: 1 } });
    const result = await handle.done;

    expect(result).toMatchObject({ state: 'delivered', attempts: 2 });
    const [first, second] = receiver.requests;
    const h1 = webhookHeaders(first!.headers);
    const h2 = webhookHeaders(second!.headers);
    expect(h1['webhook-id']).toBe(handle.id);
    expect(h2['webhook-id']).toBe(handle.id);
    expect(Number(h2['webhook-timestamp'])).toBeGreaterThan(Number(h1['webhook-timestamp']));
    expect(h2['webhook-signature']).not.toBe(h1['webhook-signature']);
    expect(verifies(key, first!)).toBe(true);
    expect(verifies(key, second!)).toBe(true);
    // A signature is bound to its timestamp: the first attempt's does not pass for the second.
    expect(verifies(key, second!, { ...h2, 'webhook-signature': h1['webhook-signature']! })).toBe(false);
  });

  it('sends no signature with sign: false, and keeps the id for idempotency', async () => {
    const key = secret();
    const receiver = track(await startReceiver());

    const handle = dispatcher({ signing: { secret: key } }).send(receiver.url, {
      json: { unsigned: true },
      sign: false,
    });
    const result = await handle.done;

    expect(result.state).toBe('delivered');
    const [req] = receiver.requests;
    expect(req!.headers['webhook-signature']).toBeUndefined();
    expect(req!.headers['webhook-timestamp']).toBeUndefined();
    expect(req!.headers['webhook-id']).toBe(handle.id);
    expect(verifies(key, req!)).toBe(false);
  });

  it('signs with every secret during a rotation, so receivers on either secret verify', async () => {
    const previous = secret();
    const next = secret();
    const receiver = track(await startReceiver());

    const result = await dispatcher({ signing: { secrets: [previous, next] } }).send(receiver.url, {
      json: { rotating: true },
    }).done;

    expect(result.state).toBe('delivered');
    const [req] = receiver.requests;
    const signatures = String(req!.headers['webhook-signature']).split(' ');
    expect(signatures).toHaveLength(2);
    for (const signature of signatures) expect(signature).toMatch(/^v1,/);
    expect(verifies(previous, req!)).toBe(true);
    expect(verifies(next, req!)).toBe(true);
    expect(verifies(secret(), req!)).toBe(false);
  });

  it('is verified by a receiver that enforces signatures, for every notification in a burst', async () => {
    const key = secret();
    const receiver = await verifyingReceiver(key);
    const send = dispatcher({ signing: { secret: key } });

    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => send.send(receiver.url, { json: { i } }).done),
    );

    expect(results.map((r) => r.state)).toEqual(Array(20).fill('delivered'));
    expect(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size).toBe(20);
  });
});
