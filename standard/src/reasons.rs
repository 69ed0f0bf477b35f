//! Reasons in German for coordinators.
//!
//! The evaluator writes its reasons in English ("system disk hdd, expected
//! ssd or nvme"); they are stored that way and stay the machine-readable
//! form in JSON. Reports for coordinators show them in German: each part
//! of a reason (parts are joined with "; ") is recognised by its kind and
//! rendered from a German template. A part that matches no kind (a future
//! reason, a waiver's own text) is shown as it is, with the kind `other`.

use std::sync::LazyLock;

use regex::Regex;

/// (kind, pattern of the English part, German template with `${n}`).
/// Order matters where patterns overlap: the more specific first, the
/// catch-alls of software (`NAME VERSION OP VERSION`, `... installed`) last.
const KINDS: &[(&str, &str, &str)] = &[
    (
        "os_not_reported",
        r"^operating system not reported$",
        "Betriebssystem nicht gemeldet",
    ),
    (
        "os_family_not_reported",
        r"^OS family not reported$",
        "Betriebssystem-Familie nicht gemeldet",
    ),
    (
        "os_family_out_of_scope",
        r"^OS family (\S+) not in scope$",
        "Betriebssystem-Familie ${1} nicht im Geltungsbereich",
    ),
    (
        "os_family",
        r"^OS family (\S*), expected (\S+)$",
        "Betriebssystem-Familie ${1}, gefordert ${2}",
    ),
    (
        "os_name",
        r#"^OS name "(.*)" does not match (.+)$"#,
        "Betriebssystem „${1}“ passt nicht zum Muster ${2}",
    ),
    (
        "os_edition_not_reported",
        r"^OS edition not reported$",
        "Edition nicht gemeldet",
    ),
    (
        "os_edition",
        r"^edition (.+) not in (.+)$",
        "Edition ${1} nicht zugelassen (zugelassen: ${2})",
    ),
    (
        "os_version_not_reported",
        r"^OS version not reported$",
        "Betriebssystem-Version nicht gemeldet",
    ),
    (
        "os_version",
        r"^OS version (\S+) < (\S+)$",
        "Betriebssystem-Version ${1}, mindestens ${2} gefordert",
    ),
    (
        "os_lifecycle_unknown",
        r"^(.+) is not in the lifecycle table$",
        "${1} steht nicht in der Tabelle der Support-Zeiträume",
    ),
    (
        "os_end_of_support",
        r"^(.+) end of support (\d{4}-\d{2}-\d{2}) passed (\d+) days ago$",
        "${1}: Support-Ende am ${2}, seit ${3} Tagen abgelaufen",
    ),
    (
        "os_end_of_support_soon",
        r"^end of support in (-?\d+) days$",
        "Support-Ende in ${1} Tagen",
    ),
    (
        "ram_not_reported",
        r"^RAM not reported$",
        "Arbeitsspeicher nicht gemeldet",
    ),
    (
        "ram",
        r"^RAM (\S+) GiB < (\S+) GiB$",
        "Arbeitsspeicher ${1} GiB, mindestens ${2} GiB gefordert",
    ),
    (
        "cpu_not_reported",
        r"^CPU cores not reported$",
        "Anzahl der CPU-Kerne nicht gemeldet",
    ),
    (
        "cpu",
        r"^CPU (\d+) cores < (\d+) cores$",
        "CPU mit ${1} Kernen, mindestens ${2} gefordert",
    ),
    (
        "disk_not_reported",
        r"^system disk not reported$",
        "Systemlaufwerk nicht gemeldet",
    ),
    (
        "disk_size",
        r"^system disk (\d+) GB < (\d+) GB$",
        "Systemlaufwerk ${1} GB, mindestens ${2} GB gefordert",
    ),
    (
        "disk_media_not_reported",
        r"^system disk type not reported$",
        "Art des Systemlaufwerks nicht gemeldet",
    ),
    (
        "disk_not_encrypted",
        r"^system disk not encrypted$",
        "Systemlaufwerk nicht verschlüsselt",
    ),
    (
        "disk_media",
        r"^system disk (\S+), expected (.+)$",
        "Systemlaufwerk ${1}, gefordert ${2}",
    ),
    (
        "firmware_not_reported",
        r"^firmware not reported$",
        "Firmware nicht gemeldet",
    ),
    (
        "boot_mode_not_reported",
        r"^boot mode not reported$",
        "Startmodus nicht gemeldet",
    ),
    (
        "boot_mode",
        r"^boot mode (\S+), expected (\S+)$",
        "Startmodus ${1}, gefordert ${2}",
    ),
    (
        "secure_boot_not_reported",
        r"^Secure Boot state not reported$",
        "Secure-Boot-Status nicht gemeldet",
    ),
    (
        "secure_boot",
        r"^Secure Boot (\S+), expected (\S+)$",
        "Secure Boot ${1}, gefordert ${2}",
    ),
    (
        "tpm_not_reported",
        r"^TPM state not reported$",
        "TPM-Status nicht gemeldet",
    ),
    (
        "tpm_missing",
        r"^no TPM, expected TPM (\S+)$",
        "kein TPM, gefordert TPM ${1}",
    ),
    (
        "tpm_version_not_reported",
        r"^TPM version not reported$",
        "TPM-Version nicht gemeldet",
    ),
    (
        "tpm_version",
        r"^TPM (\S+) < (\S+)$",
        "TPM ${1}, mindestens ${2} gefordert",
    ),
    (
        "update_not_reported",
        r"^time of the last update not reported$",
        "Zeitpunkt des letzten Updates nicht gemeldet",
    ),
    (
        "update_age",
        r"^last update (\d+) days ago > (\d+) days$",
        "letztes Update vor ${1} Tagen, höchstens ${2} Tage erlaubt",
    ),
    (
        "no_inventory",
        r"^no inventory received$",
        "kein Inventar empfangen",
    ),
    (
        "inventory_time_unknown",
        r"^time of the inventory unknown$",
        "Zeitpunkt des Inventars unbekannt",
    ),
    (
        "inventory_too_old",
        r"^inventory (\d+) days old > (\d+) days, too old to judge$",
        "Inventar ${1} Tage alt (mehr als ${2} Tage): zu alt für eine Bewertung",
    ),
    (
        "inventory_age",
        r"^inventory (\d+) days old > (\d+) days$",
        "Inventar ${1} Tage alt, höchstens ${2} Tage erlaubt",
    ),
    (
        "encryption_not_reported",
        r"^encryption of the system disk not reported$",
        "Verschlüsselung des Systemlaufwerks nicht gemeldet",
    ),
    (
        "encryption_method_not_reported",
        r"^encryption method of the system disk not reported$",
        "Verschlüsselungsverfahren des Systemlaufwerks nicht gemeldet",
    ),
    (
        "encryption_method",
        r"^encrypted with (\S+), expected (.+)$",
        "verschlüsselt mit ${1}, gefordert ${2}",
    ),
    (
        "antivirus_missing",
        r"^no antivirus reported$",
        "kein Virenschutz gemeldet",
    ),
    (
        "antivirus_not_reported",
        r"^antivirus not reported on (.+)$",
        "Virenschutz wird auf ${1} nicht gemeldet",
    ),
    (
        "antivirus_realtime_off",
        r"^(.+): realtime protection off$",
        "${1}: Echtzeitschutz ausgeschaltet",
    ),
    (
        "antivirus_realtime_not_reported",
        r"^(.+): realtime protection not reported$",
        "${1}: Echtzeitschutz nicht gemeldet",
    ),
    (
        "antivirus_signatures_not_reported",
        r"^(.+): signature date not reported$",
        "${1}: Datum der Signaturen nicht gemeldet",
    ),
    (
        "antivirus_signatures",
        r"^(.+): signatures (\d+) days old > (\d+) days$",
        "${1}: Signaturen ${2} Tage alt, höchstens ${3} Tage erlaubt",
    ),
    (
        "software_not_reported",
        r"^software list not reported$",
        "Softwareliste nicht gemeldet",
    ),
    (
        "software_incomplete",
        r"^software list incomplete \(collector error\)$",
        "Softwareliste unvollständig (Fehler beim Erfassen)",
    ),
    (
        "software_missing",
        r"^none of the required packages installed$",
        "keines der geforderten Pakete installiert",
    ),
    (
        "hostname_length",
        r#"^host name "(.*)" has (\d+) characters > (\d+)$"#,
        "Hostname „${1}“ hat ${2} Zeichen, höchstens ${3} erlaubt",
    ),
    (
        "hostname_pattern",
        r#"^host name "(.*)" does not match (.+)$"#,
        "Hostname „${1}“ passt nicht zum Muster ${2}",
    ),
    (
        "software_version",
        r"^(.+) (\S+) (<|<=|>|>=|=|!=) ?(\S+)$",
        "${1} ${2}: Version ${3} ${4}, nicht zugelassen",
    ),
    (
        "software_forbidden",
        r"^(.+) installed$",
        "${1} installiert, aber nicht erlaubt",
    ),
];

