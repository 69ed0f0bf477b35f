#!/usr/bin/env bash
# Builds the .deb packages of schoolfleet-server and schoolfleet-agent with
# cargo-deb (`cargo install cargo-deb`): binaries, hardened systemd units,
# /etc/schoolfleet/ conffiles, maintainer scripts (packaging/deb/{server,agent}).
# Prints the paths of the two packages.
#   SCHOOLFLEET_DEB_PROFILE=dev  packages debug binaries (tests: no release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-deb >/dev/null || { echo "needs cargo-deb: cargo install cargo-deb --locked" >&2; exit 1; }
profile=${SCHOOLFLEET_DEB_PROFILE:-release}
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --locked --profile "$profile" -p schoolfleet-server -p schoolfleet-agent --bins >&2
out_dir=$([[ $profile == dev ]] && echo debug || echo "$profile")
# The commented default configuration, from the binary itself (a unit test
# keeps it equal to the defaults).
mkdir -p target/deb-assets
"$target/$out_dir/schoolfleet-server" default-config >target/deb-assets/server.toml
for package in schoolfleet-server schoolfleet-agent; do
  cargo deb --no-build --locked -p "$package" --profile "$profile" --output "$target/debian/" >&2
  ls -t "$target"/debian/"${package}"_*.deb | head -n1
done
