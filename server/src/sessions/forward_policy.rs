//! Where a forward session may connect (issue 12, part 4): the device
//! itself (loopback) and the targets `[sessions.forward_allow]` lists for
//! the device's school, its school and class, or all schools. Anything
//! else would be a path across the school's networks (administration and
//! teaching) or into another county; it is refused and audited.

use std::net::IpAddr;

use crate::config::SessionsSection;

/// The device itself: 127.0.0.0/8, ::1 and "localhost".
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn entry_allows(entry: &str, host: &str, port: u32) -> bool {
    let Some((allowed_host, allowed_port)) = entry.rsplit_once(':') else {
        return false;
    };
    let allowed_host = allowed_host.trim_start_matches('[').trim_end_matches(']');
    let host = host.trim_start_matches('[').trim_end_matches(']');
    allowed_host.eq_ignore_ascii_case(host)
        && (allowed_port == "*" || allowed_port.parse::<u32>() == Ok(port))
}

/// `Err(why)` when the target is not allowed for this school and class.
pub fn check(
    config: &SessionsSection,
    school_id: &str,
    device_class: &str,
    host: &str,
    port: u32,
) -> Result<(), String> {
    if is_loopback(host) {
        return Ok(());
    }
    let keys = [
        "*".to_owned(),
        school_id.to_owned(),
        format!("{school_id}/{device_class}"),
    ];
    let allowed = keys
        .iter()
        .filter_map(|k| config.forward_allow.get(k))
        .flatten()
        .any(|entry| entry_allows(entry, host, port));
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "forwarding to {host}:{port} is not allowed for {school_id} ({device_class}): \
             only the device itself and [sessions.forward_allow]"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_targets_only() {
        let mut config = SessionsSection::default();
        config
            .forward_allow
            .insert("kus012".into(), vec!["drucker.schule.local:631".into()]);
        config.forward_allow.insert(
            "kus012/verwaltungs-pc".into(),
            vec!["192.168.20.5:*".into()],
        );
        config
            .forward_allow
            .insert("*".into(), vec!["[fd00::1]:22".into()]);
        let ok = |school, class, host, port| check(&config, school, class, host, port).is_ok();
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(ok("kl001", "schueler-pc", host, 5432), "{host}");
        }
        assert!(ok("kus012", "schueler-pc", "Drucker.schule.local", 631));
        assert!(!ok("kus012", "schueler-pc", "drucker.schule.local", 80));
        assert!(!ok("kl001", "schueler-pc", "drucker.schule.local", 631));
        assert!(ok("kus012", "verwaltungs-pc", "192.168.20.5", 3389));
        assert!(!ok("kus012", "schueler-pc", "192.168.20.5", 3389));
        assert!(ok("kl001", "lehrer-laptop", "fd00::1", 22));
        assert!(!ok("kus012", "schueler-pc", "10.0.0.1", 5432));
        assert!(!ok("kus012", "schueler-pc", "127.0.0.1.evil.example", 80));
    }
}
