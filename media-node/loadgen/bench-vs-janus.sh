#!/usr/bin/env bash
# Forwarding cost of Aula's media node side by side with Janus 1.1.2 (Debian's package), as
# issue 16 measures it: the same str0m clients and synthetic media (aula-loadgen --client
# str0m) drive Aula's node and Janus's VideoRoom; the figure is SFU CPU (all threads, from
# /proc/<pid>/stat) per packet the clients received. Three cases, each on Aula's node, Janus
# as installed (a thread per handle) and Janus with event_loops = cores, alternating, N runs
# each; prints the medians and the ratios.
#
#   cargo build --release --workspace --bin aula-loadgen --bin aula-media-node
#   sudo media-node/loadgen/bench-vs-janus.sh            # 3 runs of each (~15 min)
#   sudo media-node/loadgen/bench-vs-janus.sh --runs 1   # a quick look (~5 min)
#
# Needs root: it installs Janus if missing and runs it in a network namespace of its own
# (Janus gathers no loopback candidates), behind a veth pair it creates with the addresses
# below; both are removed on exit. Nothing else on the machine is touched.
set -euo pipefail

runs=3
seconds=10
lock=""
usage() {
	echo "usage: $0 [--runs N] [--seconds S] [--lock FILE (each run holds it, flock)]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs="$2"; shift 2 ;;
	--seconds) seconds="$2"; shift 2 ;;
	--lock) lock="$2"; shift 2 ;;
	*) usage ;;
	esac
done

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$root/target/release"
ns=aula-janus
veth_host=aula-jv0
veth_ns=aula-jv1 # janus.jcfg's ice_enforce_list names it
host_ip=10.77.0.2
janus_ip=10.77.0.1
cores="$(nproc)"

[ "$(id -u)" = 0 ] || { echo "needs root (a network namespace for Janus)" >&2; exit 1; }
for b in aula-loadgen aula-media-node; do
	[ -x "$bin/$b" ] || { echo "no $bin/$b: cargo build --release --workspace --bin aula-loadgen --bin aula-media-node" >&2; exit 1; }
done
if ! command -v janus >/dev/null; then
	echo "installing Janus from Debian's package"
	DEBIAN_FRONTEND=noninteractive apt-get install -y janus >/dev/null
fi
if ip netns list | grep -qw "$ns" || ip link show "$veth_host" >/dev/null 2>&1; then
	echo "the namespace $ns or the link $veth_host exists already (another run?); not touching it" >&2
	exit 1
fi

