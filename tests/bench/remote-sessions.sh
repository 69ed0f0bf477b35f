#!/bin/sh
# Remote-session benchmark: forward throughput vs `ssh -L`, `exec true` vs
# `ssh localhost true`, keystroke round trip vs `ssh -tt`, in one run.
# Needs sshd (Debian: apt-get install openssh-server). Settings: see
# tests/src/bin/remote-bench.rs (BENCH_MIB, BENCH_ROUNDS, BENCH_EXECS, BENCH_KEYS).
set -eu
cd "$(dirname "$0")/../.."
cargo build --release --workspace --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/release/remote-bench"
