import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it('pnpm demo:durable: every acknowledged notification is delivered after the kill, exit 0', async () => {
  const script = fileURLToPath(new URL('../../examples/durable/demo.mjs', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  expect(out).toContain('killed with SIGKILL mid-flight');
  expect(out).toMatch(/ready: \d+ notifications recovered/);
  expect(out).toMatch(/acknowledged 20, delivered after the restart 20, lost 0/);
  expect(out.match(/delivered {2}order/g)?.length).toBeGreaterThanOrEqual(20);
  expect(code).toBe(0);
}, 30_000);
