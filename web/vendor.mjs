// Refreshes the dashboard's vendored front-end files from node_modules (run `npm ci` first;
// `make vendor` does both). The API serves service/dashboard/ as it is, with no build step at
// run time; tests/dashboard/test_vendor.py checks that these copies equal the locked package.
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, '..', 'service', 'dashboard', 'vendor');

// [package, file in the package, name in vendor/]
export const FILES = [
  ['uplot', 'dist/uPlot.esm.js', 'uPlot.esm.js'],
  ['uplot', 'dist/uPlot.min.css', 'uPlot.min.css'],
  ['uplot', 'LICENSE', 'uPlot.LICENSE'],
];

mkdirSync(target, { recursive: true });
for (const [pkg, file, name] of FILES) {
  const root = join(here, 'node_modules', pkg);
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  copyFileSync(join(root, file), join(target, name));
  console.log(`vendored ${pkg}@${version} ${file} -> service/dashboard/vendor/${name}`);
}
