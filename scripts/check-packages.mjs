#!/usr/bin/env node
// `pnpm check:packages`: packs every published workspace package the way a release does (`pnpm
// pack`: runs `prepack`, rewrites `workspace:` ranges) and checks what a user would install:
//   - publint (strict) and arethetypeswrong on the tarball, for every entry in its `exports` map;
//   - the packed package.json: no `workspace:` range left, a sibling dependency pinned to the
//     sibling's version, the metadata npm shows (license, repository, homepage, bugs, keywords,
//     engines);
//   - the files: a LICENSE, no `.tsbuildinfo`, every `exports` target present, every source map's
//     sources shipped;
//   - a stack trace under `node --enable-source-maps`, from the packed package installed into a
//     scratch app, names a `.ts` file that exists in the tarball.
// arethetypeswrong ignores one rule, cjs-resolves-to-esm: the packages are ESM only, and CommonJS
// reaches them through require(esm) (Node 22.12+; TypeScript `module: nodenext` from 5.8); the
// README says which TypeScript setups are supported.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'node_modules', '.bin');
const work = mkdtempSync(join(tmpdir(), 'afterward-packages-'));
const keep = process.argv.includes('--keep');

// A call that throws from inside each package, to read a stack trace through its source maps.
// A package not listed here still gets every other check.
const THROWERS = {
  '@afterward/core': "(await import('@afterward/core')).createDispatcher({ notAnOption: 1 })",
  '@afterward/express': "(await import('@afterward/express')).afterward({ notAnOption: 1 })",
  '@afterward/koa': "(await import('@afterward/koa')).afterward({ notAnOption: 1 })",
  '@afterward/sqlite': "new (await import('@afterward/sqlite')).OutboxDb({ path: '' })",
  '@afterward/postgres': "(await import('@afterward/postgres')).postgresBackend({})",
};

const failures = [];
const fail = (pkg, message) => failures.push(`${pkg}: ${message}`);
const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

function run(command, args, options = {}) {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

function listFiles(dir, base = dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? listFiles(path, base) : [relative(base, path)];
  });
}

/** Every file path an `exports` map points at (all conditions, all subpaths). */
function exportTargets(exports) {
  if (typeof exports === 'string') return [exports];
  if (exports === null || typeof exports !== 'object') return [];
  return Object.values(exports).flatMap(exportTargets);
}

const workspace = readdirSync(join(root, 'packages'))
  .map((dir) => ({
    dir: join(root, 'packages', dir),
    manifest: readJson(join(root, 'packages', dir, 'package.json')),
  }))
  .filter(({ manifest }) => manifest.private !== true);
const versions = Object.fromEntries(workspace.map(({ manifest }) => [manifest.name, manifest.version]));

// 1. Pack and extract each package; the scratch app's node_modules holds them side by side.
const app = join(work, 'app');
const packed = [];
for (const { dir, manifest } of workspace) {
  const name = manifest.name;
  const tarball = join(work, `${name.replace('@', '').replace('/', '-')}-${manifest.version}.tgz`);
  run('pnpm', ['pack', '--pack-destination', work], { cwd: dir });
  if (!existsSync(tarball)) {
    fail(name, `pnpm pack did not write ${tarball}`);
    continue;
  }
  const target = join(app, 'node_modules', name);
  mkdirSync(target, { recursive: true });
  run('tar', ['xzf', tarball, '-C', target, '--strip-components=1']);
  packed.push({ name, dir, tarball, target });
}

for (const { name, dir, tarball, target } of packed) {
  const files = new Set(listFiles(target));
  const manifest = readJson(join(target, 'package.json'));
  console.log(`\n--- ${name}@${manifest.version}: ${files.size} files, ${tarball}`);

  // 2. The packed manifest.
  if (JSON.stringify(manifest).includes('workspace:'))
    fail(name, 'packed package.json still has a workspace: range');
  for (const field of ['dependencies', 'peerDependencies', 'devDependencies']) {
    for (const [dep, range] of Object.entries(manifest[field] ?? {})) {
      if (versions[dep] !== undefined && field !== 'devDependencies' && !range.includes(versions[dep])) {
        fail(name, `${field}.${dep} is ${range}, not a range on the workspace version ${versions[dep]}`);
      }
    }
  }
  for (const field of ['license', 'repository', 'homepage', 'bugs', 'keywords', 'engines', 'exports']) {
    if (manifest[field] === undefined) fail(name, `package.json has no "${field}"`);
  }

  // 3. The files.
  const license = files.has('LICENSE') ? readFileSync(join(target, 'LICENSE'), 'utf8') : '';
  if (!/MIT License/.test(license) || !/afterward contributors/.test(license))
    fail(name, 'no MIT LICENSE file');
  for (const file of files) if (file.endsWith('.tsbuildinfo')) fail(name, `ships ${file}`);
  for (const path of exportTargets(manifest.exports)) {
    if (!files.has(join(path))) fail(name, `exports points at ${path}, which is not in the tarball`);
  }
  for (const file of files) {
    if (!file.endsWith('.map')) continue;
    const map = readJson(join(target, file));
    for (const source of map.sources ?? []) {
      const shipped = relative(target, resolve(target, dirname(file), map.sourceRoot ?? '', source));
      if (!files.has(shipped)) fail(name, `${file} maps to ${source}, which is not in the tarball`);
    }
  }

  // 4. publint and arethetypeswrong on the tarball.
  try {
    console.log(run(join(bin, 'publint'), ['run', tarball, '--strict']).trim());
  } catch (error) {
    fail(name, `publint:\n${error.stdout}${error.stderr}`);
  }
  try {
    console.log(
      run(join(bin, 'attw'), [tarball, '--format', 'table', '--ignore-rules', 'cjs-resolves-to-esm']).trim(),
    );
  } catch (error) {
    fail(name, `arethetypeswrong:\n${error.stdout}${error.stderr}`);
  }

  // 5. Runtime dependencies for the scratch app: the workspace's own copies (siblings are packed).
  for (const dep of Object.keys({ ...manifest.dependencies, ...manifest.peerDependencies })) {
    const link = join(app, 'node_modules', dep);
    const source = join(dir, 'node_modules', dep);
    if (existsSync(link) || !existsSync(source)) continue;
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(realpathSync(source), link);
  }
}

