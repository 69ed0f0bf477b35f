#!/usr/bin/env bash
# Measures the agent's footprint against a real server on loopback:
#   - idle RSS of `schoolfleet-agent run` (VmRSS, sampled after it settled),
#   - CPU time (user+system, from /proc/PID/stat) of one full inventory
#     report made on request (`collect-now`): collection, hashing, encoding,
#     spooling and sending, in the running agent,
#   - idle wake-ups per minute (context switches of all the agent's
#     threads over IDLE seconds with nothing to do but its heartbeat),
#   - release binary sizes, as built and fully stripped,
#   - the peers installed on this machine (fusioninventory-agent,
#     ocsinventory-agent): CPU and peak RSS of one full local inventory.
# Usage: tests/bench/agent-footprint.sh [ROUNDS] [IDLE]   (default 10, 60)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-10}
idle=${2:-60}
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/release
cargo build --release --bins --quiet

work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/server" "$work/agent"
"$bin/schoolfleet-server" run --listen "127.0.0.1:$port" --data-dir "$work/server" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/server/ca.pin" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
export SCHOOLFLEET_CONFIG_DIR=$work/cli SCHOOLFLEET_SERVER=https://127.0.0.1:$port
export SCHOOLFLEET_CA_PIN=$(cat "$work/server/ca.pin") SCHOOLFLEET_TOKEN=$(cat "$work/server/bootstrap-admin.token")
"$bin/schoolfleet" county add bench --name Bench >/dev/null
"$bin/schoolfleet" school add bench001 --county bench --name Bench >/dev/null
token=$("$bin/schoolfleet" -o json enroll-token create --school bench001 --class schueler-pc --expires 1h --uses 1 \
  | sed -n 's/.*"secret": *"\(sfe_[^"]*\)".*/\1/p')
SCHOOLFLEET_AGENT_TOKEN=$token "$bin/schoolfleet-agent" --state-dir "$work/agent" enroll --server "$SCHOOLFLEET_SERVER" >/dev/null
"$bin/schoolfleet-agent" --state-dir "$work/agent" run >"$work/agent.log" 2>&1 &
agent=$!
pids+=($agent)
sleep 10   # startup report done, heap settled

# Every voluntary and involuntary context switch of every thread is a
# wake-up of the process (timers, the heartbeat, HTTP/2 pings).
switches() {
  cat /proc/$agent/task/*/status | awk '/^(non)?voluntary_ctxt_switches:/ {n += $2} END {print n}'
}
sw_before=$(switches)
sleep "$idle"
sw_after=$(switches)
wakeups=$(( (sw_after - sw_before) * 60 / idle ))

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$agent/status"; }

samples=()
start_ticks=$(cpu_ticks)
for _ in $(seq "$rounds"); do
  before=$(cpu_ticks)
  "$bin/schoolfleet-agent" --state-dir "$work/agent" collect-now >/dev/null
  sleep 1   # let the send and the acknowledgement finish
  after=$(cpu_ticks)
  samples+=($(( (after - before) * 1000 / ticks )))
done
total_ms=$(( ($(cpu_ticks) - start_ticks) * 1000 / ticks ))
sleep 5
rss=$(rss_kib)
sorted=($(printf '%s\n' "${samples[@]}" | sort -n))
median=${sorted[$(( ${#sorted[@]} / 2 ))]}
packages=$("$bin/schoolfleet" -o json device show "$(hostname)" | sed -n 's/^ *"count": *\([0-9]*\).*/\1/p' | head -1)

echo "idle wake-ups per minute:  $wakeups ($(( sw_after - sw_before )) context switches in ${idle} s, all threads)"
echo "agent idle RSS:            $rss KiB ($(awk "BEGIN {printf \"%.1f\", $rss/1024}") MiB)"
echo "CPU per full inventory:    mean $(awk "BEGIN {printf \"%.1f\", $total_ms/$rounds}") ms ($total_ms ms over $rounds rounds), median ${median} ms, max ${sorted[-1]} ms (${packages:-?} packages; clock tick $((1000 / ticks)) ms)"
for b in schoolfleet-agent schoolfleet-server schoolfleet; do
  strip -o "$work/$b.stripped" "$bin/$b"
  printf 'release binary %-20s %10s bytes as built, %10s bytes fully stripped\n' "$b" \
    "$(stat -c %s "$bin/$b")" "$(stat -c %s "$work/$b.stripped")"
done

# Peers, where installed (Debian: fusioninventory-agent, ocsinventory-agent):
# one full local inventory each, as they run from cron or their daemon.
peer() {
  local name=$1; shift
  command -v "$1" >/dev/null || { echo "peer $name: not installed"; return; }
  local out=$work/peer-$name
  mkdir -p "$out"
  for round in 1 2 3; do
    /usr/bin/time -f '%U %S %M' -o "$out/time" "$@" >/dev/null 2>&1 || true
    read -r user sys maxrss <"$out/time"
    echo "peer $name round $round: CPU $(awk "BEGIN {printf \"%.0f\", ($user + $sys) * 1000}") ms, peak RSS $maxrss KiB"
  done
}
peer fusioninventory-agent fusioninventory-agent --local "$work/peer-fusioninventory-agent" --no-category=printer
peer ocsinventory-agent ocsinventory-agent --local="$work/peer-ocsinventory-agent"