static COMPILED: LazyLock<Vec<(&'static str, Regex, &'static str)>> = LazyLock::new(|| {
    KINDS
        .iter()
        .map(|(kind, pattern, german)| {
            (
                *kind,
                Regex::new(pattern).expect("reason patterns are valid"),
                *german,
            )
        })
        .collect()
});

/// One part of a reason: its kind and its German text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonPart {
    /// Machine-readable, stable: `ram`, `disk_media`, ... or `other`.
    pub kind: &'static str,
    pub german: String,
}

/// The parts of a stored (English) reason, each with kind and German text.
pub fn parts(reason: &str) -> Vec<ReasonPart> {
    reason
        .split("; ")
        .filter(|p| !p.trim().is_empty())
        .map(part)
        .collect()
}

fn part(text: &str) -> ReasonPart {
    let text = text.trim();
    for (kind, re, german) in COMPILED.iter() {
        if let Some(caps) = re.captures(text) {
            let mut out = String::new();
            caps.expand(german, &mut out);
            // Lists the evaluator joins with English words.
            let out = out.replace(" or ", " oder ");
            return ReasonPart { kind, german: out };
        }
    }
    ReasonPart {
        kind: "other",
        german: text.to_owned(),
    }
}

/// The reason in German, parts joined with "; " as in the original.
pub fn german(reason: &str) -> String {
    parts(reason)
        .into_iter()
        .map(|p| p.german)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The kinds of a reason's parts, in order (empty for no reason).
pub fn kinds(reason: &str) -> Vec<&'static str> {
    parts(reason).into_iter().map(|p| p.kind).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One example of every reason the evaluator writes, with its kind.
    const EXAMPLES: &[(&str, &str)] = &[
        ("operating system not reported", "os_not_reported"),
        ("OS family not reported", "os_family_not_reported"),
        ("OS family linux not in scope", "os_family_out_of_scope"),
        ("OS family linux, expected windows", "os_family"),
        (r#"OS name "Debian" does not match ^Windows"#, "os_name"),
        ("OS edition not reported", "os_edition_not_reported"),
        ("edition Home not in Pro, Education", "os_edition"),
        ("OS version not reported", "os_version_not_reported"),
        ("OS version 10.0.19045 < 10.0.22631", "os_version"),
        (
            "Windows 9 1.0 is not in the lifecycle table",
            "os_lifecycle_unknown",
        ),
        (
            "Windows 10 22H2 end of support 2025-10-14 passed 54 days ago",
            "os_end_of_support",
        ),
        ("end of support in 12 days", "os_end_of_support_soon"),
        ("RAM not reported", "ram_not_reported"),
        ("RAM 3.8 GiB < 8 GiB", "ram"),
        ("CPU cores not reported", "cpu_not_reported"),
        ("CPU 2 cores < 4 cores", "cpu"),
        ("system disk not reported", "disk_not_reported"),
        ("system disk 120 GB < 256 GB", "disk_size"),
        ("system disk type not reported", "disk_media_not_reported"),
        ("system disk hdd, expected ssd or nvme", "disk_media"),
        ("firmware not reported", "firmware_not_reported"),
        ("boot mode not reported", "boot_mode_not_reported"),
        ("boot mode bios, expected uefi", "boot_mode"),
        ("Secure Boot state not reported", "secure_boot_not_reported"),
        ("Secure Boot off, expected on", "secure_boot"),
        ("TPM state not reported", "tpm_not_reported"),
        ("no TPM, expected TPM 2.0", "tpm_missing"),
        ("TPM version not reported", "tpm_version_not_reported"),
        ("TPM 1.2 < 2.0", "tpm_version"),
        (
            "time of the last update not reported",
            "update_not_reported",
        ),
        ("last update 45 days ago > 30 days", "update_age"),
        ("no inventory received", "no_inventory"),
        ("time of the inventory unknown", "inventory_time_unknown"),
        (
            "inventory 40 days old > 30 days, too old to judge",
            "inventory_too_old",
        ),
        ("inventory 9 days old > 7 days", "inventory_age"),
        (
            "encryption of the system disk not reported",
            "encryption_not_reported",
        ),
        ("system disk not encrypted", "disk_not_encrypted"),
        (
            "encryption method of the system disk not reported",
            "encryption_method_not_reported",
        ),
        (
            "encrypted with aes-128, expected xts-aes-256 or aes-256",
            "encryption_method",
        ),
        ("no antivirus reported", "antivirus_missing"),
        ("antivirus not reported on linux", "antivirus_not_reported"),
        (
            "Defender: realtime protection off",
            "antivirus_realtime_off",
        ),
        (
            "Defender: realtime protection not reported",
            "antivirus_realtime_not_reported",
        ),
        (
            "Defender: signature date not reported",
            "antivirus_signatures_not_reported",
        ),
        (
            "Defender: signatures 9 days old > 3 days",
            "antivirus_signatures",
        ),
        ("software list not reported", "software_not_reported"),
        (
            "software list incomplete (collector error)",
            "software_incomplete",
        ),
        (
            "none of the required packages installed",
            "software_missing",
        ),
        ("Mozilla Firefox 128.0 < 140.0", "software_version"),
        ("TeamViewer 15.2 installed", "software_forbidden"),
        (
            r#"host name "kus012-sp0101-extra" has 19 characters > 15"#,
            "hostname_length",
        ),
        (r#"host name "pc1" does not match ^kus"#, "hostname_pattern"),
    ];

    #[test]
    fn every_reason_has_its_kind_and_a_german_text() {
        for (english, kind) in EXAMPLES {
            let parts = parts(english);
            assert_eq!(parts.len(), 1, "{english}");
            assert_eq!(parts[0].kind, *kind, "{english}");
            assert_ne!(parts[0].german, *english, "{english} stays English");
        }
        // Every kind in the table has an example.
        for (kind, _, _) in KINDS {
            assert!(
                EXAMPLES.iter().any(|(_, k)| k == kind),
                "no example for {kind}"
            );
        }
    }

    #[test]
    fn parts_are_rendered_each_and_unknown_text_is_kept() {
        assert_eq!(
            german("system disk hdd, expected ssd or nvme; RAM 3.8 GiB < 8 GiB"),
            "Systemlaufwerk hdd, gefordert ssd oder nvme; \
             Arbeitsspeicher 3.8 GiB, mindestens 8 GiB gefordert"
        );
        assert_eq!(
            kinds("CPU 2 cores < 4 cores; TPM 1.2 < 2.0"),
            ["cpu", "tpm_version"]
        );
        assert_eq!(
            german("Altgerät, Austausch beauftragt"),
            "Altgerät, Austausch beauftragt"
        );
        assert_eq!(kinds("Altgerät"), ["other"]);
        assert!(german("").is_empty());
        assert!(kinds("").is_empty());
    }
}
