// The dashboard's vendored front-end files, copied from node_modules (what package-lock.json
// pins; run `npm ci` first, `make vendor` does both). The API serves service/dashboard/static/ as it
// is, with no build step at run time.
//   node vendor.mjs                  refresh service/dashboard/static/vendor/
//   node vendor.mjs --check [DIR]    exit 1, naming the files, unless DIR (default: that
//                                    folder) holds exactly these copies (tests/dashboard/)
import { copyFileSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv[2] === '--check';
const target = resolve(process.argv[check ? 3 : 2] ?? join(here, '..', 'service', 'dashboard', 'static', 'vendor'));

// [package, file in the package, name in vendor/]
const FILES = [
  ['uplot', 'dist/uPlot.esm.js', 'uPlot.esm.js'],
  ['uplot', 'dist/uPlot.min.css', 'uPlot.min.css'],
  ['uplot', 'LICENSE', 'uPlot.LICENSE'],
];

const lock = JSON.parse(readFileSync(join(here, 'package-lock.json'), 'utf8'));
const problems = [];
for (const [pkg, file, name] of FILES) {
  const root = join(here, 'node_modules', pkg);
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const locked = lock.packages[`node_modules/${pkg}`]?.version;
  if (version !== locked) {
    problems.push(`node_modules has ${pkg}@${version}, package-lock.json pins ${locked}: run npm ci`);
    continue;
  }
  const source = join(root, file);
  if (!check) {
    mkdirSync(target, { recursive: true });
    copyFileSync(source, join(target, name));
    console.log(`vendored ${pkg}@${version} ${file} -> ${join(target, name)}`);
    continue;
  }
  let copy = null;
  try {
    copy = readFileSync(join(target, name));
  } catch {
    problems.push(`${name} is missing (${pkg}@${version} ${file})`);
    continue;
  }
  if (!copy.equals(readFileSync(source))) problems.push(`${name} differs from ${pkg}@${version} ${file}`);
}
if (check) {
  const extra = readdirSync(target).filter((name) => !FILES.some((f) => f[2] === name));
  for (const name of extra) problems.push(`${name} is not from a locked package`);
}
for (const problem of problems) console.error(problem);
if (problems.length) process.exit(1);
if (check) console.log(`${target}: ${FILES.length} files equal the locked packages`);
