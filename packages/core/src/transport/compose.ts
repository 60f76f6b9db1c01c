import { createAddressGuard, type GuardSetting } from '../policy/guard.js';
import { createSigner, type SigningOptions } from '../policy/signing.js';
import { checkObject } from '../options/options.js';
import { InvalidArgumentError } from '../util/errors.js';
import { signedTransport } from './signed.js';
import type { Transport } from './transport.js';
import { createUndiciTransport } from './undici.js';

/**
 * What shapes the transport of a dispatcher or an attempt runner.
 *
 * @example
 * ```ts
 * composeTransport({ guard: 'public-only', maxResponseBytes: 64 * 1024 });
 * ```
 */
export interface TransportSettings {
  /** A transport of your own; undici by default. */
  transport?: Transport | undefined;
  /** Refuse private targets; applies to the built-in transport only. */
  guard?: GuardSetting | undefined;
  /** Sign requests marked `sign`, per attempt, around whichever transport. */
  signing?: SigningOptions | undefined;
  maxResponseBytes: number;
  connectionsPerOrigin?: number | undefined;
}

/**
 * Builds the transport an attempt goes through: undici (with the guard) or yours, wrapped in the
 * signing decorator when there is a secret. Throws InvalidArgumentError on a bad combination.
 *
 * @example
 * ```ts
 * const transport = composeTransport({ signing: { secret }, guard: 'public-only', maxResponseBytes: 65_536 });
 * ```
 */
export function composeTransport(settings: TransportSettings): Transport {
  const { transport, signing } = settings;
  if (
    transport !== undefined &&
    (typeof transport.send !== 'function' || typeof transport.close !== 'function')
  ) {
    throw new InvalidArgumentError('transport must have send() and close() methods');
  }
  const guard = settings.guard === undefined ? undefined : createAddressGuard(settings.guard);
  if (transport !== undefined && guard !== undefined) {
    throw new InvalidArgumentError(
      'guard applies to the built-in transport; pass it to your transport instead',
    );
  }
  const signer = signing === undefined ? undefined : createSigner(checkObject('signing', signing));
  const base =
    transport ??
    createUndiciTransport({
      maxResponseBytes: settings.maxResponseBytes,
      ...(settings.connectionsPerOrigin === undefined
        ? {}
        : { connectionsPerOrigin: settings.connectionsPerOrigin }),
      ...(guard === undefined ? {} : { guard }),
    });
  return signer === undefined ? base : signedTransport(base, signer);
}
