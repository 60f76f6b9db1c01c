/**
 * How target URLs appear in log lines: `'origin'` (the default) keeps scheme, host and port only,
 * because webhook URLs carry their secret in the path (Slack, Discord) or the query (`?token=`);
 * `'full'` logs them whole, for a deployment whose logs are as private as its configuration.
 */
export type LogUrls = 'origin' | 'full';

/**
 * A target URL as it may appear in a log line or an error message: scheme, host and port, with
 * `/…` where userinfo, a path or a query was left out. Never throws, also for an unparsable input,
 * where it keeps what reads as a host and elides the rest.
 *
 * @example
 * ```ts
 * redactUrl('https://user:pw@hooks.example.com/T1/B2/secret?token=x'); // 'https://hooks.example.com/…'
 * ```
 */
export function redactUrl(input: string | URL): string {
  let url: URL | undefined;
  if (input instanceof URL) url = input;
  else if (URL.canParse(input)) url = new URL(input);
  if (url !== undefined) {
    const origin = `${url.protocol}//${url.host}`;
    const elided =
      url.username !== '' ||
      url.password !== '' ||
      url.search !== '' ||
      (url.pathname !== '/' && url.pathname !== '');
    return elided ? `${origin}/…` : origin;
  }
  // Unparsable: keep an optional scheme and what stands where the host would, drop userinfo and
  // everything from the first '/', '?' or '#'.
  const text = String(input);
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(text)?.[0] ?? '';
  let rest = text.slice(scheme.length);
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  const at = authority.lastIndexOf('@');
  rest = at === -1 ? authority : authority.slice(at + 1);
  const host = rest.length > 60 ? `${rest.slice(0, 60)}…` : rest;
  return `${scheme}${host}${end === -1 && at === -1 ? '' : '/…'}`;
}

/** The origin of a target URL for a log line (`'null'`-free, also for an unparsable one). */
export function originOfUrl(input: string | URL): string {
  const redacted = redactUrl(input);
  return redacted.endsWith('/…') ? redacted.slice(0, -2) : redacted;
}
