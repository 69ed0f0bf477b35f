#!/usr/bin/env bash
# The .deb packages on this machine (issue 10): builds both with
# packaging/deb/build.sh, installs them, checks the units' hardening, the
# service user and the modes, starts the installed server as its service
# user with the installed configuration (there is no systemd PID 1 here),
# enrols and runs the installed agent, upgrades both (a changed conffile
# stays), and purges both: binaries, configuration, state and user gone.
# Root only; refuses to run where schoolfleet is already installed.
# Usage: tests/deb/install.sh   (SCHOOLFLEET_DEB_PROFILE=release for release binaries)
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $(id -u) == 0 ]] || { echo "deb test: needs root (dpkg -i); skipped"; exit 0; }
for path in /etc/schoolfleet /var/lib/schoolfleet-server /var/lib/schoolfleet-agent /usr/bin/schoolfleet-server; do
  [[ ! -e $path ]] || { echo "deb test: $path exists; not touching an installed schoolfleet" >&2; exit 1; }
done
dpkg -s schoolfleet-server >/dev/null 2>&1 && { echo "deb test: schoolfleet-server is installed" >&2; exit 1; }

export SCHOOLFLEET_DEB_PROFILE=${SCHOOLFLEET_DEB_PROFILE:-dev}
mapfile -t debs < <(packaging/deb/build.sh)
server_deb=${debs[0]} agent_deb=${debs[1]}
[[ -f $server_deb && -f $agent_deb ]] || { echo "deb test: build gave ${debs[*]}" >&2; exit 1; }
target=$(dirname "$(dirname "$server_deb")")
cli=$target/$([[ $SCHOOLFLEET_DEB_PROFILE == dev ]] && echo debug || echo "$SCHOOLFLEET_DEB_PROFILE")/schoolfleet
[[ -x $cli ]] || cargo build --locked --profile "$SCHOOLFLEET_DEB_PROFILE" -p schoolfleet >&2

work=$(mktemp -d)
pids=()
purge() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dpkg --purge schoolfleet-agent schoolfleet-server >/dev/null 2>&1 || true
}
trap 'purge; rm -rf "$work"' EXIT
fail() {
  echo "FAILED: $*"
  for log in server.log agent.log; do
    [[ -s $work/$log ]] && { echo "--- $log"; tail -n 20 "$work/$log"; }
  done
  exit 1
}
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || fail "$what (not within ${seconds}s)"
    sleep 0.2
  done
}
mode() { stat -c '%a %U:%G' "$1"; }

dpkg -i "$server_deb" "$agent_deb" >"$work/install.txt" 2>&1 || fail "dpkg -i: $(cat "$work/install.txt")"
getent passwd schoolfleet | grep -q ':/var/lib/schoolfleet-server:/usr/sbin/nologin$' || fail "service user: $(getent passwd schoolfleet)"
[[ $(mode /var/lib/schoolfleet-server) == "700 schoolfleet:schoolfleet" ]] || fail "server state dir $(mode /var/lib/schoolfleet-server)"
[[ $(mode /var/lib/schoolfleet-agent) == "711 root:root" ]] || fail "agent state dir $(mode /var/lib/schoolfleet-agent)"
[[ $(mode /etc/schoolfleet/server.toml) == "640 root:schoolfleet" ]] || fail "server.toml $(mode /etc/schoolfleet/server.toml)"
[[ $(mode /etc/schoolfleet/server.env) == "640 root:schoolfleet" ]] || fail "server.env $(mode /etc/schoolfleet/server.env)"
unit=/lib/systemd/system/schoolfleet-server.service
for line in User=schoolfleet ProtectSystem=strict NoNewPrivileges=yes LimitNOFILE=65536 \
  EnvironmentFile=-/etc/schoolfleet/server.env "ExecStart=/usr/bin/schoolfleet-server run --config /etc/schoolfleet/server.toml"; do
  grep -qx "$line" "$unit" || fail "$unit lacks $line"
done
grep -qx "ExecStart=/usr/bin/schoolfleet-agent --state-dir /var/lib/schoolfleet-agent run" /lib/systemd/system/schoolfleet-agent.service \
  || fail "agent unit ExecStart"