// 6. Source maps that work when shipped: the stack names a shipped .ts file of the package.
for (const { name, target } of packed) {
  const thrower = THROWERS[name];
  if (thrower === undefined) continue;
  const script = `try { ${thrower}; console.log('NO THROW') } catch (error) { console.log(error.stack) }`;
  const stack = run(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', script], {
    cwd: app,
  });
  const frames = [...stack.matchAll(/\((\/[^()]+\.ts):\d+:\d+\)/g)].map((match) => match[1]);
  const own = frames.filter(
    (file) => file.startsWith(`${realpathSync(target)}/`) || file.startsWith(`${target}/`),
  );
  if (own.length === 0) fail(name, `no stack frame names a .ts file of the package:\n${stack}`);
  for (const file of own) if (!existsSync(file)) fail(name, `the stack names ${file}, which does not exist`);
  if (own.length > 0) console.log(`${name}: --enable-source-maps stack names ${relative(app, own[0])}`);
}

// 7. The TypeScript setups the README lists, on an import of every `exports` entry of every package:
// each compiles, and the one unsupported setup fails with exactly the error the README quotes.
const SETUPS = [
  { type: 'module', module: 'nodenext', moduleResolution: 'nodenext' },
  { type: 'module', module: 'node16', moduleResolution: 'node16' },
  { type: 'module', module: 'preserve', moduleResolution: 'bundler' },
  { type: 'commonjs', module: 'nodenext', moduleResolution: 'nodenext' },
  { type: 'commonjs', module: 'node20', moduleResolution: 'node16' },
  { type: 'commonjs', module: 'commonjs', moduleResolution: 'node10' },
  { type: 'commonjs', module: 'node16', moduleResolution: 'node16', expect: 'TS1479' },
];
const specifiers = packed.flatMap(({ name, target }) =>
  Object.keys(readJson(join(target, 'package.json')).exports ?? { '.': null })
    .filter((key) => !key.endsWith('.json'))
    .map((key) => (key === '.' ? name : `${name}/${key.slice(2)}`)),
);
const typesDir = join(app, 'node_modules', '@types');
mkdirSync(typesDir, { recursive: true });
for (const types of ['node', 'express', 'koa']) {
  const source = join(root, 'node_modules', '@types', types);
  if (existsSync(source) && !existsSync(join(typesDir, types)))
    symlinkSync(realpathSync(source), join(typesDir, types));
}
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
console.log(`\n--- TypeScript ${run(process.execPath, [tsc, '--version']).trim()}: ${specifiers.join(', ')}`);
for (const setup of SETUPS) {
  const dir = join(app, `ts-${setup.type}-${setup.module}-${setup.moduleResolution}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ private: true, type: setup.type }));
  writeFileSync(
    join(dir, 'index.ts'),
    specifiers.map((specifier, i) => `import * as m${i} from '${specifier}';\nexport { m${i} };\n`).join(''),
  );
  const args = ['--noEmit', '--strict', '--types', 'node', '--target', 'es2022', '--module', setup.module];
  args.push('--moduleResolution', setup.moduleResolution, join(dir, 'index.ts'));
  let output = '';
  try {
    run(process.execPath, [tsc, ...args], { cwd: dir });
  } catch (error) {
    output = `${error.stdout}${error.stderr}`;
  }
  const label = `"type": "${setup.type}", module ${setup.module}, moduleResolution ${setup.moduleResolution}`;
  const codes = [...new Set([...output.matchAll(/error (TS\d+)/g)].map((match) => match[1]))];
  if (setup.expect === undefined && output !== '')
    fail('typescript', `${label} does not compile:\n${output}`);
  if (setup.expect !== undefined && codes.join() !== setup.expect) {
    fail(
      'typescript',
      `${label}: expected only ${setup.expect}, got ${codes.join() || 'no error'}:\n${output}`,
    );
  }
  console.log(`${label}: ${setup.expect === undefined ? 'compiles' : `${codes.join()} (documented)`}`);
}

if (!keep) rmSync(work, { recursive: true, force: true });
if (failures.length > 0) {
  console.error(`\ncheck:packages failed:\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log(`\ncheck:packages: ${packed.length} packages passed`);
