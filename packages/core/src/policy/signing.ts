import { createHmac } from 'node:crypto';
import { InvalidArgumentError } from '../util/errors.js';

/**
 * Secrets for Standard Webhooks signatures. Give exactly one of `secret` or `secrets`.
 *
 * A secret is `whsec_` followed by the base64 of the key bytes, the form Standard Webhooks
 * libraries print and accept; plain base64 without the prefix is accepted too, as the reference
 * library does.
 *
 * @example
 * ```ts
 * const options: SigningOptions = { secrets: [process.env.WEBHOOK_SECRET_NEW!, process.env.WEBHOOK_SECRET_OLD!] };
 * ```
 */
export interface SigningOptions {
  /** The one secret to sign with. */
  secret?: string;
  /**
   * Several secrets, for rotation: every request carries one signature per secret, in this
   * order, so receivers still on the old secret keep verifying while they move to the new one.
   */
  secrets?: readonly string[];
}

/**
 * Computes the value of the `webhook-signature` header.
 *
 * @example
 * ```ts
 * const signature = signer.sign(id, Math.floor(Date.now() / 1000), body);
 * headers['webhook-signature'] = signature;
 * ```
 */
export interface Signer {
  /**
   * Signs `${id}.${timestampSeconds}.${body}` with every secret.
   *
   * @param id - the `webhook-id` header value.
   * @param timestampSeconds - the `webhook-timestamp` header value: whole seconds since the epoch.
   * @param body - the exact bytes sent (a string is signed as UTF-8).
   * @returns `v1,<base64>` per secret, space-separated, in the order the secrets were given.
   * @throws InvalidArgumentError when `timestampSeconds` is not a non-negative integer.
   *
   * @example
   * ```ts
   * signer.sign('msg_1', 1_700_000_000, '{"ok":true}'); // 'v1,<base64>' (one per secret, space-separated)
   * ```
   */
  sign(id: string, timestampSeconds: number, body: Uint8Array | string): string;
}

const PREFIX = 'whsec_';
// Standard base64 alphabet with optional padding, as the reference decoder (@stablelib/base64)
// reads it: URL-safe characters, whitespace and padding in the middle are refused there too.
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Creates a {@link Signer} for Standard Webhooks signatures (HMAC-SHA256, `v1,` scheme). Secrets
 * are decoded and checked here, once, so a bad secret fails at startup and signing stays cheap.
 *
 * @throws InvalidArgumentError when neither or both of `secret`/`secrets` are given, when
 * `secrets` is empty, or when a secret is empty or not base64 (after an optional `whsec_` prefix).
 *
 * @example
 * ```ts
 * const signer = createSigner({ secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' });
 * const id = crypto.randomUUID();
 * const timestamp = Math.floor(Date.now() / 1000);
 * const headers = {
 *   'webhook-id': id,
 *   'webhook-timestamp': String(timestamp),
 *   'webhook-signature': signer.sign(id, timestamp, body),
 * };
 * ```
 */
export function createSigner(options: SigningOptions): Signer {
  const keys = decodeSecrets(options);
  return {
    sign(id, timestampSeconds, body) {
      // A fraction or an exponent would be signed as written and never match the integer that
      // receivers parse out of webhook-timestamp.
      if (!Number.isSafeInteger(timestampSeconds) || timestampSeconds < 0) {
        throw new InvalidArgumentError(
          `timestampSeconds must be a non-negative integer, got ${timestampSeconds}`,
        );
      }
      const signed = `${id}.${timestampSeconds}.`;
      let header = '';
      for (const key of keys) {
        // Two updates rather than one concatenated string: the body is hashed as the bytes that
        // go on the wire, without copying or re-decoding a Buffer.
        const mac = createHmac('sha256', key).update(signed).update(body).digest('base64');
        header = header === '' ? `v1,${mac}` : `${header} v1,${mac}`;
      }
      return header;
    },
  };
}

function decodeSecrets(options: SigningOptions): Buffer[] {
  const { secret, secrets } = options;
  if (secret !== undefined && secrets !== undefined) {
    throw new InvalidArgumentError('signing: give either `secret` or `secrets`, not both');
  }
  if (secret !== undefined) return [decodeSecret(secret, 'signing.secret')];
  if (secrets === undefined) {
    throw new InvalidArgumentError('signing: give `secret` or `secrets`');
  }
  if (!Array.isArray(secrets) || secrets.length === 0) {
    throw new InvalidArgumentError('signing.secrets must be a non-empty array of secrets');
  }
  return secrets.map((value, index) => decodeSecret(value, `signing.secrets[${index}]`));
}

function decodeSecret(secret: unknown, label: string): Buffer {
  // Messages never echo the secret: they end up in logs and crash reports.
  if (typeof secret !== 'string') {
    throw new InvalidArgumentError(`${label} must be a string like "whsec_<base64>"`);
  }
  const encoded = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  if (encoded === '') {
    throw new InvalidArgumentError(`${label} is empty`);
  }
  // Node's own base64 decoder skips characters it does not know, so "whsec_" followed by
  // anything would otherwise become some key; receivers using the reference library would then
  // reject every signature. Check the shape first.
  if (
    !BASE64.test(encoded) ||
    encoded.length % 4 === 1 ||
    (encoded.includes('=') && encoded.length % 4 !== 0)
  ) {
    throw new InvalidArgumentError(
      `${label} is not a valid secret: expected "whsec_" followed by standard base64 (A-Z a-z 0-9 + / and = padding, no spaces)`,
    );
  }
  // The shape check leaves at least two base64 digits, so the key is never empty.
  return Buffer.from(encoded, 'base64');
}