work="$(mktemp -d /tmp/aula-bench-vs-janus.XXXXXX)"
janus_pid=""
stop_janus() {
	if [ -n "$janus_pid" ]; then
		kill "$janus_pid" 2>/dev/null || true
		# Bounded: Janus tears its sessions down within a second or two.
		for _ in $(seq 50); do kill -0 "$janus_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$janus_pid" 2>/dev/null || true
		wait "$janus_pid" 2>/dev/null || true
		janus_pid=""
	fi
}
cleanup() {
	stop_janus
	# A Janus of an interrupted run (started in a subshell) is the namespace's only process.
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
	ip link del "$veth_host" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns"
ip link add "$veth_host" type veth peer name "$veth_ns" netns "$ns"
ip addr add "$host_ip/30" dev "$veth_host"
ip link set "$veth_host" up
ip -n "$ns" addr add "$janus_ip/30" dev "$veth_ns"
ip -n "$ns" link set "$veth_ns" up
ip -n "$ns" link set lo up

# Starts Janus with the repo's config; $1: event loops (0: Janus's default, thread per handle).
start_janus() {
	local conf="$work/conf-$1"
	rm -rf "$conf"
	cp -r "$here/janus" "$conf"
	if [ "$1" != 0 ]; then
		sed -i "s/^\s*#event_loops = .*/\tevent_loops = $1/" "$conf/janus.jcfg"
	fi
	# `ip netns exec` execs Janus itself: $! is Janus's pid. -i: the namespace has no
	# default route, from which Janus would guess its address.
	ip netns exec "$ns" janus -F "$conf" -i "$janus_ip" -o >"$work/janus-$1.log" 2>&1 &
	janus_pid=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/$janus_ip/8188") 2>/dev/null; then return 0; fi
		kill -0 "$janus_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "Janus did not come up; its log:" >&2
	tail -20 "$work/janus-$1.log" >&2
	exit 1
}

cases=(
	"1x10-1500k|--participants 10 --video-bitrate 1500000"
	"1x30-400k-2talk|--participants 30 --video-bitrate 400000 --talkers 2"
	"1x30-150k-2talk|--participants 30 --video-bitrate 150000 --talkers 2"
)
sfus=(aula janus-default "janus-loops$cores")

# One run: prints the figure (µs of SFU CPU per received packet) or "nan"; keeps the output.
run() {
	local spec="$1" sfu="$2" i="$3"
	local name="${spec%%|*}" flags="${spec#*|}"
	local participants
	participants="$(echo "$flags" | sed -E 's/.*--participants ([0-9]+).*/\1/')"
	# Aula's node forwards every camera too (Janus has no last-N).
	local common=(--rooms 1 --client str0m --seconds "$seconds" --last-n "$participants")
	local out="$work/$name-$sfu-$i.txt"
	local cmd=()
	case "$sfu" in
	aula) cmd=("$bin/aula-loadgen" "${common[@]}" $flags) ;;
	janus-default) start_janus 0 ;;
	janus-loops*) start_janus "$cores" ;;
	esac
	if [ "$sfu" != aula ]; then
		cmd=("$bin/aula-loadgen" "${common[@]}" $flags --sfu janus
			--janus-url "ws://$janus_ip:8188" --janus-pid "$janus_pid" --local-ip "$host_ip")
	fi
	if [ -n "$lock" ]; then cmd=(flock "$lock" "${cmd[@]}"); fi
	# Bounded: joining, the wait until everyone hears everyone (≤ 30 s) and the window.
	timeout $((seconds + 120)) "${cmd[@]}" >"$out" 2>&1 || echo "(exit $?)" >>"$out"
	stop_janus
	local us
	us="$(sed -nE 's/^SFU CPU per packet received by the clients: ([0-9.]+|NaN|nan) us$/\1/p' "$out")"
	echo "${us:-nan}"
}

declare -A figures
echo "bench-vs-janus: ${#cases[@]} cases x ${#sfus[@]} SFUs x $runs run(s), $seconds s measured each; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
	for spec in "${cases[@]}"; do
		for sfu in "${sfus[@]}"; do
			us="$(run "$spec" "$sfu" "$i")"
			figures["${spec%%|*} $sfu"]+="$us "
			printf '  run %d  %-16s %-14s %8s us  (%s)\n' "$i" "${spec%%|*}" "$sfu" "$us" \
				"$(sed -nE 's/^loss \(end to end\): +([0-9.]+) %.*/end-to-end loss \1 %/p' "$work/${spec%%|*}-$sfu-$i.txt")"
		done
	done
done

median() { tr ' ' '\n' | grep -vE '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "SFU CPU per packet received by the clients (µs, median of $runs; release; $cores cores shared by SFU and clients)"
printf '%-16s %10s %14s %14s %12s %12s\n' case aula janus-default "janus-loops$cores" "aula/default" "aula/loops"
for spec in "${cases[@]}"; do
	name="${spec%%|*}"
	a="$(echo "${figures["$name aula"]}" | median)"
	d="$(echo "${figures["$name janus-default"]}" | median)"
	l="$(echo "${figures["$name janus-loops$cores"]}" | median)"
	ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (y + 0 > 0 && x + 0 > 0) printf "%.2f", x / y; else print "nan" }'; }
	printf '%-16s %10s %14s %14s %12s %12s\n' "$name" "$a" "$d" "$l" "$(ratio "$a" "$d")" "$(ratio "$a" "$l")"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); every run's report: $work"
