#!/usr/bin/env bash
# The agent's MSI (issue 10): builds it with packaging/windows/build-msi.sh
# and checks with msiinfo that it installs the exe into Program Files,
# registers and starts the service through its own ServiceInstall and
# ServiceControl tables, writes SERVER/TOKEN_FILE for the first start and
# CONSENT_MIN (the agent's consent floor) for every start, and
# purges the state only with PURGE=1. msiinfo reads the tables; whether
# Windows Installer acts on them as intended only a real Windows shows.
# Needs: msitools + wixl, gcc-mingw-w64-x86-64, the x86_64-pc-windows-gnu target.
# With SCHOOLFLEET_MSI_WINE=1 it also installs the MSI under Wine (wine64 and
# ../shared/tools/wine-prng-shim): the service must be registered as the
# MSI says, start and fail its first enrolment against a closed port (exit
# code service-specific 1, logged), and uninstall must remove service, exe
# and registry values but keep the state, which PURGE=1 removes. Wine's SCM
# and msiexec are not Windows': this is not proof for a real PC.
# Usage: tests/windows/msi.sh   (SCHOOLFLEET_WIN_TARGET_DIR to reuse a build)
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${SCHOOLFLEET_WIN_TARGET_DIR:-/var/tmp/schoolfleet-ci-target-windows}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
msi=$work/schoolfleet-agent.msi
CARGO_TARGET_DIR=$target packaging/windows/build-msi.sh "$msi" >"$work/build.log"
for table in Property ServiceInstall ServiceControl Registry CustomAction InstallExecuteSequence File Component Directory; do
  msiinfo export "$msi" "$table" >"$work/$table.idt"
done

python3 - "$work" <<'PY'
import pathlib, sys
work = pathlib.Path(sys.argv[1])
def rows(table):
    # IDT: column names, types, table/key line, then one row per line.
    lines = work.joinpath(f"{table}.idt").read_text(encoding="utf-8", errors="replace").splitlines()
    names = lines[0].split("\t")
    return [dict(zip(names, line.split("\t"))) for line in lines[3:] if line]
problems = []
def expect(cond, what):
    if not cond:
        problems.append(what)

props = {r["Property"]: r["Value"] for r in rows("Property")}
expect(props.get("ProductName") == "schoolfleet agent", f"ProductName {props.get('ProductName')!r}")
expect(props.get("ALLUSERS") == "1", "not a per-machine install")
expect(props.get("UpgradeCode") == "{6F1D3C52-8B0B-4D7E-9C43-2E5A6B0D9A11}", "UpgradeCode changed: upgrades would install side by side")
expect(bool(props.get("ProductVersion")), "no ProductVersion")

services = rows("ServiceInstall")
expect(len(services) == 1, f"{len(services)} ServiceInstall rows")
for s in services:
    expect(s["Name"] == "schoolfleet-agent", f"service name {s['Name']!r}")
    expect(s["ServiceType"] == "16", "not SERVICE_WIN32_OWN_PROCESS")
    expect(s["StartType"] == "2", "not SERVICE_AUTO_START")
    expect(s["StartName"] == "LocalSystem", f"account {s['StartName']!r}")
    expect(s["Arguments"] == "service run", f"arguments {s['Arguments']!r}")
    expect(s["Component_"] == "AgentExe", "service not tied to the exe's component")

controls = rows("ServiceControl")
expect(len(controls) == 1, f"{len(controls)} ServiceControl rows")
for c in controls:
    event = int(c["Event"])
    # msidbServiceControlEvent: 1 start on install, 2 stop on install,
    # 32 stop on uninstall, 128 delete on uninstall.
    for bit, what in [(1, "start on install"), (2, "stop on install"), (32, "stop on uninstall"), (128, "delete on uninstall")]:
        expect(event & bit, f"ServiceControl lacks {what} (event {event})")
    expect(c["Name"] == "schoolfleet-agent" and c["Wait"] == "1", f"ServiceControl {c}")

files = rows("File")
expect([f["FileName"].split("|")[-1] for f in files] == ["schoolfleet-agent.exe"], f"files {files}")
dirs = {d["Directory"]: d for d in rows("Directory")}
exe_dir = {c["Component"]: c["Directory_"] for c in rows("Component")}["AgentExe"]
expect(dirs[exe_dir]["Directory_Parent"] == "ProgramFiles64Folder", "exe not under Program Files (64-bit)")

registry = {(r["Root"], r["Key"].rstrip("\\"), r["Name"]): r["Value"] for r in rows("Registry")}
expect(registry.get(("2", "SOFTWARE\\schoolfleet\\agent", "Server")) == "[SERVER]", f"registry {registry}")
expect(registry.get(("2", "SOFTWARE\\schoolfleet\\agent", "TokenFile")) == "[TOKEN_FILE]", f"registry {registry}")
expect(registry.get(("2", "SOFTWARE\\schoolfleet\\agent", "ConsentMin")) == "[CONSENT_MIN]", f"no ConsentMin from CONSENT_MIN: {registry}")
expect("CONSENT_MIN" not in props or props["CONSENT_MIN"] == "", "CONSENT_MIN has a default: the agent's own applies without it")
expect(not any("TOKEN]" in v and "FILE" not in v for v in registry.values()), "a token itself would be written to the registry")

