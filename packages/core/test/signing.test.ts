import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, it, expect } from 'vitest';
import { InvalidArgumentError } from '../src/util/errors.js';
import { createSigner } from '../src/policy/signing.js';

// Secrets in the form Standard Webhooks documents: whsec_ + base64 of 24 random bytes.
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const OTHER = `whsec_${randomBytes(32).toString('base64')}`;

function headers(id: string, timestamp: number, signature: string): Record<string, string> {
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature };
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}

describe('createSigner', () => {
  it('produces signatures the standardwebhooks reference library verifies', () => {
    const signer = createSigner({ secret: SECRET });
    const id = 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W';
    const timestamp = now();
    const body = JSON.stringify({ type: 'user.created', data: { id: 42, name: 'Zoë 🚀' } });

    const signature = signer.sign(id, timestamp, body);

    expect(signature).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(new Webhook(SECRET).verify(body, headers(id, timestamp, signature))).toEqual(JSON.parse(body));
  });

  it('matches the reference signature byte for byte', () => {
    const signer = createSigner({ secret: SECRET });
    const timestamp = 1_700_000_000;
    const expected = new Webhook(SECRET).sign('msg_1', new Date(timestamp * 1000), '{"ok":true}');
    expect(signer.sign('msg_1', timestamp, '{"ok":true}')).toBe(expected);
  });

  it('signs an empty body', () => {
    const timestamp = now();
    const signature = createSigner({ secret: SECRET }).sign('msg_empty', timestamp, '');
    expect(new Webhook(SECRET).verify('', headers('msg_empty', timestamp, signature))).toBeUndefined();
  });

  it('gives the same signature for a Buffer, a Uint8Array and a string body', () => {
    const signer = createSigner({ secret: SECRET });
    const text = '{"emoji":"🎉","n":1}';
    const buffer = Buffer.from(text);
    const bytes = new Uint8Array(buffer);
    const timestamp = now();

    const fromString = signer.sign('msg_b', timestamp, text);
    expect(signer.sign('msg_b', timestamp, buffer)).toBe(fromString);
    expect(signer.sign('msg_b', timestamp, bytes)).toBe(fromString);
    expect(() => new Webhook(SECRET).verify(buffer, headers('msg_b', timestamp, fromString))).not.toThrow();
  });

  it('accepts a secret without the whsec_ prefix, as the reference library does', () => {
    const bare = SECRET.slice('whsec_'.length);
    const timestamp = now();
    const signature = createSigner({ secret: bare }).sign('msg_p', timestamp, 'x');
    expect(signature).toBe(createSigner({ secret: SECRET }).sign('msg_p', timestamp, 'x'));
    expect(() =>
      new Webhook(bare).verify('x', headers('msg_p', timestamp, signature), { jsonParse: false }),
    ).not.toThrow();
  });

  it('decodes secrets exactly as the reference library does', () => {
    const timestamp = 1_700_000_000;
    // Padded, unpadded and odd lengths: the key bytes must agree or receivers reject everything.
    const secrets = [
      SECRET,
      `whsec_${randomBytes(64).toString('base64')}`,
      `whsec_${randomBytes(25).toString('base64')}`,
      `whsec_${randomBytes(26).toString('base64')}`,
      `whsec_${randomBytes(26).toString('base64').replace(/=+$/, '')}`,
      'whsec_YWI=',
      'whsec_+/+/',
    ];
    for (const secret of secrets) {
      const expected = new Webhook(secret).sign('msg_d', new Date(timestamp * 1000), 'payload');
      expect(createSigner({ secret }).sign('msg_d', timestamp, 'payload'), secret).toBe(expected);
    }
  });

  describe('rotation', () => {
    it('emits one space-separated signature per secret, in the order given', () => {
      const timestamp = now();
      const body = '{"rotate":true}';
      const both = createSigner({ secrets: [SECRET, OTHER] }).sign('msg_r', timestamp, body);
      const parts = both.split(' ');

      expect(parts).toEqual([
        createSigner({ secret: SECRET }).sign('msg_r', timestamp, body),
        createSigner({ secret: OTHER }).sign('msg_r', timestamp, body),
      ]);
      expect(new Webhook(SECRET).verify(body, headers('msg_r', timestamp, both))).toEqual({ rotate: true });
      expect(new Webhook(OTHER).verify(body, headers('msg_r', timestamp, both))).toEqual({ rotate: true });
    });

    it('does not verify with a secret that was not used', () => {
      const timestamp = now();
      const both = createSigner({ secrets: [SECRET, OTHER] }).sign('msg_w', timestamp, '{}');
      const stranger = new Webhook(`whsec_${randomBytes(24).toString('base64')}`);
      expect(() => stranger.verify('{}', headers('msg_w', timestamp, both))).toThrow(/No matching signature/);
    });

    it('does not verify a tampered body, id or timestamp', () => {
      const timestamp = now();
      const signature = createSigner({ secret: SECRET }).sign('msg_t', timestamp, '{"a":1}');
      const webhook = new Webhook(SECRET);
      expect(() => webhook.verify('{"a":2}', headers('msg_t', timestamp, signature))).toThrow();
      expect(() => webhook.verify('{"a":1}', headers('msg_u', timestamp, signature))).toThrow();
      expect(() => webhook.verify('{"a":1}', headers('msg_t', timestamp - 1, signature))).toThrow();
    });
  });

  describe('bad options', () => {
    it.each([
      ['neither secret nor secrets', {}],
      ['both secret and secrets', { secret: SECRET, secrets: [OTHER] }],
      ['an empty secrets list', { secrets: [] }],
    ])('throws InvalidArgumentError for %s', (_label, options) => {
      expect(() => createSigner(options)).toThrow(InvalidArgumentError);
    });

    it.each([
      ['empty', ''],
      ['only the prefix', 'whsec_'],
      ['URL-safe base64', 'whsec_ab-_cd-_'],
      ['whitespace', 'whsec_YWJj ZGVm'],
      ['a trailing newline', 'whsec_YWJjZGVm\n'],
      ['padding in the middle', 'whsec_YW=jZGVm'],
      ['padding without a full quantum', 'whsec_YWJjZ='],
      ['too much padding', 'whsec_YQ==='],
      ['a dangling base64 digit', 'whsec_YWJjZ'],
      ['not base64 at all', 'whsec_hunter2!'],
    ])('throws InvalidArgumentError for a secret that is %s', (_label, secret) => {
      expect(() => createSigner({ secret })).toThrow(InvalidArgumentError);
    });

    it('names which secret of a list is bad, without echoing it', () => {
      const bad = 'whsec_not base64!';
      let caught: unknown;
      try {
        createSigner({ secrets: [SECRET, bad] });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(InvalidArgumentError);
      expect((caught as Error).message).toContain('signing.secrets[1]');
      expect((caught as Error).message).not.toContain('not base64!');
    });

    it('rejects a non-string secret from plain JavaScript callers', () => {
      expect(() => createSigner({ secret: 42 as unknown as string })).toThrow(InvalidArgumentError);
    });

    it.each([1.5, -1, Number.NaN, 1e21])('throws InvalidArgumentError for timestamp %s', (timestamp) => {
      expect(() => createSigner({ secret: SECRET }).sign('msg', timestamp, '')).toThrow(InvalidArgumentError);
    });
  });
});
