//! The invariants the fuzz target checks, shared with a plain `#[test]` so
//! CI exercises them on stable without cargo-fuzz.
//!
//! Not part of the stable API.

use chrono::{TimeZone, Utc};
use schoolfleet_proto::v1::{Inventory, OperatingSystem};

use crate::{DeviceFacts, KnownTenants, Standard, Status, lint};

/// Lints and compiles arbitrary text and panics if an invariant breaks:
/// lint and compile must agree, every error must point inside the text,
/// and a compiled standard must evaluate a device without inventory to
/// something other than `Pass` for every rule.
pub fn parse_and_lint(text: &str) {
    let errors = lint(text, &KnownTenants::default());
    let compiled = Standard::compile(text);
    let lines = text.split('\n').count();
    for e in &errors {
        assert!(
            e.line >= 1 && e.line <= lines,
            "line {} of {lines}: {e}",
            e.line
        );
        assert!(e.column >= 1, "{e}");
        assert!(!e.message.is_empty());
    }
    match compiled {
        Ok(standard) => {
            assert!(errors.is_empty(), "compiled, but lint says {errors:?}");
            let now = Utc.with_ymd_and_hms(2026, 3, 15, 0, 0, 0).single();
            let Some(now) = now else { return };
            let inventory = Inventory {
                os: Some(OperatingSystem {
                    family: "linux".into(),
                    name: "Debian GNU/Linux".into(),
                    version: "12".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut facts = DeviceFacts {
                device_id: "d",
                hostname: "kus012-sp0101",
                county_id: "kus",
                school_id: "kus012",
                device_class: "schueler-pc",
                inventory: None,
                inventory_at: None,
                now,
            };
            let results = standard.evaluate(&facts);
            assert_eq!(results.len(), standard.rules().len());
            for r in &results {
                assert_ne!(r.status, Status::Pass, "{r:?} without inventory");
            }
            facts.inventory = Some(&inventory);
            facts.inventory_at = Some(now);
            assert_eq!(standard.evaluate(&facts).len(), standard.rules().len());
        }
        Err(compile_errors) => {
            assert!(!errors.is_empty(), "lint clean, but compile failed");
            assert_eq!(compile_errors, errors);
        }
    }
}
