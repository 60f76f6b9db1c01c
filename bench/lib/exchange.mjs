// A request and its response with no connection behind them, for benches that call an app's
// handler directly (bench/adapter-cost.mjs, bench/audit-pair.mjs): what the server would hand the
// handler for `GET <url>`, on a socket that is never written to.
import { IncomingMessage, ServerResponse } from 'node:http';

/** `{ req, res }` for `GET url` on `socket` (one idle socket serves every request). */
export function directGet(socket, url = '/order') {
  const req = new IncomingMessage(socket);
  req.method = 'GET';
  req.url = url;
  req.headers = { host: '127.0.0.1' };
  req.complete = true;
  return { req, res: new ServerResponse(req) };
}
