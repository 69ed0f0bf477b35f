//! The server raises its soft descriptor limit to the hard one. Its own
//! test binary: it changes a limit of the whole process.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // What systemd gives a service by default, or less if the hard limit is.
    let low = hard.min(1024);
    setrlimit(Resource::RLIMIT_NOFILE, low, hard).unwrap();
    let (before, after) = schoolfleet_server::server::raise_nofile_limit().unwrap();
    assert_eq!(before, low);
    assert_eq!(after, hard);
    assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
}

#[test]
fn both_systemd_units_raise_the_descriptor_limit() {
    for (name, unit) in [
        (
            "schoolfleet-server.service",
            include_str!("../../packaging/systemd/schoolfleet-server.service"),
        ),
        (
            "schoolfleet-agent.service",
            include_str!("../../packaging/systemd/schoolfleet-agent.service"),
        ),
    ] {
        let service = unit
            .split("[Service]")
            .nth(1)
            .and_then(|s| s.split("\n[").next())
            .unwrap_or_else(|| panic!("{name} has no [Service] section"));
        assert!(
            service.lines().any(|l| l.trim() == "LimitNOFILE=65536"),
            "{name}: no LimitNOFILE=65536 in [Service]"
        );
    }
}
