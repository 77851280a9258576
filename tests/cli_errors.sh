#!/usr/bin/env bash
# cli_errors.sh WANCP GPT2_DIR: bad input gives exit status 2 and exactly one line on
# stderr that names the offending file; nothing is written where an output was asked for.
set -uo pipefail
wancp=$1 gpt2=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0

# expect STATUS NEEDLE -- COMMAND...: runs COMMAND, checks its status and its stderr.
expect() {
  local want=$1 needle=$2; shift 3
  "$@" >"$work/out" 2>"$work/err"
  local got=$? lines
  lines=$(wc -l <"$work/err")
  if [ "$got" != "$want" ] || { [ -n "$needle" ] && ! grep -qF -- "$needle" "$work/err"; } || { [ "$want" = 2 ] && [ "$lines" != 1 ]; }; then
    echo "FAIL: $* -> status $got (want $want), $lines stderr lines, wanted '$needle' in:"
    sed 's/^/    /' "$work/err"
    failures=$((failures + 1))
  else
    passes=$((passes + 1))
  fi
}

printf 'hello' >"$work/hello.txt"
: >"$work/empty.txt"
head -c 2048 /dev/zero | tr '\0' 'x' >"$work/bad_magic.bin"
python3 -c "
import struct, sys
def shard(count, tokens):
    return struct.pack('<256i', *([20240520, 1, count] + [0] * 253)) + struct.pack('<%dH' % len(tokens), *tokens)
open(sys.argv[1], 'wb').write(shard(10, [1, 2, 3, 4, 5]))
open(sys.argv[2], 'wb').write(shard(2, [1, 60000]))
" "$work/truncated.bin" "$work/big_token.bin"
mkdir "$work/novocab"
printf '{"a": 1' >"$work/novocab/encoder.json"

expect 2 "unknown command 'frobnicate'" -- "$wancp" frobnicate
expect 2 "missing.bin: cannot open" -- "$wancp" data check --tokenizer bytes "$work/missing.bin"
expect 2 "bad_magic.bin: bad magic" -- "$wancp" data check --tokenizer bytes "$work/bad_magic.bin"
expect 2 "truncated.bin: truncated" -- "$wancp" data check --tokenizer bytes "$work/truncated.bin"
expect 2 "big_token.bin: token 1 is 60000, outside the vocabulary of 50257" -- \
  "$wancp" data check --encoder "$gpt2" "$work/big_token.bin"
expect 2 "empty.txt: empty input" -- "$wancp" data encode --tokenizer bytes --val-every 0 -o "$work/x" "$work/empty.txt"
expect 2 "novocab/encoder.json:1:" -- "$wancp" data encode --encoder "$work/novocab" --val-every 0 -o "$work/y" "$work/hello.txt"
expect 2 "nowhere/encoder.json: cannot open" -- "$wancp" data encode --encoder "$work/nowhere" --val-every 0 -o "$work/y" "$work/hello.txt"
expect 2 "--tokenizer 'words': expected gpt2 or bytes" -- "$wancp" data encode --tokenizer words -o "$work/z" "$work/hello.txt"
expect 2 "too few to hold out 1 in 10" -- "$wancp" data encode --tokenizer bytes -o "$work/z" "$work/hello.txt"
expect 2 "--val-every 'ten'" -- "$wancp" data encode --val-every ten -o "$work/z" "$work/hello.txt"
expect 2 "encode needs -o PREFIX" -- "$wancp" data encode "$work/hello.txt"
expect 2 "unknown option '--frob'" -- "$wancp" data check --frob
expect 2 "unknown benchmark 'disk'" -- "$wancp" bench disk
expect 2 "nothing.jsonl: cannot open" -- "$wancp" bench tokenizer --text "$work/nothing.jsonl" --encoder "$gpt2"
printf '[link]\nrate = -300mbit\ndelay = 2\n' >"$work/bad_profile.ini"
expect 2 "bad_profile.ini:2: rate '-300mbit'" -- "$wancp" check profile "$work/bad_profile.ini"
expect 2 "unknown input kind 'recipe'" -- "$wancp" check recipe x.ini
for out in x y z; do
  if ls "$work"/$out* >/dev/null 2>&1; then echo "FAIL: output $out written after an error"; failures=$((failures + 1)); fi
done

# An invalid run prefix is refused, not taken as "nothing to remove".
expect 2 "--prefix: prefix 'bad prefix!': use 1 to 16 of a-z and 0-9" -- "$wancp" shape down --prefix 'bad prefix!'
# Bytes from input never reach the terminal raw: control bytes and invalid UTF-8 print as '?'.
expect 2 "?]0;owned?" -- "$wancp" data check --tokenizer bytes "$work/"$'\e]0;owned\a'
if grep -q $'\e' "$work/err"; then echo "FAIL: an escape byte reached stderr"; failures=$((failures + 1)); fi
expect 2 "caf? café" -- "$wancp" data check --tokenizer bytes "$work/caf"$'\xff'" caf"$'\xc3\xa9'

# And the good paths: help, version, encode/check/decode round trip.
expect 0 "" -- "$wancp" --help
expect 0 "" -- "$wancp" --version
expect 0 "" -- "$wancp" data --help
expect 0 "" -- "$wancp" data encode --tokenizer bytes --val-every 0 -o "$work/ok" "$work/hello.txt"
expect 0 "" -- "$wancp" data check --tokenizer bytes "$work/ok.bin"
"$wancp" data decode --tokenizer bytes "$work/ok.bin" >"$work/decoded"
if ! cmp -s "$work/decoded" "$work/hello.txt"; then echo "FAIL: decode(encode(hello.txt)) differs"; failures=$((failures + 1)); fi
grep -q '^wancp ' <("$wancp" --version) || { echo "FAIL: --version prints no version line"; failures=$((failures + 1)); }

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
