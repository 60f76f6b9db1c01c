// The Express app of bench/cpu.mjs's row 3, as the paired benches load it in their app processes.

/**
 * Adds `GET /order` (a small JSON answer) to an Express app and listens on 127.0.0.1, port 0,
 * with long keep-alive; counts the requests served.
 * @param {import('express').Express} app
 */
export async function listenOrder(app) {
  app.get('/order', (_req, res) => {
    res.json({ ok: true });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  server.keepAliveTimeout = 60_000;
  const counter = { served: 0 };
  server.on('request', () => {
    counter.served += 1;
  });
  return { server, counter, url: `http://127.0.0.1:${server.address().port}/order` };
}
