#!/usr/bin/env bash
# The fleet benchmarks of issue 11 with the load generator, one run per
# backend. Each run, against a release server of this build:
#   ramp:           N agents enrol and connect, each sends its startup report
#   steady state:   heartbeats at the server's default interval (60 s):
#                   server RSS per agent, CPU per agent-minute, heartbeat p50/p99
#   +90 s:          morning boot: every agent's startup report at once
#                   (STORM: same = unchanged content, changed = every
#                   program's version changed, so every report is stored in
#                   full)
#   +180 s:         fan-out exec over all N devices, then 100 forwards at once
#   +320 s:         SIGKILL the server, start it again: time until all N are back
# Usage: tests/bench/fleet.sh [sqlite|postgres|both] [N] [RAMP] [STORM]
#        (default both 10000 300 same)
# Needs: ulimit -n above 2 N + 1000 (the agents and the server share it),
# PostgreSQL on 127.0.0.1:5432 for the postgres run (a database is made
# and dropped).
set -euo pipefail
cd "$(dirname "$0")/../.."
which=${1:-both}
agents=${2:-10000}
ramp=${3:-300}
storm=${4:-same}
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --bins --quiet
ulimit -n "$(ulimit -Hn)"

run() {
  "$target/release/schoolfleet-loadgen" --smoke --agents "$agents" --ramp "$ramp" \
    --duration 400 --boot-storm-at 90 --boot-storm "$storm" --fanout-at 180 --exec-fanout 64 \
    --forwards 100 --forward-mib 16 --kill-server-at 320
}

if [ "$which" = sqlite ] || [ "$which" = both ]; then
  echo "== SQLite (uptime: $(uptime))"
  run
fi
if [ "$which" = postgres ] || [ "$which" = both ]; then
  db=schoolfleet_loadgen_$$
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
  trap 'psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
  echo "== PostgreSQL (uptime: $(uptime))"
  LOADGEN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db run
fi
