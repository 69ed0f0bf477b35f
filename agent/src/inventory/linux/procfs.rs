//! Parsers for small text files from /proc and /etc, kept pure so they can be
//! tested on fixture strings.

use std::collections::BTreeSet;

/// The fields of os-release(5) the inventory uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OsRelease {
    pub name: String,
    pub version_id: String,
    /// e.g. "Workstation Edition" on Fedora; reported as the edition.
    pub variant: String,
}

/// Parses os-release(5): `KEY=value` lines, values optionally in single or
/// double quotes, `#` comments.
pub(crate) fn parse_os_release(text: &str) -> OsRelease {
    let mut out = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "NAME" => out.name = value,
            "VERSION_ID" => out.version_id = value,
            "VARIANT" => out.variant = value,
            _ => {}
        }
    }
    out
}

/// Shell-style unquoting as os-release(5) allows it: double quotes with
/// backslash escapes, or single quotes taken literally.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(escaped) = chars.next() {
                    out.push(escaped);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.to_owned()
    } else {
        value.to_owned()
    }
}

/// Memory figures from /proc/meminfo, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemInfo {
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
}

/// Parses /proc/meminfo. The kernel writes "kB" but means KiB, so values are
/// multiplied by 1024. Kernels before 3.14 lack MemAvailable; MemFree is the
/// (pessimistic) fallback then.
pub(crate) fn parse_meminfo(text: &str) -> MemInfo {
    let mut total = None;
    let mut available = None;
    let mut free = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(kib) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = kib.saturating_mul(1024);
        match key {
            "MemTotal" => total = Some(bytes),
            "MemAvailable" => available = Some(bytes),
            "MemFree" => free = Some(bytes),
            _ => {}
        }
    }
    MemInfo {
        total_bytes: total,
        available_bytes: available.or(free),
    }
}

/// What /proc/cpuinfo says about the processors.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CpuInfo {
    /// Empty on architectures whose cpuinfo has no model name (most ARM).
    pub model: String,
    pub logical_cores: usize,
    pub physical_cores: usize,
}

/// Parses /proc/cpuinfo. Physical cores are the distinct (physical id,
/// core id) pairs; where the kernel reports no topology (ARM, which has no
/// SMT) every logical CPU is a core.
pub(crate) fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut model = String::new();
    let mut logical = 0usize;
    let mut cores = BTreeSet::new();
    let mut physical_id: Option<&str> = None;
    let mut core_id: Option<&str> = None;
    fn flush(
        cores: &mut BTreeSet<(String, String)>,
        physical: &mut Option<&str>,
        core: &mut Option<&str>,
    ) {
        if let (Some(p), Some(c)) = (physical.take(), core.take()) {
            cores.insert((p.to_owned(), c.to_owned()));
        }
    }
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            // A blank line ends one processor's block.
            flush(&mut cores, &mut physical_id, &mut core_id);
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "processor" => {
                flush(&mut cores, &mut physical_id, &mut core_id);
                logical += 1;
            }
            "model name" if model.is_empty() => model = value.to_owned(),
            "physical id" => physical_id = Some(value),
            "core id" => core_id = Some(value),
            _ => {}
        }
    }
    flush(&mut cores, &mut physical_id, &mut core_id);
    let physical = if cores.is_empty() {
        logical
    } else {
        cores.len()
    };
    CpuInfo {
        model,
        logical_cores: logical,
        physical_cores: physical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_debian() {
        let text = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
"#;
        let os = parse_os_release(text);
        assert_eq!(os.name, "Debian GNU/Linux");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.variant, "");
    }

    #[test]
    fn os_release_quoting_and_comments() {
        let text = "# a comment\nNAME='Fedora Linux'\nVERSION_ID=41\nVARIANT=\"Workstation \\\"Edition\\\"\"\n\nbroken line\n";
        let os = parse_os_release(text);
        assert_eq!(os.name, "Fedora Linux");
        assert_eq!(os.version_id, "41");
        assert_eq!(os.variant, "Workstation \"Edition\"");
    }

    #[test]
    fn meminfo_in_kib() {
        let text = "MemTotal:       24683656 kB\nMemFree:        19732248 kB\nMemAvailable:   23713908 kB\nBuffers: 1 kB\n";
        let mem = parse_meminfo(text);
        assert_eq!(mem.total_bytes, Some(24_683_656 * 1024));
        assert_eq!(mem.available_bytes, Some(23_713_908 * 1024));
    }

    #[test]
    fn meminfo_without_memavailable_falls_back_to_memfree() {
        let mem = parse_meminfo("MemTotal: 2048 kB\nMemFree: 1024 kB\n");
        assert_eq!(mem.available_bytes, Some(1024 * 1024));
        assert_eq!(parse_meminfo("garbage"), MemInfo::default());
    }

    #[test]
    fn cpuinfo_with_smt() {
        let mut text = String::new();
        for (cpu, core) in [(0, 0), (1, 1), (2, 0), (3, 1)] {
            text.push_str(&format!(
                "processor\t: {cpu}\nmodel name\t: Intel(R) Core(TM) i5-8250U\nphysical id\t: 0\ncore id\t\t: {core}\n\n"
            ));
        }
        let cpu = parse_cpuinfo(&text);
        assert_eq!(cpu.model, "Intel(R) Core(TM) i5-8250U");
        assert_eq!(cpu.logical_cores, 4);
        assert_eq!(cpu.physical_cores, 2);
    }

    #[test]
    fn cpuinfo_arm_without_topology() {
        let text = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nBogoMIPS\t: 108.00\n";
        let cpu = parse_cpuinfo(text);
        assert_eq!(cpu.model, "");
        assert_eq!(cpu.logical_cores, 2);
        assert_eq!(cpu.physical_cores, 2);
    }
}
