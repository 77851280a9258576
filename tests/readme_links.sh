#!/usr/bin/env bash
# readme_links.sh SOURCE_DIR: every relative link in every README (and the docs beside them)
# points at a file that exists and, with #anchor, at a heading of that file (GitHub's anchor
# rule: lower case, punctuation dropped, spaces to hyphens). A dead link fails, named with
# its file and line. Also: README.md stays a map (at most 300 lines).
set -uo pipefail
src=$1
cd "$src" || exit 2
node - <<'JS'
const fs = require('fs'), path = require('path');
function walk(dir, out) {
  for (const e of fs.readdirSync(dir, {withFileTypes: true})) {
    if (e.name.startsWith('.') || ['build', 'build-san', 'data', 'node_modules'].includes(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.md') && !p.startsWith(path.join('results', ''))) out.push(p);
  }
  return out;
}
const slug = h => h.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
const anchors = file => new Set(fs.readFileSync(file, 'utf8').split('\n')
  .filter(l => /^#{1,6} /.test(l)).map(l => slug(l.replace(/^#+ /, ''))));
let links = 0, dead = 0;
const files = walk('.', []).concat(fs.existsSync('results/README.md') ? ['results/README.md'] : []);
for (const file of files) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  let fenced = false;
  lines.forEach((line, i) => {
    if (/^```/.test(line)) fenced = !fenced;
    if (fenced) return;
    for (const m of line.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
      links++;
      const [p, anchor] = target.split('#');
      const resolved = p === '' ? file : path.join(path.dirname(file), p);
      let why = null;
      if (!fs.existsSync(resolved)) why = 'no such file';
      else if (anchor && resolved.endsWith('.md') && !anchors(resolved).has(anchor)) why = `no heading #${anchor}`;
      if (why) { dead++; console.log(`${file}:${i + 1}: ${target}: ${why}`); }
    }
  });
}
const top = fs.readFileSync('README.md', 'utf8').split('\n').length - 1;
console.log(`${files.length} files, ${links} relative links, ${dead} dead; README.md ${top} lines`);
if (top > 300) { console.log('README.md is over 300 lines: keep it a map, move details to the rooms'); dead++; }
process.exit(dead ? 1 : 0);
JS
