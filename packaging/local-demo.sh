#!/usr/bin/env bash
# Runs the whole system on this machine for a first look:
#   - schoolfleet-server on embedded SQLite (data in .demo/server),
#   - a county "demo", a school "demo001" and an enrolment token,
#   - schoolfleet-agent enrolled for this very machine (state in .demo/agent),
#   - a CLI profile, so that `schoolfleet devices` works in another terminal.
# Ctrl-C stops server and agent. Run it again to restart; `rm -rf .demo` to start afresh.
#
# Settings (environment):
#   SCHOOLFLEET_DEMO_PORT   the server's port (default 7443)
#   SCHOOLFLEET_DEMO_DIR    where data and logs go (default .demo in the checkout)
#   SCHOOLFLEET_DEMO_BIN    a directory with already built binaries (skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=${SCHOOLFLEET_DEMO_DIR:-$root/.demo}
port=${SCHOOLFLEET_DEMO_PORT:-7443}
url=https://127.0.0.1:$port
target=${CARGO_TARGET_DIR:-$root/target}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf 'local-demo: %s\n' "$*" >&2; exit 1; }
port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# Another program (often a schoolfleet server from an earlier run) on the
# port would answer in place of ours: stop before anything is started.
if port_answers; then
  fail "port $port on 127.0.0.1 is already in use by another program.
Stop it, or choose another port: SCHOOLFLEET_DEMO_PORT=7444 $0"
fi

if [ -n "${SCHOOLFLEET_DEMO_BIN:-}" ]; then
  bin=$SCHOOLFLEET_DEMO_BIN
else
  bin=$target/release
  say "building release binaries (the first build takes a few minutes)"
  cargo build --release --bins
fi

mkdir -p "$demo/server" "$demo/agent"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

say "starting schoolfleet-server on $url (log: $demo/server.log)"
# The demo on this one machine runs without the second factor that a real
# installation requires for sessions ([sessions] require_mfa; see README).
SCHOOLFLEET_AGENTS__HEARTBEAT_INTERVAL=15s SCHOOLFLEET_SESSIONS__REQUIRE_MFA='[]' \
  "$bin/schoolfleet-server" run --listen "127.0.0.1:$port" --data-dir "$demo/server" \
  >"$demo/server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
# Ready means: our own server process is alive and has said it listens
# (its log is new for this run), not merely that something answers.
ready=
for _ in $(seq 300); do
  kill -0 "$server_pid" 2>/dev/null || break
  if grep -q 'listening' "$demo/server.log" && [ -s "$demo/server/ca.pin" ] && port_answers; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  cat "$demo/server.log" >&2
  if grep -qi 'address already in use' "$demo/server.log"; then
    fail "port $port was taken while the server started. Choose another: SCHOOLFLEET_DEMO_PORT=7444 $0"
  fi
  fail "the demo's server did not start (log above)"
fi

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

say "starting schoolfleet-agent (log: $demo/agent.log)"
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
