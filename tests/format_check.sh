#!/usr/bin/env bash
# format_check.sh SOURCE_DIR: the C, C++ and CUDA sources keep the house format (.clang-format):
# no line over 120 columns anywhere, and every file changed since .clang-format came in is
# exactly as clang-format writes it (files not touched since keep their hand layout until
# their next change). Skipped (77) outside a git checkout or without clang-format.
set -uo pipefail
src=$1
cd "$src" || exit 2
command -v clang-format >/dev/null || { echo "no clang-format: skipped"; exit 77; }
git rev-parse --git-dir >/dev/null 2>&1 || { echo "not a git checkout: skipped"; exit 77; }
failures=0
files=$(git ls-files '*.c' '*.h' '*.cu' '*.cpp')
long=$(awk 'length($0) > 120 { print FILENAME ":" FNR ": " length($0) " columns" }' $files)
if [ -n "$long" ]; then echo "lines over 120 columns:"; echo "$long"; failures=1; fi
since=$(git log --diff-filter=A --format=%H -1 -- .clang-format)
if [ -n "$since" ]; then
  changed=$( (git diff --name-only "$since" -- '*.c' '*.h' '*.cu' '*.cpp'; git ls-files --others --exclude-standard '*.c' '*.h' '*.cu' '*.cpp') | sort -u)
  for f in $changed; do
    [ -f "$f" ] || continue
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
      echo "not in the house format (clang-format -i $f):"
      clang-format "$f" | diff -u "$f" - | head -n 20
      failures=1
    fi
  done
  echo "checked $(echo "$changed" | grep -c .) files changed since $(git log --format=%h -1 "$since")"
fi
[ "$failures" = 0 ] && echo "format: ok"
exit "$failures"
