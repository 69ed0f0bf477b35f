//! Secrets in exec command lines (issue 12, part 3): what is stored (the
//! session row's summary and spec), audited and logged shows `***` where
//! an argument carries a secret, and only the names of the environment
//! variables. The rules are `schoolfleet_proto::redact`, the same the
//! agent applies on the device, here with `[sessions] redact_*`. The device
//! still gets the real argv and the values.

use schoolfleet_proto::redact::Redactor;
use schoolfleet_proto::v1::ExecSpec;

use super::policy::{CheckedSpec, Kind};
use crate::config::SessionsSection;

/// The compiled rules of the configuration.
pub fn redactor(config: &SessionsSection) -> Redactor {
    Redactor::new(
        config.redact_commands.iter().map(String::as_str),
        config.redact_args.iter().map(String::as_str),
    )
}

/// The checked spec as it may be stored, audited and logged.
pub fn spec(redactor: &Redactor, mut spec: CheckedSpec, exec: &ExecSpec) -> CheckedSpec {
    if spec.kind == Kind::Exec {
        let masked = redactor.argv(&exec.argv);
        if masked != exec.argv {
            spec.summary = schoolfleet_proto::text::clean(&masked.join(" "), 200).value;
            spec.json = super::policy::exec_json(&masked, &exec.env).to_string();
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::EnvVar;

    #[test]
    fn the_configured_rules_apply_and_env_values_stay_out() {
        let mut config = SessionsSection::default();
        config.redact_commands.push("mkpasswd".into());
        let exec = ExecSpec {
            argv: vec!["mkpasswd".into(), "Geheim123".into()],
            env: vec![EnvVar {
                name: "DB_PASSWORD".into(),
                value: "Wert-456".into(),
            }],
        };
        let checked = CheckedSpec {
            kind: Kind::Exec,
            summary: "mkpasswd Geheim123".into(),
            json: String::new(),
            term: String::new(),
            size: (0, 0),
        };
        let stored = spec(&redactor(&config), checked, &exec);
        assert_eq!(stored.summary, "mkpasswd ***");
        assert!(stored.json.contains("DB_PASSWORD"), "{}", stored.json);
        assert!(!stored.json.contains("Geheim123"), "{}", stored.json);
        assert!(!stored.json.contains("Wert-456"), "{}", stored.json);
    }
}