dpkg-query -W -f='${Conffiles}\n' schoolfleet-server | grep -q /etc/schoolfleet/server.toml || fail "server.toml is not a conffile"
dpkg-query -W -f='${Conffiles}\n' schoolfleet-agent | grep -q /etc/schoolfleet/agent.env || fail "agent.env is not a conffile"

# The server as systemd would run it: the service user and the installed
# configuration; only the port is ours. (The unit's LimitNOFILE=65536 is
# checked above; raising the hard limit needs CAP_SYS_RESOURCE, which a
# container may lack, and the server raises its soft limit itself.)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=https://127.0.0.1:$port
SCHOOLFLEET_SERVER__LISTEN=127.0.0.1:$port \
  runuser -u schoolfleet -- /usr/bin/schoolfleet-server run --config /etc/schoolfleet/server.toml \
  >"$work/server.log" 2>&1 &
pids+=($!)
wait_for "installed server listening" 60 grep -qs listening "$work/server.log"
data=/var/lib/schoolfleet-server
[[ $(stat -c %U "$data/ca.key") == schoolfleet ]] || fail "CA key not owned by the service user"
sf() {
  HOME=$work SCHOOLFLEET_SERVER=$url SCHOOLFLEET_CA_PIN=$(cat "$data/ca.pin") \
    SCHOOLFLEET_TOKEN=$(cat "$data/bootstrap-admin.token") "$cli" "$@"
}
sf county add deb --name "Deb-Landkreis" >/dev/null
sf school add deb001 --county deb --name "Deb-Schule" >/dev/null
sf -o json enroll-token create --school deb001 --class schueler-pc --expires 1h --uses 1 \
  | sed -n 's/.*"secret": *"\(sfe_[^"]*\)".*/\1/p' >"$work/token"
chmod 0600 "$work/token"
/usr/bin/schoolfleet-agent --state-dir /var/lib/schoolfleet-agent enroll --server "$url" \
  --token-file "$work/token" --host-identifier instance >"$work/enroll.txt" 2>&1 || fail "enrol: $(cat "$work/enroll.txt")"
device=$(python3 -c 'import json; print(json.load(open("/var/lib/schoolfleet-agent/device.json"))["device_id"])')
/usr/bin/schoolfleet-agent --state-dir /var/lib/schoolfleet-agent run >"$work/agent.log" 2>&1 &
pids+=($!)
online() {
  sf -o json devices --school deb001 2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
rows = rows if isinstance(rows, list) else rows.get("devices", [])
sys.exit(0 if any(r.get("id") == sys.argv[1] and r.get("online") for r in rows) else 1)' "$device"
}
wait_for "installed agent online" 60 online

# Upgrade (the same version again runs the upgrade path of the scripts):
# the admin's change to a conffile stays, the state stays.
echo "# changed by the admin" >>/etc/schoolfleet/server.toml
dpkg -i "$server_deb" "$agent_deb" >"$work/upgrade.txt" 2>&1 || fail "upgrade: $(cat "$work/upgrade.txt")"
grep -qx "# changed by the admin" /etc/schoolfleet/server.toml || fail "upgrade replaced the changed server.toml"
[[ -s /var/lib/schoolfleet-agent/device.json && -s $data/ca.key ]] || fail "upgrade lost state"

for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
dpkg --purge schoolfleet-agent schoolfleet-server >"$work/purge.txt" 2>&1 || fail "purge: $(cat "$work/purge.txt")"
for gone in /usr/bin/schoolfleet-server /usr/bin/schoolfleet-agent /etc/schoolfleet \
  /var/lib/schoolfleet-server /var/lib/schoolfleet-agent /lib/systemd/system/schoolfleet-server.service; do
  [[ ! -e $gone ]] || fail "$gone left after purge"
done
getent passwd schoolfleet >/dev/null && fail "user schoolfleet left after purge"
echo "ok: .deb packages installed (user schoolfleet, 0700/0711 state, 0640 config, hardened unit), server ran as schoolfleet from /etc/schoolfleet/server.toml, agent enrolled and online (${device:0:8}…), upgrade kept the changed conffile, purge removed binaries, config, state and user"
