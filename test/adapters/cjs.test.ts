import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);

it("a CommonJS app can require('@afterward/express') and use it end to end", async () => {
  const app = fileURLToPath(new URL('./fixtures/express-app.cjs', import.meta.url));
  const { stdout } = await run(process.execPath, [app], { timeout: 20_000 });
  expect(JSON.parse(stdout)).toEqual({
    status: 201,
    received: [{ route: '/orders/:id', status: 201, id: '42' }],
  });
});