actions = {a["Action"]: a for a in rows("CustomAction")}
purge = actions.get("PurgeState")
expect(purge is not None and purge["Target"] == "service purge" and purge["Source"] == "AgentExeFile", f"PurgeState {purge}")
# 18 = exe from the installed file, 0x400 deferred, 0x800 no impersonation (SYSTEM), 64 ignore the exit code.
expect(purge is not None and int(purge["Type"]) == 18 + 0x400 + 0x800 + 64, f"PurgeState type {purge and purge['Type']}")
seq = {r["Action"]: r for r in rows("InstallExecuteSequence")}
expect(seq.get("PurgeState", {}).get("Condition") == 'REMOVE="ALL" AND PURGE="1"', f"PurgeState condition {seq.get('PurgeState')}")
if "PurgeState" in seq:
    n = int(seq["PurgeState"]["Sequence"])
    expect(int(seq["DeleteServices"]["Sequence"]) < n < int(seq["RemoveFiles"]["Sequence"]),
           "purge must run after the service is gone and before the exe is removed")
for action in ["InstallServices", "StartServices", "StopServices", "DeleteServices"]:
    expect(action in seq, f"no {action} in InstallExecuteSequence")

if problems:
    print("MSI check failed:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"MSI ok: service {services[0]['Name']} ({services[0]['StartName']}, auto, '{services[0]['Arguments']}'), "
      f"control event {controls[0]['Event']}, {len(registry)} registry values, PURGE action")
PY
echo "size: $(stat -c %s "$msi") bytes"

[[ ${SCHOOLFLEET_MSI_WINE:-} == 1 ]] || exit 0
wine=/usr/lib/wine/wine64
bin=$target/x86_64-pc-windows-gnu/release
"${SCHOOLFLEET_WINE_SHIM:-../shared/tools/wine-prng-shim}/build.sh" "$bin" >/dev/null
export WINEPREFIX=$work/prefix WINEDEBUG=-all
trap 'wineserver -k >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# A prefix made by running a program (not `wineboot -i`): msiexec then
# finishes (with `wineboot -i` it stopped after ProcessComponents, rc 91).
"$wine" "$bin/schoolfleet-agent.exe" --version >/dev/null 2>&1
# The installed exe needs the shim as well; on Windows the DLL exists.
cp "$bin/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
c=$WINEPREFIX/drive_c
echo "sfe_not_a_token_$$" >"$c/token.txt"
fail() { echo "Wine: $*"; exit 1; }
msi="Z:${msi//\//\\}"   # Wine's msiexec wants a Windows path
"$wine" msiexec /i "$msi" /qn SERVER=https://127.0.0.1:9 'TOKEN_FILE=C:\token.txt' || fail "msiexec /i failed"
svc='HKLM\System\CurrentControlSet\Services\schoolfleet-agent'
"$wine" reg query "$svc" >"$work/svc.txt" || fail "service not registered"
grep -q 'ImagePath.*Program Files\\schoolfleet\\schoolfleet-agent.exe.* service run' "$work/svc.txt" || fail "ImagePath: $(cat "$work/svc.txt")"
grep -q 'Start.*0x2' "$work/svc.txt" || fail "not automatic start"
grep -q "ObjectName.*LocalSystem" "$work/svc.txt" || fail "not LocalSystem"
"$wine" reg query 'HKLM\SOFTWARE\schoolfleet\agent' /v TokenFile | grep -q 'C:\\token.txt' || fail "TokenFile not written"
for _ in $(seq 30); do
  log=$(cat "$c"/ProgramData/schoolfleet/agent/logs/agent.*.log 2>/dev/null || true)
  grep -q "first enrolment failed" <<<"$log" && break
  sleep 1
done
grep -q "service running" <<<"$log" || fail "service never reported running: $log"
grep -q "first enrolment failed" <<<"$log" || fail "no first enrolment attempt: $log"
"$wine" sc query schoolfleet-agent | tee "$work/query.txt" | grep -q 'SERVICE_EXIT_CODE *: 1 ' || fail "exit code: $(cat "$work/query.txt")"
"$wine" msiexec /x "$msi" /qn || fail "msiexec /x failed"
"$wine" reg query "$svc" >/dev/null 2>&1 && fail "service still registered after uninstall"
[[ ! -e "$c/Program Files/schoolfleet/schoolfleet-agent.exe" ]] || fail "exe left behind"
[[ -d "$c/ProgramData/schoolfleet/agent/logs" ]] || fail "state removed without PURGE=1"
"$wine" msiexec /i "$msi" /qn || fail "reinstall failed"
"$wine" msiexec /x "$msi" /qn PURGE=1 || fail "msiexec /x PURGE=1 failed"
[[ ! -e "$c/ProgramData/schoolfleet/agent" ]] || fail "PURGE=1 left the state directory"
echo "Wine: install, service registered (auto, LocalSystem), first start enrolment attempted and failed as expected (exit 1), uninstall kept state, PURGE=1 removed it"
