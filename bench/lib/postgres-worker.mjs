// A delivery worker process for bench/postgres.mjs: the built @afterward/postgres and the TEST
// STAND-IN attempt runner (undici, no signing) until core's createAttemptRunner lands.
import { createWorker, postgresBackend } from '../../packages/postgres/dist/index.js';
import { standInRunner } from '../../packages/postgres/test/fixtures/stand-in-runner.mjs';

const config = JSON.parse(process.argv[2]);
const quiet = { warn: () => undefined, error: () => undefined };
const backend = postgresBackend({ ...config.backend, logger: quiet });
const runner = standInRunner();
const worker = createWorker({ backend, runner, logger: quiet, ...config.worker });
await worker.ready();
const cpu0 = process.cpuUsage();
process.stdout.write('ready\n');
process.once('SIGTERM', async () => {
  const cpu = process.cpuUsage(cpu0);
  await worker.close({ timeout: 1_000 });
  await runner.close();
  await backend.close({ timeout: 1_000 });
  process.stdout.write(
    `${JSON.stringify({ stats: worker.stats(), cpuMs: (cpu.user + cpu.system) / 1000 })}\n`,
  );
  process.exit(0);
});
