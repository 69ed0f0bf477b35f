#!/usr/bin/env bash
# Runs the whole system on this machine for a first look:
#   - schoolfleet-server on embedded SQLite (data in .demo/server),
#   - a county "demo", a school "demo001" and an enrolment token,
#   - schoolfleet-agent enrolled for this very machine (state in .demo/agent),
#   - a CLI profile, so that `schoolfleet devices` works in another terminal.
# Ctrl-C stops server and agent. Run it again to restart; `rm -rf .demo` to start afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.demo
port=${SCHOOLFLEET_DEMO_PORT:-7443}
url=https://127.0.0.1:$port
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

say "building release binaries (the first build takes a few minutes)"
cargo build --release --bins

mkdir -p "$demo/server" "$demo/agent"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

say "starting schoolfleet-server on $url (log: .demo/server.log)"
SCHOOLFLEET_AGENTS__HEARTBEAT_INTERVAL=15s \
  "$bin/schoolfleet-server" run --listen "127.0.0.1:$port" --data-dir "$demo/server" \
  >"$demo/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ -s "$demo/server/ca.pin" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
[ -s "$demo/server/ca.pin" ] || { cat "$demo/server.log"; echo "server did not start"; exit 1; }

pin=$(cat "$demo/server/ca.pin")
sf() { "$bin/schoolfleet" "$@"; }

if [ -f "$demo/server/bootstrap-admin.token" ]; then
  say "logging the CLI in as the bootstrap admin"
  sf login --server "$url" --ca-pin "$pin" --token "$(cat "$demo/server/bootstrap-admin.token")"
fi

if [ ! -f "$demo/agent/device.json" ]; then
  say "creating county demo, school demo001 and an enrolment token"
  sf county add demo --name "Demo-Landkreis" >/dev/null
  sf school add demo001 --county demo --name "Demo-Schule" >/dev/null
  # Nobody sits at this machine to answer a consent prompt: the demo school
  # is "notify" (sessions are announced and logged, not asked for).
  sf consent set --school demo001 --mode notify >/dev/null
  token=$(sf -o json enroll-token create --school demo001 --class schueler-pc --expires 1h --uses 1 \
    | sed -n 's/.*"secret": *"\(sfe_[^"]*\)".*/\1/p')
  say "enrolling this machine"
  "$bin/schoolfleet-agent" --state-dir "$demo/agent" enroll --server "$url" --token "$token"
fi

say "starting schoolfleet-agent (log: .demo/agent.log)"
"$bin/schoolfleet-agent" --state-dir "$demo/agent" run >"$demo/agent.log" 2>&1 &
pids+=($!)

# Put the CLI on PATH for the other terminal.
for dir in "$HOME/.local/bin" "$HOME/.cargo/bin"; do
  if [[ ":$PATH:" == *":$dir:"* ]]; then
    mkdir -p "$dir" && ln -sf "$bin/schoolfleet" "$dir/schoolfleet"
    linked=$dir/schoolfleet
    break
  fi
done

sleep 2
sf devices
if [ -n "${linked:-}" ]; then
  where="schoolfleet is linked at $linked"
else
  where="add $bin to your PATH to call schoolfleet"
fi
cat <<INFO

schoolfleet is running ($where). In another terminal:
  schoolfleet devices
  schoolfleet device show $(hostname)
  schoolfleet software search openssl
  schoolfleet exec $(hostname) --reason "Demo" -- uname -a
  schoolfleet shell $(hostname) --reason "Demo"
  schoolfleet sessions list
  schoolfleet audit verify
Press Ctrl-C to stop server and agent.
INFO
wait
