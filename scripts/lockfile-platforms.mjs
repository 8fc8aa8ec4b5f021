// The npm registry mirror our machines use does not serve some prebuilt
// platform packages (e.g. @swc/core for darwin/win32/ppc64). `npm install`
// then leaves them out of package-lock.json, and `npm ci` refuses the lock as
// out of sync. This adds lock entries for such optional, platform-restricted
// packages with their os/cpu, so `npm ci` skips them by platform as it should.
// Run after `npm install` changes the lockfile: node scripts/lockfile-platforms.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const pkgs = lock.packages;

function platformOf(name) {
  const m =
    /-(darwin|linux|win32|freebsd|android|sunos|aix|openbsd)-(arm64|x64|ia32|arm|ppc64|s390x|riscv64|loong64|mips64el)(?:-|$)/.exec(
      name,
    );
  return m ? { os: [m[1]], cpu: [m[2]] } : null;
}

let added = 0;
for (const [path, meta] of Object.entries(pkgs)) {
  for (const [dep, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const at = `${path ? `${path}/` : ''}node_modules/${dep}`;
    const hoisted = `node_modules/${dep}`;
    if (pkgs[at] || pkgs[hoisted]) continue;
    const platform = platformOf(dep);
    if (!platform) continue;
    pkgs[hoisted] = { version, ...platform, optional: true };
    added++;
  }
}
lock.packages = Object.fromEntries(
  Object.entries(pkgs).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
);
writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(`lockfile-platforms: added ${added} platform entries`);
