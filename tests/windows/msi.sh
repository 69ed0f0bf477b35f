#!/usr/bin/env bash
# The agent's MSI (issue 10): builds it with packaging/windows/build-msi.sh
# and checks with msiinfo that it installs the exe into Program Files,
# registers and starts the service through its own ServiceInstall and
# ServiceControl tables, writes SERVER/TOKEN_FILE for the first start, and
# purges the state only with PURGE=1. msiinfo reads the tables; whether
# Windows Installer acts on them as intended only a real Windows shows.
# Needs: msitools + wixl, gcc-mingw-w64-x86-64, the x86_64-pc-windows-gnu target.
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
