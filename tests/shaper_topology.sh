#!/usr/bin/env bash
# shaper_topology.sh WANCP PROFILE_DIR: `wancp shape` on this machine's kernel (needs root;
# skipped with 77 otherwise):
#   - --dry-run prints the commands and creates nothing;
#   - up: 2 rank namespaces + switch, addresses in 198.18.0.0/24 and no route out;
#   - iperf3 between the ranks through htb at 300 Mbit/s: goodput >= 0.92 x the rate;
#   - down removes everything; down --all removes namespaces with a process still inside;
#   - a profile with delay is refused (exit 2) without --ignore-delay, creating nothing.
set -uo pipefail
wancp=$1 profiles=$2
[ "$(id -u)" = 0 ] || { echo "not root: skipped"; exit 77; }
ip netns add wancp-probe$$ 2>/dev/null || { echo "no network namespaces here: skipped"; exit 77; }
ip netns del wancp-probe$$
prefix=t$$
work=$(mktemp -d)
trap '"$wancp" shape down --prefix "$prefix" >/dev/null 2>&1; rm -rf "$work"' EXIT
failures=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
mine() { ip netns list | awk '{print $1}' | grep -c "^wancp-$prefix-" ; }
printf '[link]\nname = r300\nrate = 300mbit\nqueue = 1mb\n' >"$work/r300.ini"

"$wancp" shape up "$work/r300.ini" --ranks 2 --prefix "$prefix" --dry-run >"$work/script"
check "dry-run prints the ip and tc commands" 'grep -q "addr add 198.18.0.2/24 dev eth0" "$work/script" && grep -q "htb rate 300mbit" "$work/script"'
check "dry-run creates nothing" '[ "$(mine)" = 0 ]'

"$wancp" shape up "$work/r300.ini" --ranks 2 --prefix "$prefix" >/dev/null
check "up creates 2 ranks and a switch" '[ "$(mine)" = 3 ]'
check "no route out of a rank" '! ip -n wancp-$prefix-r0 route | grep -q default && ip -n wancp-$prefix-r0 route | grep -q "^198.18.0.0/24"'
check "nothing in the host namespace" '! ip link | grep -q "p0\|wancp"'
ip netns exec "wancp-$prefix-r1" iperf3 -s -1 -B 198.18.0.2 -p 5201 >/dev/null 2>&1 &
sleep 0.5
bps=$(ip netns exec "wancp-$prefix-r0" iperf3 -c 198.18.0.2 -p 5201 -t 3 -J 2>/dev/null |
      node -e 'let s = ""; process.stdin.on("data", d => s += d).on("end", () => console.log(JSON.parse(s).end.sum_received.bits_per_second))')
echo "iperf3 goodput through htb at 300mbit: $bps bit/s"
check "goodput >= 0.92 x 300 Mbit/s and not above the rate" 'awk -v b="$bps" "BEGIN {exit !(b >= 0.92 * 300e6 && b <= 1.01 * 300e6)}"'
"$wancp" shape down --prefix "$prefix" >/dev/null
check "down removes everything" '[ "$(mine)" = 0 ]'

"$wancp" shape up none --ranks 3 --prefix "$prefix" >/dev/null
ip netns exec "wancp-$prefix-r2" sleep 600 &
sleeper=$!
"$wancp" shape down --all >/dev/null
wait $sleeper 2>/dev/null
check "down --all removes the namespaces" '[ "$(mine)" = 0 ]'
check "down --all kills processes inside" '! kill -0 $sleeper 2>/dev/null'

"$wancp" shape up "$profiles/wan-300m.ini" --ranks 2 --prefix "$prefix" 2>"$work/err"
rc=$?
check "a profile with delay is refused without --ignore-delay" '[ $rc = 2 ] && grep -q "need the user-space emulator" "$work/err" && [ "$(mine)" = 0 ]'
"$wancp" shape up none --ranks 2 --prefix "Bad-Name" 2>"$work/err"
check "a bad prefix is refused" '[ $? = 2 ] && grep -q "prefix .Bad-Name." "$work/err"'

echo "$passes passed, $failures failed"
[ "$failures" = 0 ]
