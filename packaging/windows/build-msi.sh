#!/usr/bin/env bash
# Builds the Windows agent (release, x86_64-pc-windows-gnu) and packs it into
# schoolfleet-agent.msi with wixl (Debian packages msitools + wixl), then
# shows the MSI's tables and the rows that matter with msiinfo.
# Usage: packaging/windows/build-msi.sh [OUT.msi]
#   CARGO_TARGET_DIR  where cargo builds (default: target)
#   SCHOOLFLEET_AGENT_EXE  pack this exe instead of building one
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-target}
out=$(realpath -m "${1:-$target/schoolfleet-agent.msi}")
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

if [[ -n ${SCHOOLFLEET_AGENT_EXE:-} ]]; then
  exe=$(realpath "$SCHOOLFLEET_AGENT_EXE")
else
  cargo build --release --locked --target x86_64-pc-windows-gnu -p schoolfleet-agent
  exe=$(realpath "$target/x86_64-pc-windows-gnu/release/schoolfleet-agent.exe")
fi

# wixl resolves File/@Source against the working directory only.
(cd "$(dirname "$exe")" &&
  wixl --arch x64 -D "Version=$version" -D "AgentExe=$(basename "$exe")" \
    -o "$out" "$root/packaging/windows/schoolfleet-agent.wxs")

echo "built $out ($(stat -c %s "$out") bytes, agent $version)"
echo "== tables"
msiinfo tables "$out" | sort
for table in Property ServiceInstall ServiceControl Registry CustomAction; do
  echo "== $table"
  msiinfo export "$out" "$table" | tail -n +4
done
