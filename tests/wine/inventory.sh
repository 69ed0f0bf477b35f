#!/usr/bin/env bash
# The Windows agent's inventory under Wine, checked against what Wine's own
# tools report (issue 10): OS product and build from `reg query`, RAM and
# model from `wmic`, and a software entry with umlauts that this test adds
# with `reg add`. Wine is not Windows: it proves the registry and WMI code
# paths run and parse, not that every class answers as on a real PC.
#
# Needs: wine64, gcc-mingw-w64-x86-64, the x86_64-pc-windows-gnu target and
# ../shared/tools/wine-prng-shim (Wine 8 lacks bcryptprimitives.dll). Run by
# .ci/run (with tests/wine/enrol-exec.sh).
# Usage: tests/wine/inventory.sh   (SCHOOLFLEET_WIN_TARGET_DIR to reuse a build)
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${SCHOOLFLEET_WIN_TARGET_DIR:-/var/tmp/schoolfleet-ci-target-windows}
shim=${SCHOOLFLEET_WINE_SHIM:-../shared/tools/wine-prng-shim}
wine=/usr/lib/wine/wine64
CARGO_TARGET_DIR=$target cargo build --release --target x86_64-pc-windows-gnu -p schoolfleet-agent
bin=$target/x86_64-pc-windows-gnu/release
"$shim/build.sh" "$bin" >/dev/null

work=$(mktemp -d)
trap 'wineserver -k >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export WINEPREFIX=$work/prefix WINEDEBUG=-all
marker="sf$(date +%s)$$"
key="HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\SchoolfleetTest-$marker"
"$wine" reg add "$key" /v DisplayName /t REG_SZ /d "Schülerverwaltung Größe $marker" /f >/dev/null
"$wine" reg add "$key" /v DisplayVersion /t REG_SZ /d "3.2.1" /f >/dev/null
"$wine" reg add "$key" /v Publisher /t REG_SZ /d "Kreisverwaltung Kusel" /f >/dev/null
# A hidden system component must not show up.
"$wine" reg add "$key-hidden" /v DisplayName /t REG_SZ /d "Verborgen $marker" /f >/dev/null
"$wine" reg add "$key-hidden" /v SystemComponent /t REG_DWORD /d 1 /f >/dev/null

cv="HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"
"$wine" reg query "$cv" /v ProductName >"$work/product.txt"
"$wine" reg query "$cv" /v CurrentVersion >"$work/current.txt"
"$wine" reg query "$cv" /v CurrentBuild >"$work/build.txt" || "$wine" reg query "$cv" /v CurrentBuildNumber >"$work/build.txt"
"$wine" wmic computersystem get Model,TotalPhysicalMemory >"$work/wmic.txt"

start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/rss.txt" "$wine" "$bin/schoolfleet-agent.exe" inventory >"$work/inventory.txt" 2>"$work/agent.log"
end=$(date +%s.%N)

python3 - "$work" "$marker" <<'PY'
import re, sys, pathlib
work, marker = pathlib.Path(sys.argv[1]), sys.argv[2]
inv = work.joinpath("inventory.txt").read_text(encoding="utf-8")
def reg_value(name):
    text = work.joinpath(name).read_text(encoding="utf-8", errors="replace")
    return re.search(r"REG_\w+\s+(.*)", text).group(1).strip()
def field(name, text=inv):
    m = re.search(rf"\b{name}: \"([^\"]*)\"", text)
    return m.group(1) if m else None
problems = []
product, build = reg_value("product.txt"), reg_value("build.txt")
os_block = inv[inv.index("os: Some("):]
if field("name", os_block) != product:
    problems.append(f"OS name {field('name', os_block)!r} != reg {product!r}")
# Wine (like Windows 7) has no CurrentMajorVersionNumber: the agent falls
# back to CurrentVersion, which is what this compares with.
cur = reg_value("current.txt")
if not (field("version", os_block) or "").startswith(f"{cur}.{build}"):
    problems.append(f"OS version {field('version', os_block)!r} lacks build {build}")
if field("family", os_block) != "windows":
    problems.append("family is not windows")
raw = work.joinpath("wmic.txt").read_bytes()
# wmic writes UTF-16 with a BOM when its output is redirected.
text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8", "replace")
row = [l for l in text.splitlines() if l.strip()][1]
memory = re.search(r"(\d+)\s*$", row.strip()).group(1)
model = row.strip()[: -len(memory)].strip()
m = re.search(r"memory_total_bytes: (\d+)", inv)
if not m or m.group(1) != memory:
    problems.append(f"RAM {m and m.group(1)} != wmic {memory}")
if field("model") != model:
    problems.append(f"model {field('model')!r} != wmic {model!r}")
if f'name: "Schülerverwaltung Größe {marker}"' not in inv:
    problems.append("the umlaut software entry is missing")
if f"Verborgen {marker}" in inv:
    problems.append("a SystemComponent entry was listed")
errors = re.findall(r'collector: "(\w+)",\s*message: "([^"]*)"', inv)
print("collector errors under Wine:")
for c, msg in errors:
    print(f"  {c}: {msg[:160]}")
if problems:
    print("FAILED:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"ok: OS {product!r} build {build}, model {model!r}, RAM {memory}, umlaut entry found, hidden entry skipped")
PY
echo "binary size: $(stat -c %s "$bin/schoolfleet-agent.exe") bytes (release, x86_64-pc-windows-gnu)"
echo "one inventory under Wine (not a Windows figure): $(python3 -c "print(round($end-$start,2))") s wall, peak RSS of the wine64 process $(cat "$work/rss.txt") KiB"
